"""Linking people (CLI and admin), the telegram: policy section, and when the bot
process runs (`make run` reads the process registry)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.urls import reverse

from killswitch import policy
from killswitch.chat import config as chat_config
from killswitch.chat.config import parse_telegram_section
from killswitch.models import TelegramLink
from killswitch.runtime import processes
from tests.stack import ROOT

pytestmark = pytest.mark.django_db


def run(capsys, *args):
    try:
        call_command("killswitch", "telegram", *args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- CLI ----------------------------------------------------------------------------------


def test_link_list_relink_and_unlink_from_the_cli(capsys, trader, risk_officer):
    code, out, _ = run(capsys, "link", "tom_trader", "4242")
    assert code == 0 and out == "Linked tom_trader to Telegram user 4242.\n"
    link = TelegramLink.objects.get(user=trader)
    assert link.telegram_user_id == 4242 and link.linked_by.startswith("cli:")
    run(capsys, "link", "rita_risk", "4343")
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "ROLE", "TELEGRAM", "ID", "LINKED", "(UTC)", "BY"]
    assert lines[1].split()[:3] == ["rita_risk", "risk_officer", "4343"]
    assert lines[2].split()[:3] == ["tom_trader", "trader", "4242"]
    code, out, _ = run(capsys, "link", "tom_trader", "4244")
    assert out == "Linked tom_trader to Telegram user 4244 (was 4242).\n"
    code, out, _ = run(capsys, "list", "--json")
    assert {d["username"]: d["telegram_user_id"] for d in json.loads(out)["links"]} == {
        "rita_risk": 4343, "tom_trader": 4244}
    code, out, _ = run(capsys, "unlink", "tom_trader")
    assert code == 0 and out == "Unlinked tom_trader (was Telegram user 4244).\n"
    assert not TelegramLink.objects.filter(user=trader).exists()
    code, out, _ = run(capsys, "unlink", "tom_trader")
    assert code == 0 and out == "tom_trader had no Telegram link.\n"


@pytest.mark.parametrize("args, message", [
    (("link", "tom_trader", "abc"), "Telegram user id 'abc' is invalid; expected the person's numeric Telegram user id"),
    (("link", "tom_trader", "-5"), "Telegram user id '-5' is invalid"),
    (("link", "nobody_here", "4242"), "No user named 'nobody_here'; expected the username of an existing Django user."),
    (("unlink", "nobody_here"), "No user named 'nobody_here'"),
])
def test_bad_link_input_says_what_was_wrong_and_what_is_expected(capsys, trader, args, message):
    code, _, err = run(capsys, *args)
    assert code == 1 and err.startswith(message)
    assert not TelegramLink.objects.exists()


def test_one_telegram_account_acts_for_one_person_only(capsys, trader, risk_officer):
    run(capsys, "link", "tom_trader", "4242")
    code, _, err = run(capsys, "link", "rita_risk", "4242")
    assert code == 1 and err == "Telegram user 4242 is already linked to tom_trader; unlink tom_trader first.\n"
    assert TelegramLink.objects.get().user == trader


def test_run_refuses_without_telegram_enabled_or_a_token(capsys, monkeypatch, set_policy):
    code, _, err = run(capsys, "run")
    assert code == 2 and "kill_switch.telegram_enabled is false" in err
    set_policy(telegram_enabled=True)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    code, _, err = run(capsys, "run")
    assert code == 2 and err.startswith("TELEGRAM_BOT_TOKEN is not set: the Telegram bot needs the token BotFather gave")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "not a token")
    code, _, err = run(capsys, "run")
    assert code == 2 and err.startswith("TELEGRAM_BOT_TOKEN is invalid; expected the token BotFather gave")
    assert "not a token" not in err  # a secret is never echoed
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_API_URL", "api.telegram.org")
    code, _, err = run(capsys, "run")
    assert code == 2 and err.startswith("TELEGRAM_API_URL='api.telegram.org' is invalid; expected the Bot API base URL")


# --- Admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, superuser):
    client.force_login(superuser)
    return client


def _user_form(user, **extra):
    data = {"username": user.username, "is_active": "on", "is_staff": "on" if user.is_staff else "",
            "date_joined_0": user.date_joined.strftime("%Y-%m-%d"), "date_joined_1": user.date_joined.strftime("%H:%M:%S"),
            "telegram_link-TOTAL_FORMS": "1", "telegram_link-INITIAL_FORMS": "0",
            "telegram_link-MIN_NUM_FORMS": "0", "telegram_link-MAX_NUM_FORMS": "1"}
    data.update(extra)
    return {k: v for k, v in data.items() if v != ""}


def test_the_link_is_shown_and_set_on_the_users_admin_page(admin_client, trader):
    url = reverse("admin:auth_user_change", args=[trader.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and b"Telegram (bot commands act as this user" in page.content
    answer = admin_client.post(url, _user_form(trader, **{"telegram_link-0-telegram_user_id": "777"}))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    link = TelegramLink.objects.get(user=trader)
    assert link.telegram_user_id == 777 and link.linked_by == "sam_super"


def test_the_link_is_removed_from_the_users_admin_page(admin_client, trader):
    from killswitch.chat.links import link

    row, _ = link(username=trader.username, telegram_user_id=777, by="test")
    url = reverse("admin:auth_user_change", args=[trader.pk])
    answer = admin_client.post(url, _user_form(trader, **{
        "telegram_link-INITIAL_FORMS": "1", "telegram_link-0-id": str(row.pk), "telegram_link-0-user": str(trader.pk),
        "telegram_link-0-telegram_user_id": "777", "telegram_link-0-DELETE": "on"}))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert not TelegramLink.objects.exists()


def test_a_bad_id_on_the_users_admin_page_is_a_form_error(admin_client, trader):
    url = reverse("admin:auth_user_change", args=[trader.pk])
    answer = admin_client.post(url, _user_form(trader, **{"telegram_link-0-telegram_user_id": "@tom"}))
    assert answer.status_code == 200
    assert "Telegram user id &#x27;@tom&#x27; is invalid" in answer.content.decode()
    assert not TelegramLink.objects.exists()


def test_links_have_their_own_admin_list(admin_client, trader):
    answer = admin_client.post(reverse("admin:killswitch_telegramlink_add"),
                               {"user": trader.pk, "telegram_user_id": "888"})
    assert answer.status_code == 302
    link = TelegramLink.objects.get()
    assert (link.user, link.telegram_user_id, link.linked_by) == (trader, 888, "sam_super")
    listing = admin_client.get(reverse("admin:killswitch_telegramlink_changelist"))
    assert b"888" in listing.content
    admin_client.post(reverse("admin:killswitch_telegramlink_delete", args=[link.pk]), {"post": "yes"})
    assert not TelegramLink.objects.exists()


# --- The telegram: section -------------------------------------------------------------------


def test_defaults_when_the_section_is_absent():
    config = parse_telegram_section(None)
    assert (config.allowed_chat_ids, config.max_command_age_seconds, config.confirm_timeout_seconds) == (None, 60, 60)
    assert config.chat_allowed(4242, "private") and not config.chat_allowed(-100, "supergroup")
    listed = parse_telegram_section({"allowed_chat_ids": [-100, 4242]})
    assert listed.chat_allowed(-100, "supergroup") and not listed.chat_allowed(4343, "private")


@pytest.mark.parametrize("section, message", [
    ({"allowed_chat_ids": "-100"}, "telegram.allowed_chat_ids='-100' is invalid; expected a list of Telegram chat ids"),
    ({"allowed_chat_ids": [0]}, "telegram.allowed_chat_ids=[0] is invalid"),
    ({"max_command_age_seconds": "1m"}, "telegram.max_command_age_seconds='1m' is invalid; expected a number between 1 and 3600"),
    ({"confirm_timeout_seconds": 0}, "telegram.confirm_timeout_seconds=0 is invalid; expected a number between 1 and 600"),
    ({"poll_timeout_seconds": 2.5}, "telegram.poll_timeout_seconds=2.5 is invalid; expected a whole number between 1 and 50"),
    ({"confirm_timout_seconds": 60}, "telegram.confirm_timout_seconds=60 is invalid; expected one of the known keys"),
    ([1], "telegram=[1] is invalid; expected a mapping of settings"),
])
def test_a_bad_section_names_file_key_value_and_expectation(section, message):
    with pytest.raises(ImproperlyConfigured) as info:
        parse_telegram_section(section, "config/risk_limits.yaml")
    assert str(info.value).startswith("config/risk_limits.yaml: " + message)


def test_a_bad_section_stops_start_up(tmp_path):
    bad = tmp_path / "risk_limits.yaml"
    bad.write_text("telegram:\n  max_command_age_seconds: -1\n")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**__import__("os").environ, "RISK_LIMITS_PATH": str(bad)})
    assert result.returncode != 0
    assert "telegram.max_command_age_seconds=-1 is invalid; expected a number between 1 and 3600" in result.stderr


# --- make run ---------------------------------------------------------------------------------


def _enabled(monkeypatch, on: bool) -> None:
    base = policy.get_policy()
    new = dataclasses.replace(base, kill_switch=dataclasses.replace(base.kill_switch, telegram_enabled=on))
    monkeypatch.setattr(chat_config, "get_policy", lambda: new)


@pytest.mark.parametrize("enabled, token, runs", [(True, "123:abc", True), (True, "", False), (False, "123:abc", False)])
def test_make_run_starts_the_bot_only_with_telegram_enabled_and_a_token(monkeypatch, enabled, token, runs):
    _enabled(monkeypatch, enabled)
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", token)
    names = {p.name: p for p in processes.processes()}
    assert ("telegram" in names) is runs
    if runs:
        assert names["telegram"].command(python="py") == ["py", "manage.py", "killswitch", "telegram", "run"]
    assert {"web", "notify-worker", "broker-worker", "reconciler", "sweep"} <= set(names)


def test_the_token_may_come_from_a_file(monkeypatch, tmp_path):
    _enabled(monkeypatch, True)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    secret = tmp_path / "tg"
    secret.write_text("123:abc\n")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN_FILE", str(secret))
    assert "telegram" in {p.name for p in processes.processes()}
    assert chat_config.endpoint().token == "123:abc"
