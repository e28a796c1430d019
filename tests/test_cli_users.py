"""``tipbox user …`` (app/cli/users.py): journalists' accounts from the server's command line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyotp
import pytest

from app import cli
from app.db import migrated
from app.journalist.accounts import Accounts
from tests.fixtures_journalist import CHEAP


@pytest.fixture
def tipbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., tuple[int, str, str]]]:
    """Run ``tipbox ARGS`` in process over a tmp data folder: (status, stdout, stderr)."""
    monkeypatch.setenv("TIPBOX_DATA_DIR", str(tmp_path / "data"))
    for name, value in {"TIME_COST": "1", "MEMORY_KIB": "8", "PARALLELISM": "1"}.items():
        monkeypatch.setenv(f"TIPBOX_PASSWORD_{name}", value)

    def run(*args: str) -> tuple[int, str, str]:
        status = cli.main(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


def _value(text: str, label: str) -> str:
    return next(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith(label))


def test_user_commands(tipbox: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    status, out, err = tipbox("user", "add", "--admin", "Alice")
    assert (status, err) == (0, "")
    password, secret = _value(out, "password"), _value(out, "TOTP secret")
    assert len(password.split()) == 7
    assert "otpauth://totp/" in out
    accounts = Accounts(migrated(tmp_path / "data"), CHEAP)
    found = accounts.login("alice", password, pyotp.TOTP(secret).now())
    assert found is not None
    assert found.is_admin
    assert tipbox("user", "add", "bob")[0] == 0
    status, out, _ = tipbox("user", "list")
    assert status == 0
    assert [line.split()[:2] for line in out.splitlines()] == [
        ["alice", "admin"],
        ["bob", "journalist"],
    ]
    status, out, _ = tipbox("user", "reset-password", "bob")
    assert status == 0
    assert len(_value(out, "password").split()) == 7
    status, out, _ = tipbox("user", "reset-totp", "bob")
    assert status == 0
    assert _value(out, "TOTP secret")
    assert tipbox("user", "remove", "bob")[0] == 0
    assert [j.username for j in accounts.all()] == ["alice"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("user", "add", "alice"), "tipbox: error: a journalist called 'alice' already exists"),
        (("user", "remove", "nobody"), "tipbox: error: no journalist is called 'nobody'"),
        (("user", "reset-totp", "nobody"), "tipbox: error: no journalist is called 'nobody'"),
        (("user", "add", "bad name"), "tipbox: error: a username is"),
        (("user", "add", "carol", "--ask"), "tipbox: error: there is no terminal"),
        (("user",), "tipbox: error: the following arguments are required"),
    ],
)
def test_user_command_errors(
    tipbox: Callable[..., tuple[int, str, str]],
    monkeypatch: pytest.MonkeyPatch,
    args: tuple[str, ...],
    needle: str,
) -> None:
    assert tipbox("user", "add", "alice")[0] == 0

    def no_terminal(prompt: str = "") -> str:
        raise EOFError

    monkeypatch.setattr("getpass.getpass", no_terminal)
    status, out, err = tipbox(*args)
    assert status == 1
    assert err.startswith(needle), err
