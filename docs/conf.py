"""Sphinx configuration: the Markdown pages (MyST), the API from docstrings, the command page.

Build with `./dev docs` (HTML in docs/_build/html, the man page in docs/_build/man); CI builds
with warnings as errors. Code blocks of the pages run as tests (tests/docs/test_examples.py);
see docs/README.md for how a block opts out.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE / "_ext"))

from sphinx.application import Sphinx  # noqa: E402

from dhcp4c._version import __version__  # noqa: E402

project = "dhcp4c"
author = "the dhcp4c authors"
copyright = "the dhcp4c authors"
release = __version__
version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "argparse_ref",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# Command lines are full of "--option": no typographic dashes or quotes.
smartquotes = False
exclude_patterns = ["_build", "README.md"]
templates_path: list[str] = []

# Markdown: the pages stay plain GitHub Markdown; headings get anchors for `page.md#section`.
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings: Google style (Args/Returns/Raises); signatures keep their annotations as written.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# Attributes as fields of the class, not as separate objects (NamedTuple fields would be twice).
napoleon_use_ivar = True
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True
autodoc_default_options = {"show-inheritance": True, "ignore-module-all": True}
# Docstrings write `name` for code (Markdown habit); render it as code, not as a reference.
default_role = "code"

html_theme = "furo"
html_title = f"dhcp4c {release}"
html_static_path: list[str] = []

# The command reference is also the man page dhcp4c(1).
man_pages = [
    ("cli", "dhcp4c", "a DHCPv4 client for Linux", [author], 1),
]
man_show_urls = False


# -- the project's docstring dialect -----------------------------------------------------------
# Docstrings are written to read well as plain text, with three Markdown habits reST does not
# share: a list right under its lead-in line ("Invariants:" then "- ..."), an indented code
# example after a blank line without a "::", and a plural right after code ("`Container`s").
# They are rendered as meant (a list; a literal block; code then "s") instead of being
# warnings; anything else reST rejects still fails the build.

_PLURAL = re.compile(r"(`[^`\s][^`]*`)(?=[A-Za-z])")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _is_bullet(line: str) -> bool:
    return line.lstrip().startswith(("- ", "* "))


def _dialect(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    out: list[str] = []
    bullet: int | None = None  # the indentation of the list being read, if any
    paragraph: int | None = None  # the indentation of the paragraph being read, if any
    blank_before = True
    for line in lines:
        if not line.strip():
            out.append(line)
            blank_before = True
            paragraph = None if bullet is None else paragraph
            continue
        indent = _indent(line)
        if bullet is not None and not _is_bullet(line) and indent <= bullet:
            # The list ended on a line of its own indentation: reST needs a blank line.
            if not blank_before:
                out.append("")
            bullet = None
            blank_before = True
        if _is_bullet(line):
            if bullet is None and not blank_before and paragraph is not None:
                out.append("")  # a list right under its lead-in line
            if bullet is None or indent <= bullet:
                bullet = indent
        elif (
            blank_before
            and bullet is None
            and out
            and paragraph is None
            and _last_paragraph_indent(out) is not None
            and indent >= (_last_paragraph_indent(out) or 0) + 4
            and not _last_text(out).rstrip().endswith("::")
        ):
            out.extend(["::", ""])  # an indented example: a literal block
        out.append(line)
        blank_before = False
        if bullet is None and paragraph is None:
            paragraph = indent
    lines[:] = [_PLURAL.sub(r"\1\\ ", line) for line in out]


def _last_text(out: list[str]) -> str:
    return next((line for line in reversed(out) if line.strip()), "")


def _last_paragraph_indent(out: list[str]) -> int | None:
    text = _last_text(out)
    return _indent(text) if text else None


def setup(app: Sphinx) -> None:
    # Before napoleon (priority 500) turns Args/Returns/Raises into fields.
    app.connect("autodoc-process-docstring", _dialect, priority=400)
