"""What every process of the service runs on: background lanes, the clock, hooks,
structured logging, request addresses, the process registry."""
