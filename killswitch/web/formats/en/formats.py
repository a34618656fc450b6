"""English date formats for the dashboard (settings.FORMAT_MODULE_PATH names
`killswitch.web.formats`; Django imports `<path>.<language>.formats`, so `formats/` and
`en/` are namespace folders, no package of their own).

An audit trail is read to the second, in UTC, and says so: "2026-12-01 06:20:13 UTC".
"""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s T"
