"""A fake MetaTrader 5 terminal behind the mt5linux rpyc bridge (for tests).

``python -m tests.fake_mt5 --port 0 --login L`` serves a stateful fake of the
``MetaTrader5`` module over an rpyc classic server, the way mt5linux's server
does, so the real ``mt5linux.MetaTrader5`` client and plain
``rpyc.classic.connect`` reach it unmodified.  Tests start it with
:class:`tests.fake_mt5.harness.FakeMT5` and steer it over a control port.

The bridge executes arbitrary code for whoever connects; it binds 127.0.0.1.

Modules: :mod:`.constants` and :mod:`.records` (the module's names and named
tuples), :mod:`.state`, :mod:`.fills` and :mod:`.trading` (the trade server),
:mod:`.terminal` (the module functions), :mod:`.control` (prices, faults,
direct state), :mod:`.server` (bridge and control ports), :mod:`.harness`
(test side), ``__main__`` (command line).
"""
