"""supervisor.states: the naming rule (anchored) and the live states."""

from __future__ import annotations

import pytest

from supervisor.states import NodeState, validate_name


@pytest.mark.parametrize("name", ["a", "eth0", "dhcp_client", "0", "_", "a" * 64])
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 65,
        "Eth0",
        "a.b",
        "a-b",
        "a b",
        "a\n",  # `$` would match before a trailing newline; fullmatch does not.
        "\na",
        "é",
        "xa.B",  # Monogon's unanchored pattern accepted anything containing a valid run.
    ],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid runnable name"):
        validate_name(name)


def test_non_string_name() -> None:
    with pytest.raises(ValueError):
        validate_name(3)  # type: ignore[arg-type]


def test_live_states() -> None:
    assert {state for state in NodeState if state.live} == {NodeState.NEW, NodeState.HEALTHY}
