"""Example programs built on the supervisor and the DHCP client (see examples/README.md)."""
