"""Two directives: `argparse` (a command's reference from its parser) and `public-names`.

    ```{argparse} dhcp4c.cli:_parser
    ```

renders the usage line, the description, each argument group as a definition list (the
option strings with their metavar, then the help text with `%(default)s` expanded) and the
epilog. Help texts are set as plain text, never parsed as markup, so a parser's wording cannot
break the build; the same nodes feed the HTML page and the man page. `public-names PACKAGE`
lists a package's `__all__`, each name linked to the module that defines (and documents) it.
"""

from __future__ import annotations

import argparse
import functools
import importlib
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


def _load(target: str) -> argparse.ArgumentParser:
    module_name, _, function = target.partition(":")
    parser = getattr(importlib.import_module(module_name), function)()
    if not isinstance(parser, argparse.ArgumentParser):
        raise TypeError(f"{target} did not return an ArgumentParser")
    # A fixed width, not the terminal's: the page must not depend on who built it.
    parser.formatter_class = functools.partial(parser.formatter_class, width=79)
    return parser


def _invocation(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    # The formatter's own rendering: "--timeout SECONDS", "-v, --verbose", "IFACE".
    return formatter._format_action_invocation(action)


def _help(action: argparse.Action, formatter: argparse.HelpFormatter) -> str:
    if not action.help:
        return ""
    return formatter._expand_help(action)


def _paragraphs(text: str) -> list[nodes.Node]:
    return [nodes.paragraph(text=chunk.strip()) for chunk in text.split("\n\n") if chunk.strip()]


class ArgparseDirective(SphinxDirective):
    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        parser = _load(self.arguments[0])
        formatter = parser._get_formatter()
        out: list[nodes.Node] = []
        usage = parser.format_usage().strip()
        out.append(nodes.literal_block(usage, usage))
        if parser.description:
            out.extend(_paragraphs(parser.description))
        for group in parser._action_groups:
            actions = [a for a in group._group_actions if a.help is not argparse.SUPPRESS]
            if not actions:
                continue
            out.append(nodes.rubric(text=(group.title or "arguments").capitalize()))
            items = nodes.definition_list()
            for action in actions:
                term = _invocation(action, formatter)
                item = nodes.definition_list_item()
                item += nodes.term("", "", nodes.literal(term, term))
                definition = nodes.definition()
                definition += nodes.paragraph(text=_help(action, formatter))
                item += definition
                items += item
            out.append(items)
        if parser.epilog:
            epilog = parser.epilog.strip("\n")
            kind = parser.formatter_class
            kind = getattr(kind, "func", kind)
            if isinstance(kind, type) and issubclass(kind, argparse.RawDescriptionHelpFormatter):
                out.append(nodes.literal_block(epilog, epilog))
            else:
                out.extend(_paragraphs(epilog))
        return out


class PublicNamesDirective(SphinxDirective):
    """A package's public names (`__all__`), each linked to where its module documents it."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        package = importlib.import_module(self.arguments[0])
        items = nodes.bullet_list()
        for name in sorted(n for n in package.__all__ if not n.startswith("_")):
            home = getattr(getattr(package, name), "__module__", package.__name__)
            reference = addnodes.pending_xref(
                "",
                nodes.literal(name, name),
                refdomain="py",
                reftype="obj",
                reftarget=f"{home}.{name}",
                refexplicit=True,
            )
            text = nodes.paragraph("", "", reference, nodes.Text(" ("), nodes.literal(home, home))
            text += nodes.Text(")")
            items += nodes.list_item("", text)
        return [items]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("argparse", ArgparseDirective)
    app.add_directive("public-names", PublicNamesDirective)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
