"""The pure protocol core: everything that decides, nothing that does.

The codec (`message`, `options`, both declared with construct in `wire`), client identifiers
(`clientid`), DNS names (`dnsname`), the lease value (`lease`), retransmission schedules
(`retransmit`), the user's configuration (`config`: `ClientConfig`, and its one conversion into
the machine's), the state machine (`machine`: its configuration, states, events and
transitions), and address conflict detection (RFC 5227): the ARP codec (`arp`) and its own
state machine (`acd`).

Invariant: no module here imports trio, sockets, the Linux layer or the shell, and none reads a
clock or global randomness. Time comes in as `now`, randomness as a `random.Random`
(`tests/dhcp4c/test_layers.py` enforces the imports).
"""
