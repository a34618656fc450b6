"""Telegram bot commands (the seed's `telegram_enabled`): people linked to their own
Django user act with their own role, kill and resume wait for a typed confirmation,
stale commands are refused, and every refusal is audited like anywhere else.

- config: the `telegram:` policy section, the Bot API endpoint, whether the bot runs;
- links: which Telegram account acts as which user (CLI, admin);
- ledger, confirmations: received updates and pending kill/resume requests, in the
  database so that a restart neither loses nor repeats a command;
- gate, handlers, confirm: the checks every update passes and the thin handlers;
- poller, lease, bot: long polling that confirms only handled updates, one poller
  per token, the process itself (`manage.py killswitch telegram run`);
- hooks: what the brokers app lets the chat show (runs, positions in a scope);
- admin: the link on the user's admin page.
"""
