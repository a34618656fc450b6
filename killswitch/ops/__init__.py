"""What an operator's probes see: `/healthz`, `/readyz` and `/metrics` (Prometheus).

- health: the readiness checks (database, Redis, reconciler heartbeat, Celery workers,
  and what other apps register), each bounded by a short timeout;
- metrics: a Prometheus collector that reads the database and Redis at scrape time,
  so every server process reports the same figures;
- views, urls: the three endpoints and who may read the metrics.

Other apps plug in from their AppConfig.ready, as for the CLI and the Risk page:
`health.register(name, check=..., metrics=...)` (the brokers app: account connections,
runs and actions) and `metrics.register_breakers(provider)` (the breaker engine).
killswitch never imports them.
"""
