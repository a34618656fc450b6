"""Failed admin logins are throttled per username and per address (django-axes on the
shared cache), and each lockout is an audit event."""

from __future__ import annotations

import pytest
from django.core.cache import caches

from killswitch.models import Event

pytestmark = pytest.mark.django_db

LOGIN = "/admin/login/?next=/admin/risk/"


@pytest.fixture(autouse=True)
def _fresh_counts():
    caches["default"].clear()
    yield
    caches["default"].clear()


def _login(client, username, password, address="10.1.2.3"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def test_thirty_wrong_passwords_lock_the_username_out_even_for_the_right_one(client, risk_officer, settings):
    answers = [_login(client, "rita_risk", f"wrong-{i}").status_code for i in range(30)]
    assert answers[: settings.AXES_FAILURE_LIMIT - 1] == [200] * (settings.AXES_FAILURE_LIMIT - 1)  # the form again
    assert set(answers[settings.AXES_FAILURE_LIMIT:]) == {429}
    right = _login(client, "rita_risk", "rita_risk-pass", address="10.9.9.9")  # another address, same user
    assert right.status_code == 429 and "Too many failed logins" in right.content.decode()
    assert "_auth_user_id" not in client.session
    lockouts = Event.objects.filter(action="refused", detail__contains="login locked out").order_by("seq")
    # One event per lockout and address, not one per refused attempt (30 in a row here).
    assert [(e.source, e.actor, e.client_address) for e in lockouts] == [
        ("admin", "login:rita_risk", "10.1.2.3"), ("admin", "login:rita_risk", "10.9.9.9")]


def test_an_address_guessing_many_usernames_is_locked_out(client, trader, settings):
    for i in range(settings.AXES_FAILURE_LIMIT):
        _login(client, f"user{i}", "guess", address="10.7.7.7")
    assert _login(client, "tom_trader", "tom_trader-pass", address="10.7.7.7").status_code == 429
    assert Event.objects.filter(action="refused", client_address="10.7.7.7").exists()


def test_a_person_with_the_right_password_is_not_hindered(client, trader):
    assert _login(client, "tom_trader", "wrong").status_code == 200
    assert _login(client, "tom_trader", "tom_trader-pass").status_code == 302
    assert client.session["_auth_user_id"] == str(trader.pk)
