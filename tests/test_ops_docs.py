"""The runbooks name real metrics and the settings' real defaults (an SRE acts on them)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from service.core.settings import BY_NAME

DOCS = sorted(Path("ops").glob("*.md")) + [Path("README.md")]
_ROW = re.compile(r"^\| ((?:`[a-z0-9_]+`(?: / )?)+) \| ([^|]+) \|", re.M)


def _same(text: str, default) -> bool:
    if default == "":
        return text in ('""', "empty")
    if isinstance(default, bool):
        return text == ("true" if default else "false")
    if isinstance(default, (int, float)):
        try:
            return float(text) == default
        except ValueError:
            return False
    return text == f"{default}"


@pytest.mark.parametrize("doc", [d for d in DOCS if d.parent.name == "ops"], ids=str)
def test_settings_tables_give_the_real_defaults(doc):
    for names, defaults in _ROW.findall(doc.read_text()):
        names = [n.strip("`") for n in names.split(" / ")]
        if not all(n in BY_NAME for n in names):
            continue  # a table of something else (admission figures, say)
        cells = [v.strip().strip("`") for v in defaults.split(" / ")]
        values = [v.split(" ")[0] for v in cells]
        assert len(values) == len(names), (doc, names, defaults)
        for name, value, cell in zip(names, values, cells):
            # a default with a space in it (`127.0.0.0/8, ::1`) is given whole
            assert _same(value, BY_NAME[name].default) or cell == BY_NAME[name].default, \
                f"{doc}: {name} default is {BY_NAME[name].default}, the table says {value}"


async def test_metric_names_in_the_docs_exist(aiohttp_client, settings):
    from service.app import create_app

    client = await aiohttp_client(create_app(settings.replace(admission_enabled=True)))
    await client.get("/v1/conversations/1")
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", await (await client.get("/metrics")).text(),
                              re.M))
    for doc in DOCS:
        for name in set(re.findall(r"\barbor_[a-z_]+", doc.read_text())):
            prefix = name if name.endswith("_") else name + "_"  # `arbor_admission_*`: a family
            assert any(e == name or e.startswith(prefix) for e in exported), f"{doc}: {name}"
