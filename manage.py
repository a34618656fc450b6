#!/usr/bin/env python
"""Django's command-line utility for administrative tasks.

A setting or policy that cannot be used (ImproperlyConfigured: it names the file or
variable, the key, the value and what is expected) is one line on stderr and exit code
2, never a traceback: `manage.py killswitch activate` is the runbook's first way to stop
trading, and its operator must see at once what to fix.
"""
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        execute_from_command_line(sys.argv)
    except ImproperlyConfigured as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        if "activate" in sys.argv[1:]:
            print("to stop trading until it is fixed: redis-cli SET trading_switch kill "
                  "(trading processes obey at once; audited when the service runs again)", file=sys.stderr)
        sys.exit(2)
