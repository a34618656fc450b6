"""`manage.py killswitch runs [--id N] [--account A] [--state S] [--limit N] [--json]`."""

from __future__ import annotations

from killswitch.cli._common import emit_json

from .. import selectors

NAME = "runs"
HELP = "Show broker runs (cancel / close / verify) and their per-order actions."


def add_arguments(parser) -> None:
    parser.add_argument("--id", type=int, help="one run, with every action")
    parser.add_argument("--account")
    parser.add_argument("--state")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--json", action="store_true")


def _print_run(out, data: dict, *, actions: bool) -> None:
    out.write(f"run {data['id']:<5} {data['kind']:<6} {data['level']:<5} {data['scope']:<24} "
              f"{data['account']:<10} {data['broker']:<6} {data['state']:<10} attempts={data['attempts']} "
              f"actions={len(data['actions'])} created={data['created_at']:%Y-%m-%d %H:%M:%S}\n")
    for label in ("notes", "error"):
        if data[label]:
            out.write(f"    {label}: {data[label]}\n")
    if actions:
        for a in data["actions"]:
            what = a["instrument_label"] or a["symbol"]
            out.write(f"    {a['action']:<13} {a['broker_order_id'] or a['client_ref']:<24} {what:<8} "
                      f"{a['side']:<4} {a['quantity']:>10} filled={a['filled_quantity']:<8} "
                      f"{a['outcome']:<20} attempts={a['attempts']} {a['detail']}\n")


def run(options, out, err) -> int:
    if options.get("id"):
        found = selectors.run(options["id"])
        if found is None:
            err.write(f"No broker run {options['id']}.\n")
            return 1
        data = selectors.run_as_dict(found)
        if options.get("json"):
            emit_json(out, data)
        else:
            _print_run(out, data, actions=True)
        return 0
    runs = [selectors.run_as_dict(r) for r in selectors.runs(
        limit=options.get("limit") or 20, account=options.get("account"), state=options.get("state"))]
    if options.get("json"):
        emit_json(out, {"runs": runs})
        return 0
    if not runs:
        out.write("No broker runs.\n")
    for data in runs:
        _print_run(out, data, actions=False)
    return 0
