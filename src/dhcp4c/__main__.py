"""`python -m dhcp4c`: the `dhcp4c` command (see `dhcp4c.cli`)."""

from __future__ import annotations

if __name__ == "__main__":
    from dhcp4c.cli import main

    raise SystemExit(main())
