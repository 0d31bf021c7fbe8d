"""The codec fuzz target (`support.fuzz`), run for a fixed budget in CI.

The long runs are `./dev fuzz [seconds]` / `nox -s fuzz`. Here: both engines run for a few
seconds over the shared corpus and must find nothing while running a minimum number of inputs;
the target itself is checked to report what it must (an unexpected exception, a broken round
trip, a hang) with a reproducer, and the command line to exit non-zero on a finding.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dhcp4c.protocol.message import Message, MessageError
from support import fuzz
from support.fuzz import MAX_INPUT, Finding, Mutator, RandomSource, exercise

# DHCP4C_FUZZ_SECONDS stretches the CI budget for a longer local run.
MUTATE_SECONDS = float(os.environ.get("DHCP4C_FUZZ_SECONDS", "8"))
HYPOTHESIS_SECONDS = MUTATE_SECONDS * 5 / 8


def test_mutation_engine_finds_nothing_and_runs_at_scale(dhcpv4_corpus: Path) -> None:
    report = fuzz.run(MUTATE_SECONDS, corpus=dhcpv4_corpus, seed=20261128)
    print(report.summary())
    assert report.finding is None, report.finding.report() if report.finding else ""
    # The floor only catches a target that stopped running, far below any host's rate (the
    # budget is wall time, so a busy host runs fewer inputs).
    assert report.inputs > 100 * MUTATE_SECONDS
    assert report.parsed > 400  # the mutations keep reaching past the parser
    assert len(report.signatures) > 100


def test_hypothesis_engine_finds_nothing(dhcpv4_corpus: Path) -> None:
    report = fuzz.run(HYPOTHESIS_SECONDS, corpus=dhcpv4_corpus, engine="hypothesis")
    print(report.summary())
    assert report.finding is None, report.finding.report() if report.finding else ""
    assert report.inputs > 60 * HYPOTHESIS_SECONDS


def test_every_corpus_file_is_a_seed(dhcpv4_corpus: Path) -> None:
    seeds = fuzz.load_seeds(dhcpv4_corpus)
    files = list(dhcpv4_corpus.rglob("*.bin"))
    assert len(files) > 100 and any("malformed" in str(path) for path in files)
    assert len(seeds) == len(files) + len(fuzz.load_seeds(None))
    for seed in seeds:
        exercise(seed)


def test_every_mutation_stays_within_the_size_limit() -> None:
    seeds = fuzz.load_seeds(None)
    mutator = Mutator(RandomSource(random.Random(1)), seeds)
    for operation in mutator.operations:
        for seed in seeds:
            for _ in range(20):
                out = operation(bytearray(seed))
                assert isinstance(out, bytearray)
    outputs = [mutator.mutate(seeds[0]) for _ in range(2000)]
    assert max(map(len, outputs)) <= MAX_INPUT
    assert len(set(outputs)) > 1800


def test_an_unexpected_exception_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    real_parse = Message.parse

    def broken(data: bytes) -> Message:
        if len(data) % 7 == 3:
            raise IndexError("planted")
        return real_parse(data)

    monkeypatch.setattr(Message, "parse", staticmethod(broken))
    report = fuzz.run(5.0, seed=1)
    assert report.finding is not None
    assert "IndexError: planted" in report.finding.reason
    assert len(report.finding.data) % 7 == 3
    text = report.finding.report()
    assert report.finding.data.hex() in text and "Traceback" in text


def test_message_error_is_not_a_finding() -> None:
    with pytest.raises(MessageError):
        Message.parse(b"\x01\x02")
    assert exercise(b"\x01\x02").startswith("reject:")


def test_a_broken_round_trip_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    seed = fuzz.load_seeds(None)[0]
    monkeypatch.setattr(Message, "build", lambda self: b"")
    with pytest.raises(Finding, match="build"):
        exercise(seed)


def test_a_hang_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake clock that moves 0.2 s per reading: every stage looks like it took 200 ms.
    readings = iter(range(10**6))
    monkeypatch.setattr(time, "thread_time", lambda: next(readings) * 0.2)
    with pytest.raises(Finding, match="hang: 200 ms > 100 ms"):
        exercise(fuzz.load_seeds(None)[0])


def test_command_line_prints_inputs_and_rate(dhcpv4_corpus: Path) -> None:
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "support.fuzz", "--seconds", "2", "--seed", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.splitlines()[-1]
    assert "inputs=" in summary and "rate=" in summary and "result=ok" in summary
    assert time.perf_counter() - start < 30


def test_command_line_exits_non_zero_with_the_reproducer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(Message, "build", lambda self: b"\x00")
    artifact = tmp_path / "crash.bin"
    status = fuzz.main(["--seconds", "5", "--seed", "1", "--artifact", str(artifact)])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILURE" in out and "reproducer" in out
    data = artifact.read_bytes()
    assert data.hex() in out
    # --replay runs the saved input again (hex or raw), here still failing.
    hex_file = tmp_path / "crash.hex"
    hex_file.write_text(data.hex())
    assert fuzz.main(["--replay", str(hex_file)]) == 1


def test_replay_of_a_good_input(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    good.write_bytes(fuzz.load_seeds(None)[0])
    assert fuzz.main(["--replay", str(good)]) == 0


def test_atheris_engine_is_optional(capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("atheris") is not None:  # pragma: no cover - not built here
        pytest.skip("atheris is installed: `./dev fuzz` can use it")
    assert fuzz.main(["--engine", "atheris", "--seconds", "1"]) == 2
    assert "not installed" in capsys.readouterr().err
