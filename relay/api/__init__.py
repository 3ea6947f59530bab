"""The relay's HTTP API besides the session socket: tokens, tenants, usage, prices."""
