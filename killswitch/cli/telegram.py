"""`manage.py killswitch telegram run | link <username> <telegram_user_id> | unlink <username> | list`."""

from __future__ import annotations

import asyncio
import os
import signal

from django.core.exceptions import ImproperlyConfigured

from ._common import cli_actor, emit_json

NAME = "telegram"
HELP = "The Telegram bot: run it; link, unlink and list the people who may use it."


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="telegram_command", required=True, metavar="ACTION")
    sub.add_parser("run", help="Run the bot (long polling) until Ctrl-C or SIGTERM.")
    link = sub.add_parser("link", help="Let a Telegram account act as a Django user (with that user's role).")
    link.add_argument("username", help="the Django user")
    link.add_argument("telegram_user_id", help="the person's numeric Telegram user id (the bot tells it on /start)")
    unlink = sub.add_parser("unlink", help="Remove a user's Telegram link.")
    unlink.add_argument("username")
    listing = sub.add_parser("list", help="Show every link.")
    listing.add_argument("--json", action="store_true")


def run(options, out, err) -> int:
    action = options["telegram_command"]
    if action == "run":
        return _run_bot(out, err)
    from killswitch.chat import links

    by = cli_actor(None).name
    try:
        if action == "link":
            row, previous = links.link(username=options["username"], telegram_user_id=options["telegram_user_id"],
                                       by=by)
            was = f" (was {previous})" if previous and previous != row.telegram_user_id else ""
            out.write(f"Linked {row.user.get_username()} to Telegram user {row.telegram_user_id}{was}.\n")
        elif action == "unlink":
            removed = links.unlink(username=options["username"], by=by)
            out.write(f"Unlinked {options['username']} (was Telegram user {removed}).\n" if removed
                      else f"{options['username']} had no Telegram link.\n")
        else:
            _list(links.all_links(), out, as_json=bool(options.get("json")))
    except links.LinkError as error:
        err.write(error.message + "\n")
        return 1
    return 0


def _list(rows, out, *, as_json: bool) -> None:
    from killswitch.services import Actor

    data = []
    for row in rows:
        actor = Actor.of(row.user)
        role = ("risk_officer" if actor.may("deactivate") else "trader" if actor.may("activate")
                else "viewer" if actor.may("view") else "-")
        data.append({"username": row.user.get_username(), "telegram_user_id": row.telegram_user_id, "role": role,
                     "active": row.user.is_active, "linked_at": row.linked_at, "linked_by": row.linked_by})
    if as_json:
        emit_json(out, {"links": data})
        return
    if not data:
        out.write("No Telegram links. Add one: manage.py killswitch telegram link <username> <telegram_user_id>\n")
        return
    out.write(f"{'USER':<20} {'ROLE':<13} {'TELEGRAM ID':<14} {'LINKED':<20} BY\n")
    for d in data:
        user = d["username"] + ("" if d["active"] else " (inactive)")
        out.write(f"{user:<20} {d['role']:<13} {d['telegram_user_id']:<14} {d['linked_at']:%Y-%m-%d %H:%M:%S}  "
                  f"{d['linked_by']}\n")


def _run_bot(out, err) -> int:
    from killswitch.chat.bot import BotConfigError, KillSwitchBot
    from killswitch.chat.config import endpoint, telegram_config
    from killswitch.policy import get_policy

    policy = get_policy()
    if not policy.kill_switch.telegram_enabled:
        err.write(f"kill_switch.telegram_enabled is false in {policy.path}: the Telegram bot does not run. "
                  "Set it to true to enable Telegram bot commands.\n")
        return 2
    try:
        api, config = endpoint(), telegram_config()
    except ImproperlyConfigured as exc:
        err.write(f"{exc}\n")
        return 2
    if api is None:
        name = policy.notifications.telegram_bot_token_env
        err.write(f"{name} is not set: the Telegram bot needs the token BotFather gave "
                  "(README, section Telegram).\n")
        return 2

    # PTB 22 warns on every read of a 429's retry_after unless opted in to timedeltas,
    # which killswitch.chat.poller.retry_seconds reads either way.
    os.environ.setdefault("PTB_TIMEDELTA", "1")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await KillSwitchBot(api, config).run(stop)

    out.write(f"Telegram bot {api.bot_id} polling {api.url}; Ctrl-C stops it.\n")
    out.flush()
    try:
        asyncio.run(main())
    except BotConfigError as exc:
        err.write(f"{exc}\n")
        return 1
    return 0
