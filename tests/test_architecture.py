"""The house's import rules hold (README "Layout"; the contracts in pyproject.toml).

`lint-imports` checks the layers, that storage never imports service, that only the HTTP
layers import aiohttp, that endpoint modules are independent and that siblings form no
cycle; a copy of the tree with one violation per contract shows each contract can break.
Besides it: no module-level import cycle anywhere in service/ or storage/ (grimp), and no
import inside a function (the way circles used to be dodged), but the allowed lazy ones.
"""
from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
PACKAGES = ("service", "storage")


def _lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_lint_imports_keeps_every_contract():
    run = _lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", run.stdout), run.stdout


# One violation per contract, appended to a copy of the tree (module-level imports, so the
# static analysis sees them; nothing is executed).
VIOLATIONS = {
    "service/core/logs.py": "import service.http.auth",            # a layer reaching up
    "storage/ids.py": "import service.core.settings\nimport storage.quote_queries",
    "storage/quote_queries.py": "import storage.ids",              # a cycle in storage
    "service/pipeline/limits.py": "import aiohttp",                # aiohttp below http
    "service/api/posts.py": "import service.api.me",               # endpoint -> endpoint
    "service/api/admin/tokens.py": "import service.api.admin.accounts",
    "service/openapi/posts.py": "import service.openapi.me",
    "service/openapi/admin/tokens.py": "import service.openapi.admin.accounts",
    "service/cli/repair.py": "import service.cli.accounts",        # command -> command
    "service/api/mastodon/instance.py": "import service.api.mastodon.statuses",
    "service/openapi/mastodon/instance.py": "import service.openapi.mastodon.accounts",
    "service/api/pages/home.py": "import service.api.pages.session",
}


def test_each_contract_breaks_on_a_violation(tmp_path):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for path, line in VIOLATIONS.items():
        with open(tmp_path / path, "a") as f:
            f.write(f"\n{line}\n")
    (tmp_path / "service" / "unplaced").mkdir()  # a package in no layer (exhaustive)
    (tmp_path / "service" / "unplaced" / "__init__.py").write_text("")
    # The copy comes first on the path, ahead of the installed tree.
    run = _lint_imports(tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert run.returncode != 0, run.stdout + run.stderr
    verdicts = [line for line in run.stdout.splitlines() if line.endswith((" KEPT", " BROKEN"))]
    assert verdicts and all(v.endswith(" BROKEN") for v in verdicts), run.stdout
    for shown in ("service.core.logs -> service.http.auth", "storage.ids -> service.core",
                  "service.pipeline.limits -> aiohttp", "service.unplaced",
                  "service.api.posts -> service.api.me", "No cycles are allowed in storage"):
        assert shown in run.stdout, (shown, run.stdout)


def _strongly_connected(graph: grimp.ImportGraph) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the import circles among the packages' modules."""
    modules = sorted(m for m in graph.modules if m.split(".")[0] in PACKAGES)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child.split(".")[0] not in PACKAGES:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(
                        child)))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    circle = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        circle.add(member)
                        if member == node:
                            break
                    if len(circle) > 1 or node in graph.find_modules_directly_imported_by(node):
                        found.append(circle)
    return found


def test_no_import_cycles_in_service_and_storage():
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert len([m for m in graph.modules if m.startswith("service.")]) > 40  # the real tree
    assert _strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = grimp.ImportGraph()
    for importer, imported in (("storage.a", "storage.b"), ("storage.b", "storage.c"),
                               ("storage.c", "storage.a"), ("storage.c", "storage.d")):
        graph.add_import(importer=importer, imported=imported)
    assert _strongly_connected(graph) == [{"storage.a", "storage.b", "storage.c"}]


# Imports inside functions, allowed: real lazy imports of heavy optional libraries, each with
# why. Anything else at function level would hide an import from the contracts (and used to
# dodge a circle): import at the top of the module, from the right layer.
LAZY_IMPORTS = {
    # redis (~0.1-0.4 s to import) is loaded only when a shared rate-limit store is configured
    ("service/resilience/rate_limit_store.py", "redis.asyncio"),
    ("service/resilience/rate_limit_store.py", "redis.asyncio.retry"),
    ("service/resilience/rate_limit_store.py", "redis.backoff"),
}


def _function_level_imports() -> set[tuple[str, str]]:
    found = set()
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import):
                        names = [alias.name for alias in inner.names]
                    elif isinstance(inner, ast.ImportFrom):
                        names = ["." * inner.level + (inner.module or "")]
                    else:
                        continue
                    found |= {(str(path.relative_to(ROOT)), name) for name in names}
    return found


def test_no_function_level_imports_but_the_lazy_ones():
    found = _function_level_imports()
    assert found - LAZY_IMPORTS == set(), "import these at the top of the module"
    assert LAZY_IMPORTS - found == set(), "no longer imported lazily: drop from LAZY_IMPORTS"
