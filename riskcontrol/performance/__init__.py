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
- `caches.read_auth_cache`: a token's lookup and roles kept 2 s for reads (never for
  writes);
- `caches.KeyedRows` (selectors.scopes.status): the status rows kept per process under
  (state version, highest scope id, scope count), one small query per read.

Figures: see the README's "Under load" section for the table of the last measured run
and the command that produced it.
"""
