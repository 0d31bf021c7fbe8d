"""Shared fixtures: where the DHCPv4 conformance corpus lives.

The corpus sits beside the repository (`<repo>/../shared/corpus`, the same relative place in CI)
unless DHCP4C_CORPUS names another directory. A missing corpus fails the tests that need it
instead of skipping them, so that CI cannot pass without the conformance run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# `pytest --hypothesis-profile=thorough` for a long local run of the property tests.
settings.register_profile("thorough", max_examples=5000, deadline=None)

REPO = Path(__file__).resolve().parent.parent


def corpus_root() -> Path:
    """The corpus directory (the one holding README.md and dhcpv4/)."""
    return Path(os.environ.get("DHCP4C_CORPUS", REPO.parent / "shared" / "corpus"))


@pytest.fixture(scope="session")
def dhcpv4_corpus() -> Path:
    """The `dhcpv4/` directory of the corpus (valid *.bin, malformed/, oracle.jsonl)."""
    path = corpus_root() / "dhcpv4"
    if not (path / "oracle.jsonl").is_file():
        pytest.fail(f"DHCPv4 corpus not found at {path} (set DHCP4C_CORPUS)")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `valid_bin` / `malformed_bin` with corpus files (relative to dhcpv4/)."""
    directory = corpus_root() / "dhcpv4"
    for name, pattern in (("valid_bin", "*.bin"), ("malformed_bin", "malformed/*.bin")):
        if name in metafunc.fixturenames:
            files = sorted(
                path.relative_to(directory).as_posix() for path in directory.glob(pattern)
            )
            # With no corpus, one case remains and fails through the `dhcpv4_corpus` fixture.
            metafunc.parametrize(name, files or ["<no corpus>"])
