"""Sphinx configuration of the geventpool docs.

Build: ``sphinx-build -W -b html docs docs/_build/html`` (warnings are errors).
No network: no intersphinx, no remote images; the theme is Sphinx's own
alabaster.  The directives in ``_ext/gpdocs.py`` read the repository at
build time: option defaults come from the signatures, the API page from the
package's public modules, the benchmark page from ``benchmarks/results/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

import geventpool  # noqa: E402

project = "geventpool"
author = "The geventpool developers"
copyright = "the geventpool developers"
release = geventpool.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc", "gpdocs"]
exclude_patterns = ["_build", "_ext", "generated", "migration/*.py", "**/__pycache__"]
html_theme = "alabaster"
html_theme_options = {
    "description": "Greenlet-safe connection pools for gevent",
    "fixed_sidebar": True,
    "page_width": "1400px",
    "body_max_width": "1120px",
}
html_static_path = ["_static"]
html_css_files = ["geventpool.css"]
html_title = f"geventpool {release}"
pygments_style = "sphinx"
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"show-inheritance": True}
# Two classes are called ConnectionPool (the core's and geventpool.dbapi's); an
# unqualified one in a signature is ambiguous to Sphinx, and that is all this hides.
suppress_warnings = ["ref.python"]
