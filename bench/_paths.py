"""Where the benchmarks find the code under `python -S`, which skips site-packages.

Each script puts the environment's site-packages and the repository's `src` on `sys.path` with
`extend_path()` before its other imports, and gives the Python peers the same through PYTHONPATH.
"""

from __future__ import annotations

import os
import sys

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


def purelib() -> str:
    """The running environment's site-packages."""
    # Under -S, Python 3.11 leaves sys.prefix at the base interpreter even in a virtualenv
    # (site.py is what moves it), so find the virtualenv from the executable's pyvenv.cfg.
    import sysconfig

    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    if os.path.exists(os.path.join(venv, "pyvenv.cfg")):
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        return os.path.join(venv, "lib", version, "site-packages")
    return sysconfig.get_path("purelib")


def extend_path() -> None:
    """Put site-packages and `src` first on `sys.path`, ahead of the script's own directory.

    First even when already present (an editable install puts `src` last): `bench/supervisor.py`
    must not shadow the `supervisor` package.
    """
    for entry in (purelib(), SRC):
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
