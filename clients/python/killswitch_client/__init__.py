"""The kill switch client for trading processes (needs only `redis`)."""
