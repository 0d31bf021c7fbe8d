"""The Trio shell: the client that drives the protocol core and publishes what it decides.

`client` (`Client`: one restartable supervisor runnable per interface), `observe` (lease events
fanned out over Trio memory channels) and `transport` (the `Transport` protocol the client's
sockets satisfy, and the Linux transports it opens).

Invariant: every protocol decision is the machine's; the shell carries actions out in order.
"""
