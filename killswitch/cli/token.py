"""`manage.py killswitch token <username> [--name N]`, `token --list [USER]`, `token --revoke PREFIX`."""

from __future__ import annotations

from ..services.tokens import TokenError, issue_token, list_tokens, revoke_tokens
from ._common import table, when

NAME = "token"
HELP = "Mint an API token for a user (printed once), list tokens, or revoke one."


def add_arguments(parser) -> None:
    parser.add_argument("username", nargs="?", help="the user the new token acts as (with its role)")
    parser.add_argument("--name", default="", help="what the token is for, e.g. 'desk-3 algo box'")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list tokens (of USERNAME if given)")
    group.add_argument("--revoke", metavar="PREFIX",
                       help="revoke the token with this prefix (as --list shows it) or this full key")


def run(options, out, err) -> int:
    try:
        if options.get("revoke"):
            for token in revoke_tokens(prefix=options["revoke"]):
                out.write(f"Revoked {token.prefix}… of {token.user.get_username()}"
                          f"{f' ({token.name})' if token.name else ''}.\n")
            return 0
        if options.get("list"):
            tokens = list_tokens(username=options.get("username"))
            table(out, ["PREFIX", "USER", "NAME", "CREATED (UTC)", "LAST USED (UTC)", "STATE"],
                  [(t.prefix, t.user.get_username(), t.name, when(t.created_at), when(t.last_used_at),
                    f"revoked {when(t.revoked_at)}" if t.revoked_at else "live") for t in tokens],
                  empty="No tokens. Mint one: .venv/bin/python manage.py killswitch token <username>")
            return 0
        if not options.get("username"):
            err.write("Give a username to mint a token for, or --list, or --revoke PREFIX.\n")
            return 2
        issued = issue_token(username=options["username"], name=options.get("name") or "")
    except TokenError as error:
        err.write(f"{error}\n")
        return 1
    # The key goes alone on stdout so `KEY=$(manage.py killswitch token alice)` works;
    # the explanation goes to stderr.
    err.write(f"Token {issued.token.prefix}… for {options['username']}. It is shown only this once; "
              "only its hash is stored. Send it as 'Authorization: Token <key>'.\n")
    out.write(issued.key + "\n")
    return 0
