"""Settings: URL schemes chosen once, clear errors for bad values, file + environment precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from logflow.settings import SettingsError, load_settings


def test_defaults_are_embedded(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path)
    assert (settings.queue_url, settings.store_url, settings.cache_url) == ("embedded://", "embedded://", "memory://")
    assert settings.effective_database_url == f"sqlite:///{(tmp_path / 'metadata.db').resolve()}"


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("LOGFLOW_QUEUE_URL", "rabbitmq://h:5672", "embedded, kafka"),
        ("LOGFLOW_STORE_URL", "solr://h", "embedded, opensearch, elasticsearch, http, https"),
        ("LOGFLOW_DATABASE_URL", "mysql://u@h/db", "sqlite, postgresql"),
        ("LOGFLOW_CACHE_URL", "memcached://h", "memory, redis, rediss"),
    ],
)
def test_unknown_scheme_lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                             valid: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert name in str(info.value) and valid in str(info.value)


def test_every_bad_value_is_reported_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGFLOW_PORT", "99999")
    monkeypatch.setenv("LOGFLOW_RETENTION_DAYS", "0")
    monkeypatch.setenv("LOGFLOW_QUEUE_URL", "nats://x")
    with pytest.raises(SettingsError) as info:
        load_settings()
    text = str(info.value)
    assert "LOGFLOW_PORT" in text and "LOGFLOW_RETENTION_DAYS" in text and "LOGFLOW_QUEUE_URL" in text


def test_config_file_and_environment_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "logflow.toml"
    config.write_text('[logflow]\nport = 9001\nretention_days = 3\ncache_url = "redis://cache:6379/0"\n')
    monkeypatch.setenv("LOGFLOW_CONFIG", str(config))
    monkeypatch.setenv("LOGFLOW_RETENTION_DAYS", "5")
    settings = load_settings(cache_url=None)
    assert settings.port == 9001  # from the file
    assert settings.retention_days == 5  # the environment wins over the file
    assert settings.cache_url == "redis://cache:6379/0"
    assert load_settings(port=9100).port == 9100  # explicit (CLI) wins over both


def test_missing_config_file_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGFLOW_CONFIG", "/nonexistent/logflow.toml")
    with pytest.raises(SettingsError, match="file not found"):
        load_settings()


def test_unknown_setting_in_file_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "logflow.toml"
    config.write_text("prot = 1\n")
    monkeypatch.setenv("LOGFLOW_CONFIG", str(config))
    with pytest.raises(SettingsError, match="PROT"):
        load_settings()
