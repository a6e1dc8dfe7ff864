"""Configuration: the documented sample is the defaults, env overrides secrets, typos are caught."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from config.settings import ConfigError, ensure_secret, load_settings

SAMPLE = Path(__file__).resolve().parent.parent / "config" / "liuhen.toml"


def test_the_documented_sample_config_is_exactly_the_defaults():
    from_file = load_settings(SAMPLE, env={})
    defaults = load_settings(None, env={}, base_dir=SAMPLE.parent)
    assert from_file == defaults


def test_environment_overrides_secrets(tmp_path):
    s = load_settings(None, env={"LIUHEN_SECRET": "s", "LIUHEN_DATABASE_URL": "postgresql://x@h/db",
                                 "LIUHEN_SMTP_PASSWORD": "pw"})
    assert (s.gateway.secret, s.database_url, s.delivery.password) == ("s", "postgresql://x@h/db", "pw")


def test_config_file_from_environment_and_relative_paths(tmp_path):
    path = tmp_path / "gw.toml"
    path.write_text('[gateway]\ndomain = "mail.example.cn"\ndata_dir = "state"\n[smtp]\nport = 25\n', encoding="utf-8")
    s = load_settings(None, env={"LIUHEN_CONFIG": str(path)})
    assert s.gateway.domain == "mail.example.cn" and s.smtp.port == 25
    assert s.data_path == tmp_path / "state"
    assert s.database_url == f"sqlite:///{tmp_path / 'state' / 'liuhen.db'}"


@pytest.mark.parametrize("text, message", [("[gateway]\ndomian = 'x'\n", "domian"), ("[smpt]\n", "smpt"),
                                           ("[gateway\n", "cannot read"),
                                           ("[reminders]\ndays_off = ['2027-2-5']\n", "days_off.*2027-02-05")])
def test_mistakes_in_the_file_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env={})


def test_a_secret_is_generated_once_and_kept_private(tmp_path):
    s = load_settings(None, env={}, base_dir=tmp_path)
    first = ensure_secret(s)
    assert len(first.gateway.secret) == 64
    assert ensure_secret(s).gateway.secret == first.gateway.secret
    assert (tmp_path / "var" / "secret.key").stat().st_mode & 0o077 == 0


def test_a_keyword_whose_action_has_no_handler_stops_the_start(tmp_path, monkeypatch):
    # issue 9: it was found as a KeyError in the middle of the first mail using the word.
    import gateway.bootstrap as bootstrap
    from config.settings import DEFAULT_KEYWORDS

    keywords = tmp_path / "keywords.toml"
    keywords.write_text(DEFAULT_KEYWORDS.read_text(encoding="utf-8") + textwrap.dedent("""
        [[keywords]]
        action = "celebrate"
        zh = ["庆祝"]
        en = ["CELEBRATE"]
        roles = ["any"]
        help_zh = "庆祝"
        help_en = "celebrate"
    """), encoding="utf-8")
    monkeypatch.setattr(bootstrap, "DEFAULT_KEYWORDS", keywords)
    with pytest.raises(ConfigError, match=r"keywords.toml: no handler for the action\(s\) celebrate "):
        config = tmp_path / "liuhen.toml"
        config.write_text(f'[gateway]\ndata_dir = "{tmp_path}"\n', encoding="utf-8")
        bootstrap.build_context(load_settings(config, env={}))
