"""The package's layers, enforced: each layer imports only what lies below it.

Every import statement counts, including those inside functions and under `TYPE_CHECKING`: a
layer that needs a name from above it only for typing is still tangled with it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "dhcp4c"

#: Per layer, the imports it must never make (module prefixes).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    # The pure core: no event loop, no sockets, no clock, no layer above it.
    "protocol": (
        "trio",
        "trio_util",
        "socket",
        "select",
        "time",
        "pyroute2",
        "supervisor",
        "dhcp4c.linux",
        "dhcp4c.shell",
        "dhcp4c.consumers",
        "dhcp4c.cli",
        "dhcp4c.testing",
    ),
    # Linux plumbing knows nothing of the client that drives it.
    "linux": ("supervisor", "dhcp4c.shell", "dhcp4c.consumers", "dhcp4c.cli", "dhcp4c.testing"),
    # The shell drives the core over the Linux layer; consumers are handed to it, not imported.
    "shell": ("dhcp4c.consumers", "dhcp4c.cli", "dhcp4c.testing", "pyroute2", "dhcp4c.linux.rtnl"),
    "consumers": ("dhcp4c.cli", "dhcp4c.testing"),
}


def imports(path: Path, root: Path = SRC) -> list[tuple[int, str]]:
    """Every module `path` imports, by line (relative imports resolved in the package)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(("dhcp4c", *path.relative_to(root).parent.parts))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            # `from dhcp4c import linux` imports dhcp4c.linux.
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
            found.append((node.lineno, module))
    return sorted(found, key=lambda item: item[0])


def violations(layer: str, root: Path = SRC) -> list[str]:
    bad: list[str] = []
    for path in sorted((root / layer).rglob("*.py")):
        for line, module in imports(path, root):
            for prefix in FORBIDDEN[layer]:
                if module == prefix or module.startswith(prefix + "."):
                    bad.append(f"{path.relative_to(root)}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    assert (SRC / layer / "__init__.py").is_file()
    assert violations(layer) == []


def test_the_check_sees_imports_anywhere(tmp_path: Path) -> None:
    # The checker itself must catch an import in a function, under TYPE_CHECKING and by
    # `from dhcp4c import <layer>`, or the layer tests above could never fail.
    package = tmp_path / "protocol"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "bad.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from dhcp4c.shell.client import Client\n"
        "def f():\n    import trio\n"
        "from dhcp4c import linux\n"
        "import time as clock\n"
    )
    assert violations("protocol", tmp_path) == [
        "protocol/bad.py:3 imports dhcp4c.shell.client.Client",
        "protocol/bad.py:3 imports dhcp4c.shell.client",
        "protocol/bad.py:5 imports trio",
        "protocol/bad.py:6 imports dhcp4c.linux",
        "protocol/bad.py:7 imports time",
    ]
