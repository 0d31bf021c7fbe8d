"""The documentation's Python code blocks run, and the API reference covers every module.

Every fenced `python` block of the site's Markdown pages (docs/**/*.md and the READMEs the site
includes) runs, in page order, in one namespace per page: a page reads as one module, so later
blocks use what earlier ones define (the tutorial's test block tests its agent). `__name__` is
not "__main__", so a block's `if __name__ == "__main__":` part is shown, not run. A block whose
fence is directly preceded by the line `<!-- no-run -->` (optionally `<!-- no-run: why -->`)
is shown but not run: a fragment, or one that needs a real network. docs/README.md says the
same for authors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

import dhcp4c

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
# Pages of the site that live outside docs/ (included by docs/examples.md, docs/systemd.md).
INCLUDED = ("examples/README.md", "systemd/README.md")

_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)$")
_NO_RUN = re.compile(r"^<!--\s*no-run\b.*-->\s*$")

# Pages whose blocks need an API that is not on this branch yet: expected to fail until it is
# there, then they must pass (the condition turns false by itself).
_PENDING = {
    "docs/tutorial.md": (
        not hasattr(dhcp4c, "ClientConfig"),
        "dhcp4c.ClientConfig (the Client(interface, config) API) is not merged yet",
    ),
}


class Block(NamedTuple):
    line: int  # the 1-based line of the block's first code line
    code: str
    run: bool


def blocks(text: str) -> list[Block]:
    """The fenced `python` blocks of a Markdown text, with their no-run marks."""
    found: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info = match["fence"], match["info"].strip()
        end = next(
            (j for j in range(i + 1, len(lines)) if lines[j].startswith(fence[0] * len(fence))),
            len(lines),
        )
        if info.split()[:1] == ["python"]:
            marked = i > 0 and _NO_RUN.match(lines[i - 1]) is not None
            found.append(Block(i + 2, "\n".join(lines[i + 1 : end]) + "\n", not marked))
        i = end + 1
    return found


def pages() -> list[Path]:
    found = [p for p in DOCS.rglob("*.md") if "_build" not in p.parts]
    return sorted(found + [REPO / name for name in INCLUDED])


def _param(path: Path) -> object:
    name = path.relative_to(REPO).as_posix()
    pending, reason = _PENDING.get(name, (False, ""))
    marks = [pytest.mark.xfail(reason=reason, strict=False)] if pending else []
    return pytest.param(path, id=name, marks=marks)


RUNNABLE = [p for p in pages() if any(b.run for b in blocks(p.read_text()))]


@pytest.mark.parametrize("path", [_param(p) for p in RUNNABLE])
def test_page_code_runs(path: Path) -> None:
    name = path.relative_to(REPO).as_posix()
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for block in blocks(path.read_text()):
        if block.run:
            # Padded so that a traceback names the page's own line numbers.
            source = "\n" * (block.line - 1) + block.code
            exec(compile(source, name, "exec"), namespace)


def test_the_harness_finds_the_examples() -> None:
    names = {p.relative_to(REPO).as_posix() for p in RUNNABLE}
    assert {"docs/tutorial.md", "docs/options.md"} <= names


def test_blocks_and_marks() -> None:
    text = "\n".join(
        [
            "```python",
            "a = 1",
            "```",
            "<!-- no-run: a fragment -->",
            "```python",
            "b = undefined",
            "```",
            "````md",
            "```python",
            "inside = 'a fence of four'",
            "```",
            "````",
            "```sh",
            "ls",
            "```",
        ]
    )
    assert blocks(text) == [Block(2, "a = 1\n", True), Block(6, "b = undefined\n", False)]


def test_every_module_is_in_the_api_reference() -> None:
    documented = set(re.findall(r"^\.\. automodule:: (\S+)$", _api_text(), re.MULTILINE))
    modules = set()
    for top in ("dhcp4c", "supervisor"):
        for path in (REPO / "src" / top).rglob("*.py"):
            parts = path.relative_to(REPO / "src").with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if not any(part.startswith("_") for part in parts):
                modules.add(".".join(parts))
    assert sorted(modules - documented) == []  # add it to its package's page in docs/api/


def _api_text() -> str:
    return "\n".join(p.read_text() for p in sorted((DOCS / "api").glob("*.md")))
