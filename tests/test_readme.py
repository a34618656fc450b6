"""The README as a newcomer reads it (issue 14, item 9): every command copy-pasteable as
written, the CLI synopsis complete, one Redis contract, a runbook that never stops
processes by name, and screenshots that exist in the repository."""

from __future__ import annotations

import re

from tests.stack import ROOT

README = (ROOT / "README.md").read_text()


def fenced_lines() -> list[str]:
    return [line.strip() for block in re.findall(r"```(?:sh|bash)\n(.*?)```", README, flags=re.S)
            for line in block.splitlines() if line.strip()]


def test_every_project_command_runs_with_the_venv_python():
    bare = [line for line in fenced_lines() if re.match(r"(\./)?manage\.py|python3? |celery |daphne ", line)]
    assert bare == []
    # Indented (unfenced) command blocks are commands too.
    indented = re.findall(r"^ {4}((?:python |manage\.py|celery ).*)$", README, flags=re.M)
    assert indented == []


def test_the_cli_synopsis_lists_every_subcommand():
    from killswitch.cli import discover

    synopsis = README.split("## CLI\n", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\.venv/bin/python manage\.py killswitch ([\w-]+)", synopsis, flags=re.M))
    assert listed == set(discover())


def test_one_redis_contract_and_the_registrations_are_a_stream():
    sections = re.findall(r"^##+ .*Redis contract.*$", README, flags=re.M)
    assert sections == ["## The Redis contract (for trading processes in any language)"]
    contract = README.split(sections[0], 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^\| `killswitch:clients` \| stream \|", contract, flags=re.M)
    assert re.search(r"^\| `killswitch:acks` \| stream \|", contract, flags=re.M)
    client_readme = (ROOT / "clients" / "python" / "README.md").read_text()
    assert "(hash)" not in client_readme and "HDEL" not in client_readme
    assert "README.md#the-redis-contract-for-trading-processes-in-any-language" in client_readme


def test_the_runbook_never_stops_processes_by_name():
    assert "pkill" not in README and "killall" not in README


def test_the_screenshots_the_readme_shows_are_in_the_repository():
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert {"docs/screenshots/risk-halted.png", "docs/screenshots/risk-run-in-progress.png",
            "docs/screenshots/risk-disconnected.png"} <= set(images)
    for image in images:
        assert (ROOT / image).is_file() and (ROOT / image).stat().st_size > 10_000, image
