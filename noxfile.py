"""Developer sessions: `nox -s tests lint typecheck docs bench fuzz demo`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite (network-namespace tests need root; CI runs them as root)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHONS)
def tests_all(session: nox.Session) -> None:
    """The pure tests on every supported Python."""
    session.install("-e", ".[test]")
    session.run("pytest", "-m", "not netns and not slow", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over src/, the test support and examples/."""
    session.install("-e", ".[test,dev]")
    session.run("mypy", "--strict", "src", "tests/support", "examples")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site and man page, warnings as errors (docs/_build/{html,man})."""
    session.install("-e", ".[docs]")
    for builder in ("html", "man"):
        session.run(
            "sphinx-build",
            "-q",
            "-W",
            "--keep-going",
            "-d",
            "docs/_build/doctrees",
            "-b",
            builder,
            "docs",
            f"docs/_build/{builder}",
        )


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the peers, side by side in one run (needs root for the lease bench)."""
    session.install("-e", ".[bench]")
    for script in ("bench/codec.py", "bench/supervisor.py", "bench/lease.py", "bench/scale.py"):
        session.run("python", script, *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The codec fuzz target for a longer budget (seconds as the first argument)."""
    session.install("-e", ".[test]")
    budget = session.posargs[0] if session.posargs else "300"
    session.run("python", "-m", "support.fuzz", "--seconds", budget, env={"PYTHONPATH": "tests"})


@nox.session
def demo(session: nox.Session) -> None:
    """A real lease in a private pair of network namespaces (needs root)."""
    session.install("-e", ".")
    session.run("dhcp4c-demo", *session.posargs)
