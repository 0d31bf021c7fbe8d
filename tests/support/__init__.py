"""The project's own test support: hostile networks and invariant checkers (`faults`) and the codec
fuzz target (`fuzz`). Not installed: embedders test their agents with `dhcp4c.testing`."""
