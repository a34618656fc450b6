"""The API's performance layer, in one place: what each piece buys, measured.

Every piece is optional to the product's behaviour (leaving one out changes how fast the
API answers, never what it answers), and each earns its place by the benchmark
`bench/bench_api.py --ablation` (200 keep-alive status readers on one daphne process,
one activation every 100 ms from another process; every variant in the same run):

- `handler.OneHopASGIHandler`: the middleware chain and the view run in one hop to a
  kept worker thread (Django's ASGI handler makes one thread hop per sync middleware
  and a new thread per request);
- `admission.ReadsYieldToWrites`: while an activation is inside the process no
  further read enters; at most two reads are inside at once;
- `replay.StatusReplay`: the status read answered on the event loop with Django's last
  answer while Redis' state version says nothing changed, to a token Django authorized
  for reads lately; pollers share one Redis read, wait for one answer from Django after
  a change, and see their countdowns redrawn (`countdowns`) rather than re-asked;
- `handler._Workers`: writes run on their own `KILLSWITCH_HTTP_WRITE_THREADS` (2)
  threads, so an activation never queues behind reads for a thread;
- `caches.read_auth_cache`: a token's lookup and roles kept 2 s for reads (never for
  writes; the replay relies on it too);
- `caches.KeyedRows` (selectors.scopes.status): the status rows kept per process under
  (state version, highest scope id, scope count), one small query per read.

Figures, `bench/bench_api.py --ablation` (and with `--postgres URL`), 2026-12-01, one
run each on the 2-core build machine: activation p99 under 200 readers with every piece
46.5 ms on SQLite / 38.9 ms on PostgreSQL; leaving one out: one-hop 56.2 / 69.2 ms,
admission 219.1 / 255.6 ms, replay 171.2 / 178.0 ms (status reads 0.31x / 0.26x as
fast), read_auth_cache 285.0 / 320.5 ms (reads 0.12x / 0.09x), KeyedRows 53.1 / 53.9
ms. The write threads and the replay's shared Redis read and countdown redraw came from
the traces of that benchmark (BENCH_TRACE=1): before them the loaded p99 was 155-167
ms on PostgreSQL. The README's "Under load" section has the table.
"""
