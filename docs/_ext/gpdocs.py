"""Sphinx directives that keep geventpool's docs in step with its code.

- ``options-table``: a table of a callable's parameters whose *defaults are
  read from the signature* at build time; every parameter must be described
  and every description must name a parameter (or a class attribute), or the
  build warns, which ``-W`` turns into an error.
- ``api-modules``: an ``automodule`` section per public module (see
  :func:`api_sections`), so that new modules appear without editing the docs.
- ``benchmark-results``: every ``benchmarks/results/*.md`` shown verbatim,
  and every ``*.png`` beside them.
- ``include-if-exists``: include a generated file, or print a placeholder.

Each directive builds reStructuredText lines and feeds them back to the
parser, so the output is ordinary Sphinx markup.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import random
import sys
import time
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

__all__ = ["setup", "api_sections", "public_modules", "format_default", "parse_entries"]

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent

_NAMED_DEFAULTS: list[tuple[Any, str]] = [
    (time.monotonic, "time.monotonic"),
    (random.random, "random.random"),
]


def format_default(value: Any) -> str:
    """The default of a parameter as a reader would write it."""
    for known, text in _NAMED_DEFAULTS:
        if value == known:
            return text
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, tuple):
        inner = ", ".join(format_default(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def parse_entries(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``name: text`` entries; indented lines continue the entry above."""
    entries: list[tuple[str, list[str]]] = []
    for line in lines:
        if not line.strip():
            if entries:
                entries[-1][1].append("")
            continue
        if line[0].isspace():
            if not entries:
                raise ValueError(f"continuation line before any entry: {line!r}")
            entries[-1][1].append(line.strip())
            continue
        name, sep, text = line.partition(":")
        if not sep:
            raise ValueError(f"expected 'name: description', got {line!r}")
        entries.append((name.strip(), [text.strip()]))
    return entries


def _resolve(dotted: str) -> Any:
    module_name, _, attr = dotted.rpartition(".")
    while module_name:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            module_name, _, more = module_name.rpartition(".")
            attr = f"{more}.{attr}"
            continue
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def _insert(directive: Directive, lines: list[str]) -> None:
    source = directive.state_machine.get_source(directive.lineno)
    directive.state_machine.insert_input(StringList(lines, source), source)


class OptionsTable(Directive):
    """``.. options-table:: dotted.callable`` with ``name: description`` lines.

    A name starting with ``.`` is a class attribute (its value is shown as
    the default).  ``*args``/``**kwargs`` parameters are described as
    ``*name``/``**name``.
    """

    required_arguments = 1
    has_content = True

    def run(self) -> list[nodes.Node]:
        target = _resolve(self.arguments[0])
        try:
            entries = parse_entries(list(self.content))
        except ValueError as error:
            raise self.error(f"options-table {self.arguments[0]}: {error}") from None
        params: dict[str, inspect.Parameter] = {}
        for raw_name, param in inspect.signature(target).parameters.items():
            stars = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
            params[f"{stars}{raw_name}"] = param
        described = {name for name, _ in entries}
        messages = []
        for name in params:
            if name not in described:
                messages.append(f"options-table {self.arguments[0]}: parameter {name!r} is not described")
        rows = ["", ".. list-table::", "   :header-rows: 1", "   :widths: 22 18 60", "",
                "   * - Option", "     - Default", "     - Meaning"]
        for name, text in entries:
            if name.startswith("."):
                if not hasattr(target, name[1:]):
                    messages.append(f"options-table {self.arguments[0]}: no class attribute {name[1:]!r}")
                    continue
                label, default = f"``{name}`` (class attribute)", format_default(getattr(target, name[1:]))
            elif name in params:
                param = params[name]
                label = f"``{name}``"
                if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                    default = ""
                elif param.default is param.empty:
                    default = "required"
                else:
                    default = format_default(param.default)
            else:
                messages.append(f"options-table {self.arguments[0]}: {name!r} is not a parameter")
                continue
            shown = f"``{default}``" if default and default != "required" else default
            rows += [f"   * - {label}", f"     - {shown}" if shown else "     -"]
            rows += [f"     - {text[0]}"] + [f"       {line}" if line else "" for line in text[1:]]
        rows.append("")
        result: list[nodes.Node] = []
        for message in messages:
            result.append(self.state.document.reporter.warning(message, line=self.lineno))
        _insert(self, rows)
        return result


