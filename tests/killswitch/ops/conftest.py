"""Fixtures for the operators' endpoints: a real Celery worker (from the broker tests)
and a scrape of /metrics parsed into samples."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.brokers.conftest import module_tmp, start_worker  # noqa: F401 - fixtures


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, its labels) -> value, from the Prometheus text format."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


@pytest.fixture
def scrape(client):
    """GET /metrics from loopback (allowed by default) and parse it."""

    def get() -> dict[tuple[str, frozenset], float]:
        response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        return samples(response.content.decode())

    return get


def value(found: dict, sample: str, /, **labels: str) -> float | None:
    """The value of `sample` with exactly these labels, or None when absent."""
    return found.get((sample, frozenset(labels.items())))
