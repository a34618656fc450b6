"""`manage.py killswitch runs [--id N] [--account A] [--state S] [--limit N] [--json]`."""

from __future__ import annotations

from killswitch.cli._common import emit_json, table, when

from .. import selectors

NAME = "runs"
HELP = "Show broker runs (cancel / close / verify) and their per-order actions."


def add_arguments(parser) -> None:
    parser.add_argument("--id", type=int, help="one run, with every action")
    parser.add_argument("--account")
    parser.add_argument("--state", help="pending, cancelling, closing, verifying, completed, failed, superseded")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the API's answer (as GET /api/risk/runs)")


RUN_HEADERS = ["RUN", "KIND", "LEVEL", "SCOPE", "ACCOUNT", "BROKER", "STATE", "ATTEMPTS", "ACTIONS",
               "CREATED (UTC)"]


def _run_row(data: dict) -> list:
    return [data["id"], data["kind"], data["level"], data["scope"], data["account"], data["broker"],
            data["state"], data["attempts"], len(data["actions"]), when(data["created_at"])]


def _print_run(out, data: dict) -> None:
    table(out, RUN_HEADERS, [_run_row(data)], right=["RUN", "ATTEMPTS", "ACTIONS"])
    for label in ("notes", "error"):
        if data[label]:
            out.write(f"{label}: {data[label]}\n")
    out.write("\n")
    table(out, ["ACTION", "ORDER / REF", "INSTRUMENT", "SIDE", "QTY", "FILLED", "OUTCOME", "ATTEMPTS", "DETAIL"],
          [(a["action"], a["broker_order_id"] or a["client_ref"], a["instrument_label"] or a["symbol"], a["side"],
            a["quantity"], a["filled_quantity"], a["outcome"], a["attempts"], a["detail"]) for a in data["actions"]],
          empty="No order or position was in scope.", right=["QTY", "FILLED", "ATTEMPTS"])


def run(options, out, err) -> int:
    from ..apis import RunSerializer

    if options.get("id"):
        found = selectors.run(options["id"])
        if found is None:
            err.write(f"No broker run {options['id']}.\n")
            return 1
        data = selectors.run_as_dict(found)
        if options.get("json"):
            emit_json(out, RunSerializer(data).data)
        else:
            _print_run(out, data)
        return 0
    limit = options.get("limit") or 20
    runs = [selectors.run_as_dict(r) for r in selectors.runs(
        limit=limit, account=options.get("account"), state=options.get("state"))]
    if options.get("json"):
        emit_json(out, {"runs": RunSerializer(runs, many=True).data,
                        "next_before": runs[-1]["id"] if len(runs) == limit else None})
        return 0
    table(out, RUN_HEADERS, [_run_row(r) for r in runs], empty="No broker runs.",
          right=["RUN", "ATTEMPTS", "ACTIONS"])
    failed = [r for r in runs if r["error"]]
    for r in failed:
        out.write(f"run {r['id']}: {r['error']}\n")
    return 0