def public_modules() -> list[str]:
    """Every importable public module of the package (no ``_private`` path part), sorted."""
    import geventpool

    names = ["geventpool"]
    for info in pkgutil.walk_packages(geventpool.__path__, "geventpool."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    found = []
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except ImportError as error:  # an optional extra that is not installed
            print(f"docs: the API page skips {name}: {error}", file=sys.stderr)
            continue
        found.append(name)
    return found


def api_sections() -> list[tuple[str, list[str]]]:
    """(module, names to document there) for the API page.

    A package documents its ``__all__``; a module documents only the names
    its package does not re-export, so that each object is described once,
    under the name users import it by.  A module whose name the package
    uses for something else (``geventpool.retry``, the decorator) is left out.
    """
    modules = public_modules()
    sections = []
    described: set[int] = set()  # classes and functions already described (aliases: once)
    for name in modules:
        module = importlib.import_module(name)
        exported = [n for n in getattr(module, "__all__", []) if not n.startswith("__")]
        exported = [n for n in exported if not _described_already(getattr(module, n, None), described)]
        parent_name = name.rpartition(".")[0]
        if parent_name in modules and not hasattr(module, "__path__"):
            parent = importlib.import_module(parent_name)
            if getattr(parent, name.rpartition(".")[2], module) is not module:
                continue
            exported = [n for n in exported if getattr(parent, n, None) is not getattr(module, n, None)]
            if not exported:
                continue  # everything in it is documented under its package
        sections.append((name, exported))
    return sections


def _described_already(value: object, described: set[int]) -> bool:
    """Whether the class or function ``value`` has a section already (and note it if not)."""
    if not (isinstance(value, type) or callable(value)):
        return False
    if id(value) in described:
        return True
    described.add(id(value))
    return False


def data_doc(package: str, name: str) -> list[str]:
    """The ``#:`` doc comment of constant ``name`` of ``package``, from the module defining it."""
    from sphinx.pycode import ModuleAnalyzer

    value = getattr(importlib.import_module(package), name)
    package_path = importlib.import_module(package).__path__
    for info in pkgutil.walk_packages(package_path, f"{package}."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        if getattr(module, name, None) is not value:
            continue
        docs = ModuleAnalyzer.for_module(info.name).find_attr_docs()
        if ("", name) in docs:
            return [line for line in docs[("", name)] if line.strip()]
    return []


class ApiModules(Directive):
    """``.. api-modules::``: an ``automodule`` section per public module of the package.

    Constants re-exported by a package are written as ``py:data`` with their
    value and the doc comment of the module that defines them (autodoc skips
    imported data, and would show ``str``'s docstring for a string).
    """

    def run(self) -> list[nodes.Node]:
        lines: list[str] = []
        for name, members in api_sections():
            module = importlib.import_module(name)
            is_package = hasattr(module, "__path__")
            data = [m for m in members if is_package and not callable(getattr(module, m))
                    and not inspect.ismodule(getattr(module, m))]
            objects = [m for m in members if m not in data]
            title = f"``{name}``"
            lines += [title, "-" * len(title), "", f".. automodule:: {name}"]
            lines += [f"   :members: {', '.join(objects)}" if objects else "   :no-members:", ""]
            for constant in data:
                lines += [f".. py:data:: {constant}", f"   :value: {getattr(module, constant)!r}", ""]
                lines += [f"   {line}" for line in data_doc(name, constant)] + [""]
        _insert(self, lines)
        return []


class BenchmarkResults(Directive):
    """``.. benchmark-results::``: every results file, shown verbatim, and every chart."""

    def run(self) -> list[nodes.Node]:
        results = ROOT / "benchmarks" / "results"
        lines: list[str] = []
        for md in sorted(p for p in results.glob("*.md") if p.name != "README.md"):  # README: the index
            title = md.stem
            for line in md.read_text(encoding="utf-8").splitlines():
                if line.startswith("# "):
                    title = line[2:].strip()
                    break
            heading = f"{title} (``benchmarks/results/{md.name}``)"
            rel = os.path.relpath(md, DOCS)
            lines += [heading, "-" * len(heading), ""]
            lines += [f".. literalinclude:: /{rel}", "   :language: text", ""]
            for png in sorted(results.glob(f"{md.stem}*.png")):
                lines += [f".. image:: /{os.path.relpath(png, DOCS)}", f"   :alt: {png.stem}", ""]
        shown = {f"{md.stem}" for md in results.glob("*.md") if md.name != "README.md"}
        for png in sorted(results.glob("*.png")):
            if not any(png.stem.startswith(stem) for stem in shown):
                lines += [f".. image:: /{os.path.relpath(png, DOCS)}", f"   :alt: {png.stem}", ""]
        if not lines:
            lines = ["No results are recorded yet: run ``make bench``.", ""]
        _insert(self, lines)
        return []


class IncludeIfExists(Directive):
    """``.. include-if-exists:: path`` (relative to docs/), with ``:missing:`` text otherwise."""

    required_arguments = 1
    option_spec = {"missing": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        relative = self.arguments[0]
        if (DOCS / relative).exists():
            lines = [f".. include:: /{relative}", ""]
        else:
            lines = [self.options.get("missing", f"``docs/{relative}`` has not been generated yet."), ""]
        _insert(self, lines)
        return []


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("options-table", OptionsTable)
    app.add_directive("api-modules", ApiModules)
    app.add_directive("benchmark-results", BenchmarkResults)
    app.add_directive("include-if-exists", IncludeIfExists)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
