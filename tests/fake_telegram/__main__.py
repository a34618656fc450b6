"""Run the fake Bot API as a process: ``python -m tests.fake_telegram --port N --token T``.

Prints ``READY <port>`` once listening, then reads commands from stdin, one a line:

    say <user_id> <chat_id> <text...>     a user writes (private chat when the ids match)
    press <user_id> <chat_id> <message_id> <callback_data>
    down | up                              go_down() / come_back()
    fail <method> <status> [retry_after]   fail_next(...)
    quit                                   (or Ctrl-C / SIGTERM; end of input keeps serving)

and prints ``BOT <chat_id> <message_id> <text>`` for every message the bot sends or edits.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import threading

from tests.fake_telegram.api import DEFAULT_TOKEN, FakeBotApi


def _echo_bot_messages(api: FakeBotApi, stop: threading.Event) -> None:
    seen: dict[tuple[int, int], str] = {}
    while not stop.is_set():
        for message in api.sent_messages():
            key = (message["chat"]["id"], message["message_id"])
            if seen.get(key) != message.get("text"):
                seen[key] = message.get("text", "")
                print(f"BOT {key[0]} {key[1]} {seen[key]}", flush=True)
        try:
            api.wait_until(lambda: stop.is_set() or len(seen) != len(api.sent_messages()), timeout=0.5)
        except TimeoutError:
            pass  # re-check edits


def _run_command(api: FakeBotApi, line: str) -> bool:
    """Run one control line; False means quit. Bad input is reported, not fatal."""
    words = shlex.split(line) if line.strip() else []
    if not words:
        return True
    command, args = words[0], words[1:]
    try:
        if command == "quit":
            return False
        if command == "say" and len(args) >= 3:
            user_id, chat_id = int(args[0]), int(args[1])
            chat_type = "private" if user_id == chat_id else "group"
            update = api.send_user_message(user_id, chat_id, " ".join(args[2:]), chat_type=chat_type)
            print(f"UPDATE {update['update_id'] if update else 'not delivered (privacy mode)'}", flush=True)
        elif command == "press" and len(args) == 4:
            update = api.press_button(int(args[0]), int(args[1]), int(args[2]), args[3])
            print(f"UPDATE {update['update_id'] if update else 'not delivered'}", flush=True)
        elif command == "down":
            api.go_down()
        elif command == "up":
            api.come_back()
        elif command == "fail" and len(args) in (2, 3):
            retry_after = int(args[2]) if len(args) == 3 else None
            api.fail_next(args[0], int(args[1]), retry_after=retry_after)
        else:
            print(f"ERROR unknown command or wrong arguments: {line.strip()!r}", flush=True)
    except (ValueError, TypeError) as exc:
        print(f"ERROR {exc}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_telegram", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token '<bot id>:<secret>'")
    parser.add_argument("--username", default="killswitch_test_bot", help="the bot's username")
    options = parser.parse_args(argv)
    try:
        api = FakeBotApi(options.token, options.username, host=options.host, port=options.port)
    except ValueError as exc:
        parser.error(str(exc))
    api.start()
    print(f"READY {api.port}", flush=True)
    stop = threading.Event()
    echo = threading.Thread(target=_echo_bot_messages, args=(api, stop), daemon=True)
    echo.start()
    try:
        for line in sys.stdin:
            if not _run_command(api, line):
                break
        else:
            # stdin closed (e.g. started with </dev/null): keep serving until interrupted
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
