"""The settings table: validated at start-up, overridable, and documented in the README."""
from __future__ import annotations

from pathlib import Path

import pytest

from service.cli.arbor import main as arbor
from service.core.settings import SETTINGS, SettingsError, load_settings, markdown_table

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_setting_is_documented_in_the_readme():
    text = README.read_text()
    missing = [s.name for s in SETTINGS if f"| `{s.name}` |" not in text]
    assert missing == [], f"add these settings to README.md (arbor settings --markdown): {missing}"


def test_readme_table_is_current():
    assert markdown_table() in README.read_text(), "regenerate with `arbor settings --markdown`"


def test_every_setting_has_help_and_a_valid_default():
    for s in SETTINGS:
        assert s.help.strip(), s.name
        assert s.parse(s.default) == s.default


def test_environment_then_override_precedence():
    s = load_settings(env={"ARBOR_DEFAULT_DEPTH": "3", "ARBOR_PORT": "9000"},
                      overrides={"port": "9100"})
    assert (s.default_depth, s.port) == (3, 9100)
    assert s.sources["default_depth"] == "env ARBOR_DEFAULT_DEPTH"
    assert s.sources["port"] == "override"


def test_database_url_alias():
    s = load_settings(env={"DATABASE_URL": "postgresql://x/y"})
    assert s.database_url == "postgresql://x/y"


@pytest.mark.parametrize("overrides, fragment", [
    ({"port": "eighty"}, "not an integer"),
    ({"port": "70000"}, "above the maximum"),
    ({"default_depth": "-1"}, "below the minimum"),
    ({"log_level": "LOUD"}, "not one of"),
    ({"default_branching": "50", "max_branching": "20"}, "larger than max_branching"),
    ({"db_pool_min": "20", "db_pool_max": "5"}, "db_pool_min"),
    ({"no_such_thing": "1"}, "unknown setting"),
    ({"default_depth": 2.9}, "not an integer"),        # int(2.9) was 2
    ({"default_depth": 2.589e-42}, "not an integer"),  # and this 0
    ({"default_depth": "2.9"}, "not an integer"),
    ({"default_depth": None}, "not an integer"),
    ({"viewer_cache_ttl_s": "nan"}, "not a finite number"),
])
def test_bad_values_are_rejected_naming_the_setting(overrides, fragment):
    with pytest.raises(SettingsError, match=fragment):
        load_settings(env={}, overrides=overrides)


def test_whole_numbers_are_integers():
    s = load_settings(env={"ARBOR_DEFAULT_DEPTH": " 4 "}, overrides={"default_branching": 12.0})
    assert (s.default_depth, s.default_branching) == (4, 12)
    assert type(s.default_branching) is int


def test_a_float_in_the_environment_fails_start_up():
    with pytest.raises(SettingsError, match="default_depth: '2.9' is not an integer"):
        load_settings(env={"ARBOR_DEFAULT_DEPTH": "2.9"})


def test_bad_environment_value_is_rejected():
    with pytest.raises(SettingsError, match="cursor_ttl_s"):
        load_settings(env={"ARBOR_CURSOR_TTL_S": "soon"})


def test_secrets_are_redacted_and_generated_when_empty():
    s = load_settings(env={}, overrides={"database_url": "postgresql://u:pw@h/db"})
    shown = {row["name"]: row for row in s.public()}
    assert shown["database_url"]["value"] == "***"
    assert shown["cursor_secret"]["value"] == "***"
    assert s.sources["cursor_secret"] == "generated" and len(s.cursor_secret) >= 32


def test_cli_rejects_a_bad_setting_with_exit_code_2(capsys):
    assert arbor(["settings", "--setting", "port=nope"]) == 2
    assert "port" in capsys.readouterr().err


def test_cli_lists_settings(capsys):
    assert arbor(["settings", "--setting", "default_depth=4"]) == 0
    out = capsys.readouterr().out
    assert "default_depth" in out and "(override)" in out
