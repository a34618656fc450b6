"""The OpenAPI schema (/api/schema/, /api/docs/) and Schemathesis against it: for every
operation, generated requests never cause a server error and every response (success
or error) matches what the schema documents."""

from __future__ import annotations

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


# Loaded at collection (pytest-django has set Django up by then; serving the schema
# touches no database). Schemathesis' lazy `from_fixture` does not run on pytest 9.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
# The kill switch's own operations; the rest of the project's API is checked below as well,
# separately, so that a failure names the part it is in.
switch_schema = schema.include(path_regex=r"^/api/risk/kill-switch")
other_schema = schema.exclude(path_regex=r"^/api/risk/kill-switch")


@pytest.fixture(autouse=True)
def _keep_test_connection(db):
    # The WSGI app runs in this thread, inside the test's transaction: keep Django from
    # closing that connection at the end of each request, as its own test client does.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def short_cooldown(set_policy):
    # A short cooldown lets generated deactivations succeed as well as be refused.
    set_policy(cooldown_minutes=0.001)


def _call(case, user, token_for) -> None:
    headers = {"Authorization": f"Token {token_for(user)}"} if user else {}
    case.call_and_validate(headers=headers, checks=CHECKS)


EXAMPLES = settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))


@switch_schema.parametrize()
@EXAMPLES
def test_every_operation_as_superuser_answers_within_its_schema(case, superuser, token_for, short_cooldown):
    _call(case, superuser, token_for)


@switch_schema.parametrize()
@EXAMPLES
def test_every_operation_as_trader_answers_within_its_schema(case, trader, token_for, short_cooldown):
    _call(case, trader, token_for)


@switch_schema.parametrize()
@EXAMPLES
def test_every_operation_anonymously_answers_within_its_schema(case, token_for):
    _call(case, None, token_for)


@other_schema.parametrize()
@EXAMPLES
def test_rest_of_the_project_api_answers_within_its_schema(case, superuser, token_for):
    _call(case, superuser, token_for)


def test_schema_documents_every_operation_request_and_error(client):
    doc = client.get("/api/schema/?format=json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    change = paths["/api/risk/kill-switch"]["post"]
    assert "requestBody" in change
    assert set(change["responses"]) >= {"200", "400", "401", "403", "409", "415", "429"}
    assert set(paths["/api/risk/kill-switch"]["get"]["responses"]) >= {"200", "401", "403", "429"}
    history = paths["/api/risk/kill-switch/history"]["get"]
    assert {p["name"] for p in history["parameters"]} >= {"scope", "action", "actor", "source", "since",
                                                          "until", "before", "limit"}
    components = doc["components"]["schemas"]
    assert {"error", "code", "field"} <= set(components["Error"]["properties"])
    assert components["ActivatedResponse" if "ActivatedResponse" in components else "Activated"]
    assert "tokenAuth" in doc["components"]["securitySchemes"]


def test_browsable_docs_page_points_at_the_schema(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert b"/api/schema/" in response.content
