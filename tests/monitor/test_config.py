"""Settings precedence (command line > environment > file > defaults) and fail-fast errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import IceServer, Mode, Settings, load_settings
from probes.base import ConfigError

SECRET = "s" * 40


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "feltsafe.toml"
    path.write_text(text)
    return path


def test_defaults_follow_the_design_interfaces() -> None:
    settings = load_settings(env={})
    assert settings == Settings()
    assert (settings.host, settings.port) == ("127.0.0.1", 8750)
    assert settings.mode is Mode.FULL
    assert settings.db == "sqlite:///./feltsafe.db"
    assert settings.ice_servers == ()
    assert settings.tick_interval == 0.25
    assert settings.trace_dir is None
    assert settings.retention_days == 90
    assert settings.media_host is None


def test_command_line_beats_environment_beats_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'port = 9000\nmode = "metadata"\nhost = "127.0.0.5"\n')
    env = {"FELTSAFE_PORT": "9100", "FELTSAFE_MODE": "full"}
    settings = load_settings(cli={"port": 9200, "host": None}, env=env, config_file=path)
    assert settings.port == 9200  # command line
    assert settings.mode is Mode.FULL  # environment over file
    assert settings.host == "127.0.0.5"  # file over default (flag not given)


def test_config_file_comes_from_feltsafe_config_when_no_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, 'media_host = "127.0.0.2"\n')
    settings = load_settings(env={"FELTSAFE_CONFIG": str(path)})
    assert settings.media_host == "127.0.0.2"


def test_environment_lists_are_comma_separated_or_json() -> None:
    env = {
        "FELTSAFE_ALLOWED_ORIGINS": "https://a.example, http://127.0.0.1:3000",
        "FELTSAFE_ICE_SERVERS": '[{"urls": "turn:t.example:3478", "username": "u",'
        ' "credential": "p"}, "stun:s.example"]',
        "FELTSAFE_TICK_INTERVAL": "0.5",
        "FELTSAFE_TRACE_DIR": "/tmp/traces",
    }
    settings = load_settings(env=env)
    assert settings.allowed_origins == ("https://a.example", "http://127.0.0.1:3000")
    assert settings.ice_servers == (
        IceServer(("turn:t.example:3478",), "u", "p"),
        IceServer(("stun:s.example",)),
    )
    assert settings.tick_interval == 0.5
    assert settings.trace_dir == Path("/tmp/traces")


def test_file_tables_give_ice_servers_and_origins(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'allowed_origins = ["https://app.example"]\n'
        'ice_servers = [{urls = ["stun:a.example", "stun:b.example"]}]\n'
        f'secret = "{SECRET}"\n',
    )
    settings = load_settings(env={}, config_file=path)
    assert settings.allowed_origins == ("https://app.example",)
    assert settings.ice_servers == (IceServer(("stun:a.example", "stun:b.example")),)
    assert settings.require_secret() == SECRET


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, "port = 1\n\nprot = 2\n")
    with pytest.raises(ConfigError, match=rf"{path}:3: key 'prot': unknown setting"):
        load_settings(env={}, config_file=path)


def test_wrong_type_names_file_line_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, 'port = "8750"\n')
    with pytest.raises(ConfigError, match=rf"{path}:1: key 'port': expected an integer"):
        load_settings(env={}, config_file=path)


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "port = = 3\n")
    with pytest.raises(ConfigError, match=rf"{path}: not valid TOML: .*line 1"):
        load_settings(env={}, config_file=path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_settings(env={}, config_file=tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FELTSAFE_MODE": "fast"}, "FELTSAFE_MODE .*expected one of full, metadata"),
        ({"FELTSAFE_PORT": "eighty"}, "FELTSAFE_PORT .*expected an integer"),
        ({"FELTSAFE_PORT": "70000"}, "FELTSAFE_PORT .*in \\[0, 65535\\]"),
        ({"FELTSAFE_MEDIA_HOST": "localhost"}, "FELTSAFE_MEDIA_HOST .*IP address"),
        ({"FELTSAFE_DB": "feltsafe.db"}, "FELTSAFE_DB .*database URL"),
        ({"FELTSAFE_TICK_INTERVAL": "0"}, "FELTSAFE_TICK_INTERVAL .*\\[0.01, 10\\]"),
        ({"FELTSAFE_ALLOWED_ORIGINS": "app.example"}, "FELTSAFE_ALLOWED_ORIGINS"),
        ({"FELTSAFE_ICE_SERVERS": "http://x"}, "FELTSAFE_ICE_SERVERS .*stun:"),
    ],
)
def test_bad_environment_values_fail_fast(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_a_short_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match="at least 32 characters") as caught:
        load_settings(env={"FELTSAFE_SECRET": "hunter2"})
    assert "hunter2" not in str(caught.value)


def test_no_secret_is_a_config_error_when_one_is_needed() -> None:
    with pytest.raises(ConfigError, match="FELTSAFE_SECRET"):
        load_settings(env={}).require_secret()


def test_secret_is_not_in_the_settings_repr() -> None:
    assert SECRET not in repr(load_settings(env={"FELTSAFE_SECRET": SECRET}))
