"""Test support: in-process DHCP servers, network namespaces, fault-injecting networks."""
