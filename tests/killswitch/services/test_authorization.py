"""Who may do what, decided in one place (killswitch/services/authorization.py) and
asked by every interface."""

from __future__ import annotations

import pytest

from killswitch.services.authorization import (
    ACTIVATE,
    DEACTIVATE,
    VIEW,
    Actor,
    permission_for_action,
    permission_for_change,
    user_may,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("persona", "expected"), [
    ("viewer", {VIEW}), ("trader", {VIEW, ACTIVATE}), ("risk_officer", {VIEW, ACTIVATE, DEACTIVATE}),
    ("superuser", {VIEW, ACTIVATE, DEACTIVATE}), ("nobody", set()),
])
def test_roles_grant_their_permissions(request, persona, expected):
    user = request.getfixturevalue(persona)
    assert {p for p in (VIEW, ACTIVATE, DEACTIVATE) if user_may(user, p)} == expected
    assert {p for p in (VIEW, ACTIVATE, DEACTIVATE) if Actor.of(user).may(p)} == expected


def test_an_inactive_user_may_nothing(risk_officer):
    risk_officer.is_active = False
    risk_officer.save()
    assert not any(user_may(risk_officer, p) for p in (VIEW, ACTIVATE, DEACTIVATE))


def test_anonymous_may_nothing():
    assert not any(Actor.of(None).may(p) for p in (VIEW, ACTIVATE, DEACTIVATE))
    assert not any(Actor.of("anonymous").may(p) for p in (VIEW, ACTIVATE, DEACTIVATE))


def test_system_actors_have_explicit_grants_not_any_name():
    assert Actor.of("cli:alice").may(DEACTIVATE)  # an operator on the server
    assert Actor.of("redis-cli").may(ACTIVATE)
    assert not Actor.of("system:brokers").may(ACTIVATE)  # only records
    assert not Actor.of("something-else").may(ACTIVATE)
    breaker = Actor.system("breaker:max_loss", grants=frozenset({ACTIVATE}))
    assert breaker.may(ACTIVATE) and not breaker.may(DEACTIVATE)


def test_lowering_a_level_needs_deactivate_raising_needs_activate():
    assert permission_for_change("running", "halt") == ACTIVATE
    assert permission_for_change("kill", "halt") == DEACTIVATE
    assert permission_for_change("halt", "running") == DEACTIVATE
    assert permission_for_action("deactivate") == DEACTIVATE
    assert permission_for_action("activate") == ACTIVATE
    assert permission_for_action(None) == ACTIVATE


def test_an_unknown_permission_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown permission"):
        Actor.of("cli:alice").may("delete")
