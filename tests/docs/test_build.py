"""The Sphinx docs build with warnings as errors, and say what the code does.

The build runs in a subprocess (``sphinx-build -W``) into a temporary
directory; the checks then read the HTML it wrote.  The helpers of the docs'
own Sphinx extension (docs/_ext/gpdocs.py) are tested directly.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from gevent import subprocess

import geventpool

__all__: list[str] = []

# sphinx is in the dev and docs extras (make test installs them); a bare `test` env (tox) skips
pytest.importorskip("sphinx", reason="sphinx is not installed (pip install -e '.[docs]')")

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
BUILD_TIMEOUT = 300


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=BUILD_TIMEOUT, check=False,
    )
    assert result.returncode == 0, f"sphinx-build -W failed:\n{result.stdout}\n{result.stderr}"
    return out


def gpdocs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpdocs", DOCS / "_ext" / "gpdocs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def text_of(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))


@pytest.mark.guard(BUILD_TIMEOUT + 30)
def test_every_page_is_built(html: Path) -> None:
    pages = {p.relative_to(DOCS).with_suffix(".html").as_posix() for p in DOCS.rglob("*.rst")
             if "_build" not in p.parts and "generated" not in p.parts}
    missing = sorted(page for page in pages if not (html / page).exists())
    assert not missing, missing
    assert "Getting started" in text_of(html / "index.html")


@pytest.mark.guard(BUILD_TIMEOUT + 30)
def test_options_page_shows_the_signature_defaults(html: Path) -> None:
    page = (html / "options.html").read_text(encoding="utf-8")
    # the core pool's defaults, as the signature has them
    params = inspect.signature(geventpool.ConnectionPool).parameters
    for name in ("timeout", "connect_timeout", "max_idle", "max_lifetime", "num_workers"):
        default = repr(params[name].default)
        # the first table row whose first cell is the option: the core pool's table comes first
        row = re.search(rf'<tr class="row-[a-z]+"><td><p><code[^>]*><span class="pre">{name}</span>.*?</tr>',
                        page, re.S)
        assert row is not None, name
        cells = re.findall(r"<td>(.*?)</td>", row.group(0), re.S)
        assert f'<span class="pre">{default}</span>' in cells[1], (name, default, cells)


@pytest.mark.guard(BUILD_TIMEOUT + 30)
def test_api_page_documents_every_public_name(html: Path) -> None:
    page = (html / "api.html").read_text(encoding="utf-8")
    for name in geventpool.__all__:
        if name.startswith("__"):
            continue
        assert f'id="geventpool.{name}"' in page, name
    assert 'id="geventpool.ldap.LDAPPool"' in page
    assert 'id="geventpool.dbapi.ConnectionPool"' in page
    assert 'id="geventpool.testing.FaultProxy"' in page


@pytest.mark.guard(BUILD_TIMEOUT + 30)
def test_migration_guides_show_the_tested_scripts(html: Path) -> None:
    for guide, script in [
        ("geventconnpool", "geventconnpool_new.py"),
        ("ldappool", "ldappool_new.py"),
        ("eventlet-db-pool", "eventlet_db_pool_new.py"),
        ("ldap3-serverpool", "ldap3_serverpool_new.py"),
    ]:
        page = text_of(html / "migration" / f"{guide}.html")
        source = (DOCS / "migration" / script).read_text(encoding="utf-8")
        shown = source.split("# [new-", 1)[1].split("\n", 1)[1].split("# [/new-", 1)[0]
        first_def = next(line for line in shown.splitlines() if line.startswith(("def ", "class ")))
        assert first_def.split("(")[0] in page, (guide, first_def)


@pytest.mark.guard(BUILD_TIMEOUT + 30)
def test_benchmark_page_shows_every_results_file(html: Path) -> None:
    page = text_of(html / "benchmarks.html")
    for md in (ROOT / "benchmarks" / "results").glob("*.md"):
        if md.name == "README.md":  # the index of the results, not a result
            continue
        lines = md.read_text(encoding="utf-8").splitlines()
        first_row = next((line for line in lines if line.startswith("| ")), None)
        if first_row is None:  # a page of text and charts (failover.md): check its title instead
            title = lines[0].lstrip("# ").strip()
            assert title.split(":")[0] in page, md.name
            continue
        assert first_row.split("|")[1].strip() in page, md.name


def test_format_default() -> None:
    fmt = gpdocs().format_default
    import random
    import socket
    import time

    assert fmt((socket.error,)) == "(OSError,)"
    assert fmt((OSError, ValueError)) == "(OSError, ValueError)"
    assert fmt(time.monotonic) == "time.monotonic"
    assert fmt(random.random) == "random.random"
    assert fmt(30.0) == "30.0"
    assert fmt("1.2") == "'1.2'"
    assert fmt(None) == "None"


def test_parse_entries() -> None:
    parse = gpdocs().parse_entries
    assert parse(["size: the size", "  continued", "", ".attr: an attribute"]) == [
        ("size", ["the size", "continued", ""]),
        (".attr", ["an attribute"]),
    ]
    with pytest.raises(ValueError, match="expected 'name: description'"):
        parse(["no colon here"])
    with pytest.raises(ValueError, match="continuation line"):
        parse(["  orphan"])


def test_api_sections_describe_each_object_once() -> None:
    sections = dict(gpdocs().api_sections())
    assert "geventpool.retry" not in sections  # the name of the decorator, not of the module
    assert "ConnectionPool" in sections["geventpool"]
    assert "LDAPPool" in sections["geventpool.ldap"]
    # a module shows only what its package does not re-export
    assert "Slapd" in sections["geventpool.testing.slapd"]
    assert "FaultProxy" not in sections.get("geventpool.testing.proxy", [])
