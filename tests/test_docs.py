"""Documentation tests, as Datasette has them: the docs and the code cannot drift apart.

The routes the app serves are exactly the operations the OpenAPI document describes; README
"Layout" names every package; every package opens with what it holds and may import; and
every path under service/ or storage/ (and bench/, ops/, tests/) that the README, the
runbooks or a module's docstrings and comments name exists, so no doc points at a moved file.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from service.app import create_app
from service.core.settings import load_settings
from service.openapi import build_spec

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.relative_to(ROOT).as_posix()
                  for top in ("service", "storage") for p in (ROOT / top).rglob("__init__.py"))
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _settings():
    # No database is reached: routes are added when the app is made, not at start-up.
    return load_settings(env={}, overrides={"database_url": "postgresql://localhost:1/none",
                                            "cursor_secret": "docs"})


def test_routes_equal_openapi_operations():
    settings = _settings()
    app = create_app(settings)
    # aiohttp adds HEAD beside each GET by itself; the document describes the GET.
    routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    operations = {(method.upper(), path) for path, item in build_spec(settings)["paths"].items()
                  for method in item if method in METHODS}
    assert len(routes) > 30
    assert routes - operations == set(), "served, not in the OpenAPI document"
    assert operations - routes == set(), "in the OpenAPI document, not served"


def _section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_readme_layout_names_every_package():
    layout = _section((ROOT / "README.md").read_text(), "Layout")
    assert len(PACKAGES) > 10 and "service/api/admin" in PACKAGES
    missing = [p for p in PACKAGES if not re.search(rf"(?<![\w/]){re.escape(p)}/(?![\w/])", layout)]
    assert missing == [], "README 'Layout' does not name these packages"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_says_what_it_holds_and_may_import(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc and len(doc) > 80, f"{package}/__init__.py opens with no docstring"
    assert "may import" in doc.lower(), f"{package}/__init__.py does not say what it may import"


# service/x.py, storage/x, service/x.name (a module's attribute), bench/x.py ...; not
# patterns (storage/migrations/NNNN_*.sql) nor URLs.
_PATH = re.compile(r"(?<![\w./-])((?:service|storage|bench|ops|tests)/(?:\w+/)*\w+)"
                   r"(\.py|\.md|\.sql|\.toml)?(?:\.\w+)?/?(?![\w*/-])")
DOCS = [ROOT / "README.md", *sorted((ROOT / "ops").glob("*.md"))] + sorted(
    p for top in ("service", "storage", "tests", "bench", "loadtest")
    # this file names stale paths on purpose
    for p in (ROOT / top).rglob("*.py") if p != Path(__file__).resolve())


def _exists(path: str, suffix: str | None) -> bool:
    if suffix:
        return (ROOT / (path + suffix)).is_file()
    return (ROOT / path).exists() or (ROOT / (path + ".py")).is_file()


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_paths_named_in_docs_exist(doc):
    named = [m for m in _PATH.finditer(doc.read_text())]
    # (the whole match too: a file with another suffix, ops/deploy/arbor.service)
    missing = sorted({m.group(0) for m in named if not _exists(m.group(1), m.group(2))
                      and not (ROOT / m.group(0)).exists()})
    assert missing == [], f"{doc.relative_to(ROOT)} names paths that do not exist"


def test_the_path_check_sees_a_stale_path():
    text = ("see `service/settings.py`, service/pipeline/deps.Deps, storage/migrations/, "
            "storage/migrations/NNNN_*.sql and http://x/service/nowhere.py")
    found = [(m.group(1), m.group(2)) for m in _PATH.finditer(text)]
    assert found == [("service/settings", ".py"), ("service/pipeline/deps", None),
                     ("storage/migrations", None)]
    assert [_exists(*f) for f in found] == [False, True, True]
