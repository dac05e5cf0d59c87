"""A TOML file as the third source of settings: flags > environment > file > defaults, an
unknown name or a bad value an error naming it and the file, the source shown by
`arbor settings`."""
from __future__ import annotations

import subprocess
import sys

import pytest

from service.core.settings import SettingsError, load_settings

FILE = """\
# a comment
port = 9090
db_pool_max = 20
log_format = "json"
admission_enabled = false
stale_ttl_s = 30
render_cache_ttl_s = 1.5
"""


@pytest.fixture
def config(tmp_path):
    def write(text: str) -> str:
        path = tmp_path / "arbor.toml"
        path.write_text(text)
        return str(path)
    return write


def test_file_values_and_their_source(config):
    path = config(FILE)
    s = load_settings(env={}, config_file=path)
    assert (s.port, s.db_pool_max, s.log_format, s.admission_enabled) == (9090, 20, "json", False)
    assert s.stale_ttl_s == 30.0 and s.render_cache_ttl_s == 1.5
    assert s.sources["port"] == f"file {path}" and s.sources["host"] == "default"


def test_precedence_is_flags_then_env_then_file_then_defaults(config):
    path = config(FILE)
    s = load_settings(env={"ARBOR_PORT": "7070", "ARBOR_DB_POOL_MAX": "30"},
                      overrides={"port": "6060"}, config_file=path)
    assert (s.port, s.sources["port"]) == (6060, "override")
    assert (s.db_pool_max, s.sources["db_pool_max"]) == (30, "env ARBOR_DB_POOL_MAX")
    assert (s.log_format, s.sources["log_format"]) == ("json", f"file {path}")
    assert (s.host, s.sources["host"]) == ("127.0.0.1", "default")


def test_arbor_config_names_the_file_when_no_flag_does(config, tmp_path):
    path = config("port = 9191\n")
    assert load_settings(env={"ARBOR_CONFIG": path}).port == 9191
    other = tmp_path / "other.toml"
    other.write_text("port = 9292\n")
    assert load_settings(env={"ARBOR_CONFIG": path}, config_file=str(other)).port == 9292


@pytest.mark.parametrize("text, message", [
    ("port = 9090\nprot = 1\nzz_top = 2\n", "unknown setting(s): prot, zz_top"),
    ("port = \"many\"\n", "setting port: 'many' is not an integer"),
    ("port = 99999\n", "setting port: 99999 is above the maximum 65535"),
    ("port = 1.5\n", "setting port: 1.5 is not an integer"),
    ("log_format = \"xml\"\n", "setting log_format: 'xml' is not one of text, json"),
    ("[server]\nport = 1\n", "unknown setting(s): server"),
    ("admission_enabled = [true]\n", "setting admission_enabled: a list is not a value"),
    ("port = \n", "not valid TOML"),
])
def test_bad_files_are_errors_naming_the_problem(config, text, message):
    path = config(text)
    with pytest.raises(SettingsError) as e:
        load_settings(env={}, config_file=path)
    assert message in str(e.value) and path in str(e.value)


def test_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(SettingsError, match="no such file"):
        load_settings(env={}, config_file=str(tmp_path / "nope.toml"))


def test_the_file_is_checked_with_the_other_rules(config):
    with pytest.raises(SettingsError, match="db_pool_min is larger than db_pool_max"):
        load_settings(env={}, config_file=config("db_pool_min = 5\ndb_pool_max = 4\n"))


def _arbor(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True,
                          text=True, timeout=60,
                          env={**{k: v for k, v in os.environ.items()
                                  if not k.startswith("ARBOR_")}, **(env or {})})


def test_arbor_settings_shows_each_source(config):
    path = config(FILE)
    out = _arbor("settings", "--config", path, "--setting", "db_pool_max=12",
                 env={"ARBOR_STALE_TTL_S": "60"})
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "9090" in rows["port"] and f"(file {path})" in rows["port"]
    assert "12" in rows["db_pool_max"] and "(override)" in rows["db_pool_max"]
    assert "60.0" in rows["stale_ttl_s"] and "(env ARBOR_STALE_TTL_S)" in rows["stale_ttl_s"]
    assert "(default)" in rows["host"]
    via_env = _arbor("settings", env={"ARBOR_CONFIG": path})
    assert f"(file {path})" in {line.split()[0]: line
                                for line in via_env.stdout.splitlines()}["port"]


def test_arbor_refuses_a_bad_file_with_exit_2(config):
    out = _arbor("settings", "--config", config("nope = 1\n"))
    assert out.returncode == 2 and "unknown setting(s): nope" in out.stderr
