"""Lease consumers: what is done with a lease once the client holds it.

Lease callbacks `(old, new)` that apply a lease to the kernel (`netconfig`: address, routes, MTU,
and `configure`, their composition), write a resolv.conf-format file (`resolvconf`), keep the lease
across restarts (`leasefile`), and an observer that runs an operator's hook (`hooks`).

Invariant: a consumer sees only leases the protocol core sanitised; on loss it undoes what it
did, in the reverse order.
"""
