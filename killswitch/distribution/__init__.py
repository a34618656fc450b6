"""Redis as the distribution layer; the database stays the source of truth.

- `connection`: the service's Redis client (short timeouts);
- `publish`: snapshots of the database state, published atomically (Lua scripts in
  `lua/`, their severity table from killswitch.domain via `scripts`);
- `decisions`: database state × Redis state → one named case and its action;
- `reconciler`: the loop that reads both, acts on the decision, and writes the heartbeat.
"""
