"""`manage.py killswitch` subcommands owned by the brokers app (see killswitch/cli)."""
