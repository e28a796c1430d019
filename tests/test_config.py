"""load_config: defaults, parsing, validation; create_app: fails closed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from flask import Flask

from app.config import GIB, MIB, REPO, Config, load_config
from app.crypto import KdfCost, X25519Identity
from app.errors import ConfigError
from app.source import create_app
from tests.fixtures_app import (
    make_app,
)


def test_defaults() -> None:
    config = load_config({})
    assert config == Config()
    assert config.data_dir == REPO / "data"
    assert config.keys_dir == REPO / "keys"
    assert config.secrets_dir == REPO / "data" / "secrets"
    assert config.development is False
    assert config.logo is None
    assert config.max_submission_bytes == 2 * GIB
    assert config.session_minutes == 120
    assert config.session_seconds == 7200
    assert config.kdf_cost == KdfCost(opslimit=3, memlimit=64 * MIB)
    assert config.bucket_min == 1024
    assert config.bucket_steps == 4
    assert config.cookie_secure is False
    assert config.reserve_bytes == 2 * GIB + 64 * MIB  # the largest submission, and the database


def test_every_variable(tmp_path: Path) -> None:
    config = load_config(
        {
            "TIPBOX_DATA_DIR": str(tmp_path / "d"),
            "TIPBOX_KEYS_DIR": str(tmp_path / "k"),
            "TIPBOX_ENV": "Development",
            "TIPBOX_NEWSROOM_NAME": "  The   Daily  Bugle ",
            "TIPBOX_LOGO": str(tmp_path / "logo.png"),
            "TIPBOX_MAX_SUBMISSION_BYTES": "1_000_000",
            "TIPBOX_FREE_SPACE_RESERVE": "0",
            "TIPBOX_SESSION_MINUTES": "30",
            "TIPBOX_KDF_OPSLIMIT": "4",
            "TIPBOX_KDF_MEMLIMIT": "8388608",
            "TIPBOX_BUCKET_MIN": "4096",
            "TIPBOX_BUCKET_STEPS": "1",
            "TIPBOX_COOKIE_SECURE": "yes",
            "TIPBOX_RATE_LIMIT_SESSION": "5 per minute",
            "TIPBOX_RATE_LIMIT_GLOBAL": "50/minute;500/hour",
            "UNRELATED": "ignored",
        }
    )
    assert config.data_dir == tmp_path / "d"
    assert config.secrets_dir == tmp_path / "d" / "secrets"  # follows the data folder
    assert config.keys_dir == tmp_path / "k"
    assert config.development is True
    assert config.newsroom_name == "The Daily Bugle"
    assert config.logo == tmp_path / "logo.png"
    assert config.max_submission_bytes == 1_000_000
    assert config.reserve_bytes == 0
    assert load_config({"TIPBOX_MAX_SUBMISSION_BYTES": "1000"}).reserve_bytes == 1000 + 64 * MIB
    assert config.session_minutes == 30
    assert config.kdf_cost == KdfCost(opslimit=4, memlimit=8388608)
    assert config.bucket_min == 4096
    assert config.bucket_steps == 1
    assert config.cookie_secure is True
    assert config.rate_limit_session == "5 per minute"
    assert config.rate_limit_global == "50/minute;500/hour"


def test_secrets_dir_can_be_elsewhere(tmp_path: Path) -> None:
    config = load_config({"TIPBOX_SECRETS_DIR": str(tmp_path / "s")})
    assert config.secrets_dir == tmp_path / "s"


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_cookie_secure_off(value: str) -> None:
    assert load_config({"TIPBOX_COOKIE_SECURE": value}).cookie_secure is False


INVALID = [
    ("TIPBOX_ENV", "staging"),
    ("TIPBOX_ENV", "prod"),
    ("TIPBOX_NEWSROOM_NAME", "   "),
    ("TIPBOX_NEWSROOM_NAME", "x" * 101),
    ("TIPBOX_NEWSROOM_NAME", "Bad\x07Name"),
    ("TIPBOX_NEWSROOM_NAME", "Bad\x9bName"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "2GB"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "0"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "-5"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "1e9"),
    ("TIPBOX_MAX_SUBMISSION_BYTES", "١٠٠"),
    ("TIPBOX_FREE_SPACE_RESERVE", "-1"),
    ("TIPBOX_FREE_SPACE_RESERVE", "1 GiB"),
    ("TIPBOX_SESSION_MINUTES", "0"),
    ("TIPBOX_SESSION_MINUTES", "1441"),
    ("TIPBOX_SESSION_MINUTES", "two hours"),
    ("TIPBOX_KDF_OPSLIMIT", "0"),
    ("TIPBOX_KDF_MEMLIMIT", "1024"),
    ("TIPBOX_BUCKET_MIN", "0"),
    ("TIPBOX_BUCKET_STEPS", "0"),
    ("TIPBOX_BUCKET_STEPS", "3"),
    ("TIPBOX_BUCKET_STEPS", "64"),
    ("TIPBOX_COOKIE_SECURE", "maybe"),
    ("TIPBOX_RATE_LIMIT_SESSION", "lots"),
    ("TIPBOX_RATE_LIMIT_GLOBAL", "10 per fortnight"),
    ("TIPBOX_DATA_DIR", "bad\x00path"),
]


@pytest.mark.parametrize(("name", "value"), INVALID)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config({name: value})


def test_load_config_is_pure(tmp_path: Path) -> None:
    load_config({"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_LOGO": "/nonexistent.png"})
    assert list(tmp_path.iterdir()) == []


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().development = True  # type: ignore[misc]


def test_create_app_reads_the_environment(
    config: Config, monkeypatch: pytest.MonkeyPatch, translations_dir: Path
) -> None:
    monkeypatch.setenv("TIPBOX_DATA_DIR", str(config.data_dir))
    monkeypatch.setenv("TIPBOX_KEYS_DIR", str(config.keys_dir))
    monkeypatch.setenv("TIPBOX_NEWSROOM_NAME", "From The Environment")
    monkeypatch.setenv("TIPBOX_ENV", "development")
    monkeypatch.setattr("app.config.TRANSLATIONS", translations_dir)
    monkeypatch.setattr(Config, "translations_dir", translations_dir)
    app = create_app()
    assert isinstance(app, Flask)
    assert "From The Environment" in app.test_client().get("/").text


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FAIL_CLOSED = [
    ("no keys folder", lambda c, t: {"keys_dir": t / "missing"}, "does not exist"),
    ("empty keys folder", lambda c, t: {"keys_dir": (t / "empty").mkdir() or t / "empty"}, "no "),
    (
        "secret key in keys",
        lambda c, t: {
            "keys_dir": _write(t / "bad" / "newsroom.pub", f"{X25519Identity.generate()}\n").parent
        },
        "secret key",
    ),
    (
        "garbage recipient",
        lambda c, t: {"keys_dir": _write(t / "bad" / "x.pub", "age1notakey\n").parent},
        "x.pub",
    ),
    ("missing logo", lambda c, t: {"logo": t / "nope.png"}, "TIPBOX_LOGO"),
    ("logo not a PNG", lambda c, t: {"logo": _write(t / "logo.png", "GIF89a")}, "not a PNG"),
    ("uncompiled catalogue", lambda c, t: {"translations_dir": _uncompiled(t)}, "not compiled"),
]


def _uncompiled(tmp: Path) -> Path:
    _write(tmp / "tr" / "fr" / "LC_MESSAGES" / "messages.po", 'msgid ""\nmsgstr ""\n')
    return tmp / "tr"


@pytest.mark.parametrize(
    ("case", "change", "message"), FAIL_CLOSED, ids=[f[0] for f in FAIL_CLOSED]
)
def test_create_app_fails_closed(  # type: ignore[no-untyped-def]
    config: Config, tmp_path: Path, case: str, change, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_app(config, **change(config, tmp_path))


def test_a_newsroom_logo(config: Config, tmp_path: Path) -> None:
    logo = tmp_path / "ours.png"
    logo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    client = make_app(config, logo=logo).test_client()
    response = client.get("/logo.png")
    assert response.data == logo.read_bytes()
    assert response.mimetype == "image/png"
    response.close()


def test_the_default_logo_is_drawn_by_the_script() -> None:
    from app.source.logo import TARGET, draw

    assert TARGET.read_bytes() == draw()
    assert len(draw()) < 1024


def test_limits_follow_the_config(config: Config) -> None:
    app = make_app(config, max_submission_bytes=10 * MIB, session_minutes=30)
    assert 10 * MIB < app.config["MAX_CONTENT_LENGTH"] <= 13 * MIB
    assert app.config["MAX_FORM_MEMORY_SIZE"] >= 1 * MIB
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 30 * 60
    assert app.debug is False
