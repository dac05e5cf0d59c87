"""The runbooks name real metrics, recording rules and settings, with the settings' real
defaults, and their links lead to sections that exist (an SRE acts on them)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from service.core.settings import BY_NAME, CONFIG_ENV, ENV_PREFIX

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


# Not settings, though they look like ones: what /readyz, the admin API and the logs name.
NOT_SETTINGS = {"rate_limit_store", "rate_limit_overrides", "top_clients", "request_id",
                "cache_notifications"}  # the last: a /readyz degraded value
# Environment variables that are not ARBOR_<setting> but that code reads: the config file's,
# and those the load tests, benches and tests read (found in their source, not listed here).
OTHER_ENV = {CONFIG_ENV} | {
    name for top in ("loadtest", "bench", "tests", "service") for path in Path(top).rglob("*.py")
    if path.name != "test_ops_docs.py"
    for name in re.findall(r"[\"'](ARBOR_[A-Z0-9_]+)[\"']", path.read_text())}
_METRIC = re.compile(r"(?<![\w/.-])((?:arbor|process|python)_[a-z0-9_]*[a-z0-9_]|arbor:[a-z_][a-z0-9_:]*)")


async def test_metric_names_in_the_docs_exist(aiohttp_client, settings, world):
    from service.app import create_app

    from .test_ops_rules import CONDITIONAL, RULES

    # as in production: admission and the change feed on (the shared test settings turn
    # them off)
    client = await aiohttp_client(create_app(settings.replace(
        admission_enabled=True, cache_notifications_enabled=True)))
    a = await world.account()
    root = await world.post(a, "root")
    await client.get(f"/v1/conversations/{root}")
    await client.get("/v1/conversations/1")
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", await (await client.get("/metrics")).text(),
                              re.M))
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"]
                for r in g["rules"] if "record" in r}
    for doc in DOCS:
        for name in set(_METRIC.findall(doc.read_text())):
            if name.startswith("arbor:"):
                assert name in recorded, f"{doc}: {name} is no recording rule"
                continue
            if name in CONDITIONAL:
                continue
            prefix = name if name.endswith("_") else name + "_"  # `arbor_admission_*`: a family
            assert any(e == name or e.startswith(prefix) for e in exported), f"{doc}: {name}"


def _setting_families() -> set[str]:
    return {"_".join(n.split("_")[:2]) for n in BY_NAME if "_" in n}


@pytest.mark.parametrize("doc", DOCS, ids=str)
def test_settings_named_in_the_docs_exist(doc):
    text = doc.read_text()
    for var in set(re.findall(r"\bARBOR_[A-Z0-9_]+", text)) - OTHER_ENV:
        assert var[len(ENV_PREFIX):].lower() in BY_NAME, f"{doc}: {var} is no setting"
    for name in re.findall(r"--setting[= ]([a-z0-9_]+)=", text):
        assert name in BY_NAME, f"{doc}: --setting {name} is no setting"
    # the JSON bodies of PATCH /v1/admin/settings examples
    for body in re.findall(r"-d '(\{[^']*\})'[^\n]*admin/settings", text):
        for name in json.loads(body):
            assert name in BY_NAME, f"{doc}: {name} in a settings PATCH is no setting"
    if doc.parent.name != "ops":
        return
    # in a runbook, a `name` of a setting family (db_pool_..., rate_limit_...) must be one
    families = _setting_families()
    for token in set(re.findall(r"`([a-z][a-z0-9]*(?:_[a-z0-9]+)+)", text)):
        if token in BY_NAME or token in NOT_SETTINGS or _METRIC.fullmatch(token):
            continue
        assert "_".join(token.split("_")[:2]) not in families, \
            f"{doc}: `{token}` looks like a setting but is none"


def _anchors(doc: Path) -> set[str]:
    from .test_ops_rules import _slug
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", doc.read_text(), re.M)}


@pytest.mark.parametrize("doc", [d for d in DOCS if d.parent.name == "ops"], ids=str)
def test_links_between_the_ops_pages_lead_somewhere(doc):
    for target in re.findall(r"\]\(([^)#\s]+\.(?:md|yml|json|toml|service|yaml)|"
                             r"[^)#\s]*\.md#[^)\s]+|#[^)\s]+)\)", doc.read_text()):
        path, _, anchor = target.partition("#")
        file = (doc.parent / path) if path else doc
        assert file.exists(), f"{doc}: link to {target}: no such file"
        if anchor:
            assert anchor in _anchors(file), f"{doc}: link to {target}: no such section"
