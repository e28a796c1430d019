"""Journalist accounts: Argon2id passwords, TOTP, throttling, and ``tipbox user`` (real SQLite)."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyotp
import pytest

from app.db import DATABASE, MIGRATIONS, Database, migrated
from app.journalist.accounts import (
    MIN_PASSWORD,
    AccountError,
    Accounts,
    PasswordCost,
    cost_from_env,
    matching_step,
    suggest_passphrase,
)
from app.journalist.credentials import ApiTokens, Sessions
from tests.fixtures_journalist import CHEAP, PASSWORD, Clock

NOW = 1_800_000_000.0  # a multiple of 30: step boundaries are easy to reason about


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def accounts(tmp_path: Path, clock: Clock) -> Accounts:
    return Accounts(migrated(tmp_path), CHEAP, clock=clock)


def code_at(secret: str, when: float) -> str:
    return pyotp.TOTP(secret).at(when)


def test_passwords_are_argon2id_hashes(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add("alice", PASSWORD)
    with sqlite3.connect(tmp_path / "store.sqlite3") as db:
        (digest,) = db.execute("SELECT password_hash FROM journalists").fetchone()
    assert digest.startswith("$argon2id$")
    assert PASSWORD not in (tmp_path / "store.sqlite3").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    ("name", "password", "needle"),
    [
        ("alice", "x" * (MIN_PASSWORD - 1), "at least 14"),
        ("alice", "", "at least 14"),
        ("alice", "x" * 2000, "at most"),
        ("", PASSWORD, "username"),
        ("-alice", PASSWORD, "username"),
        ("al ice", PASSWORD, "username"),
        ("a" * 33, PASSWORD, "username"),
        ("ålice", PASSWORD, "username"),
    ],
)
def test_bad_accounts_are_refused(
    accounts: Accounts, name: str, password: str, needle: str
) -> None:
    with pytest.raises(AccountError, match=needle):
        accounts.add(name, password)
    assert accounts.all() == []


def test_usernames_are_unique_whatever_the_case(accounts: Accounts) -> None:
    accounts.add("alice", PASSWORD)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add(" ALICE ", PASSWORD)


def test_suggested_passphrases_are_long_diceware() -> None:
    first, second = suggest_passphrase(), suggest_passphrase()
    assert len(first.split()) == 7
    assert len(first) >= MIN_PASSWORD
    assert first != second


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(-60, False), (-30, True), (0, True), (29, True), (30, True), (60, False)],
)
def test_totp_accepts_one_step_either_side(offset: int, accepted: bool) -> None:
    secret = pyotp.random_base32()
    step = matching_step(secret, code_at(secret, NOW + offset), NOW)
    assert (step is not None) == accepted
    if accepted:
        assert step == int((NOW + offset) // 30)


@pytest.mark.parametrize("typed", ["", "12345", "1234567", "abcdef", "１２３４５６", "12 34 5"])
def test_totp_refuses_malformed_codes(typed: str) -> None:
    assert matching_step(pyotp.random_base32(), typed, NOW) is None


def test_totp_code_with_a_space_is_fine() -> None:
    secret = pyotp.random_base32()
    typed = code_at(secret, NOW)
    assert matching_step(secret, f" {typed[:3]} {typed[3:]} ", NOW) is not None


Case = Callable[[Accounts, str, Clock], tuple[str, str, str]]

LOGIN_CASES: dict[str, Case] = {
    "right": lambda a, s, c: ("alice", PASSWORD, code_at(s, c())),
    "right, other case": lambda a, s, c: ("ALICE", PASSWORD, code_at(s, c())),
    "wrong password": lambda a, s, c: ("alice", PASSWORD + "!", code_at(s, c())),
    "wrong code": lambda a, s, c: ("alice", PASSWORD, f"{(int(code_at(s, c())) + 1) % 10**6:06d}"),
    "old code": lambda a, s, c: ("alice", PASSWORD, code_at(s, c() - 90)),
    "unknown user": lambda a, s, c: ("bob", PASSWORD, code_at(s, c())),
    "empty": lambda a, s, c: ("", "", ""),
}


@pytest.mark.parametrize("case", list(LOGIN_CASES))
def test_login(accounts: Accounts, clock: Clock, case: str) -> None:
    _, secret = accounts.add("alice", PASSWORD)
    found = accounts.login(*LOGIN_CASES[case](accounts, secret, clock))
    assert (found is not None) == case.startswith("right")


def test_a_code_is_good_once(accounts: Accounts, clock: Clock) -> None:
    _, secret = accounts.add("alice", PASSWORD)
    typed = code_at(secret, clock())
    assert accounts.login("alice", PASSWORD, typed) is not None
    assert accounts.login("alice", PASSWORD, typed) is None  # reused
    clock.advance(30)
    # The previous step's code is still inside the window, but it is not newer than the last.
    assert accounts.login("alice", PASSWORD, typed) is None
    assert accounts.login("alice", PASSWORD, code_at(secret, clock())) is not None


def test_sixth_try_in_a_minute_is_locked(accounts: Accounts, clock: Clock) -> None:
    _, secret = accounts.add("alice", PASSWORD)
    for _ in range(5):
        assert accounts.login("alice", "wrong password!!", code_at(secret, clock())) is None
        clock.advance(5)
    assert accounts.login("alice", PASSWORD, code_at(secret, clock())) is None  # 6th: locked
    clock.advance(60)
    assert accounts.login("alice", PASSWORD, code_at(secret, clock())) is not None


def test_throttling_is_per_account(accounts: Accounts, clock: Clock) -> None:
    _, alice = accounts.add("alice", PASSWORD)
    _, bob = accounts.add("bob", PASSWORD)
    for _ in range(6):
        accounts.login("alice", "wrong password!!", "000000")
    assert accounts.login("alice", PASSWORD, code_at(alice, clock())) is None
    assert accounts.login("bob", PASSWORD, code_at(bob, clock())) is not None


def test_reset_and_remove_end_sessions_and_tokens(accounts: Accounts, clock: Clock) -> None:
    alice, secret = accounts.add("alice", PASSWORD)
    sessions = Sessions(accounts.database, accounts, 600, 3600, clock)
    tokens = ApiTokens(accounts.database, accounts)
    session, token = sessions.start(alice), tokens.create(alice, "script")
    accounts.set_password("alice", "another long password")
    assert sessions.resume(session) is None
    assert tokens.resolve(token) is None  # a reset ends the tokens as well as the sessions
    token = tokens.create(alice, "script")
    _, new_secret = accounts.reset_totp("alice")
    assert new_secret != secret
    assert tokens.resolve(token) is None
    token = tokens.create(alice, "script")
    assert accounts.login("alice", "another long password", code_at(secret, clock())) is None
    clock.advance(30)
    assert accounts.login("alice", "another long password", code_at(new_secret, clock()))
    accounts.remove("alice")
    assert tokens.resolve(token) is None
    with accounts.database.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM api_tokens").fetchone() == (0,)


def test_a_hash_is_upgraded_to_the_configured_cost(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "store.sqlite3"
    _, secret = Accounts(migrated(path.parent), CHEAP, clock=clock).add("alice", PASSWORD)
    stronger = Accounts(migrated(path.parent), PasswordCost(2, 16, 1), clock=clock)
    assert stronger.login("alice", PASSWORD, code_at(secret, clock())) is not None
    with stronger.database.connect() as db:
        (digest,) = db.execute("SELECT password_hash FROM journalists").fetchone()
    assert "m=16,t=2,p=1" in digest


def test_sessions_expire_idle_and_absolute(accounts: Accounts, clock: Clock) -> None:
    alice, _ = accounts.add("alice", PASSWORD)
    sessions = Sessions(accounts.database, accounts, idle=600, lifetime=3600, clock=clock)
    token = sessions.start(alice)
    for _ in range(5):  # kept alive by use...
        clock.advance(599)
        assert sessions.resume(token) == alice
    clock.advance(3600 - 5 * 599)  # ...but never past its lifetime
    assert sessions.resume(token) is None
    idle = sessions.start(alice)
    clock.advance(600)
    assert sessions.resume(idle) is None
    with accounts.database.connect() as db:
        hashes = [row[0] for row in db.execute("SELECT token_hash FROM sessions")]
    assert token.encode() not in b"".join(hashes)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"TIPBOX_PASSWORD_TIME_COST": "0"}, "TIME_COST"),
        ({"TIPBOX_PASSWORD_MEMORY_KIB": "lots"}, "MEMORY_KIB"),
        ({"TIPBOX_PASSWORD_PARALLELISM": "4", "TIPBOX_PASSWORD_MEMORY_KIB": "16"}, "per lane"),
    ],
)
def test_password_cost_from_env(env: dict[str, str], needle: str) -> None:
    with pytest.raises(AccountError, match=needle):
        cost_from_env(env)
    assert cost_from_env({}) == PasswordCost()


def _attempt_rows(path: Path) -> list[tuple[object, float]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT username, at FROM login_attempts").fetchall()


def test_a_failed_login_keeps_only_a_keyed_hash_of_the_typed_name(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    first = Accounts(migrated(path.parent), CHEAP, secret=b"k" * 32)
    assert first.login("Some.Typo.Name", PASSWORD, "123456") is None
    rows = _attempt_rows(path)
    assert len(rows) == 1
    stored = rows[0][0]
    assert isinstance(stored, bytes)
    assert b"typo" not in stored
    for file in (path, path.with_name(path.name + "-wal")):
        assert b"some.typo.name" not in file.read_bytes()
    # The same key (another worker, a restart) finds the same row: throttling still works.
    Accounts(migrated(path.parent), CHEAP, secret=b"k" * 32).login(
        "some.typo.name", PASSWORD, "123456"
    )
    assert {r[0] for r in _attempt_rows(path)} == {stored}
    # Another key does not: what is kept cannot be checked without the app's secret.
    Accounts(migrated(path.parent), CHEAP, secret=b"o" * 32).login(
        "some.typo.name", PASSWORD, "123456"
    )
    assert len({r[0] for r in _attempt_rows(path)}) == 2


def test_typed_names_a_previous_release_stored_are_dropped(tmp_path: Path) -> None:
    database = Database(tmp_path / DATABASE)
    database.migrate(MIGRATIONS[:1])  # the schema that release had (migration 1 brings it)
    path = database.path
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO login_attempts VALUES ('typed.in.clear', ?)", (NOW,))
        db.execute("PRAGMA user_version = 0")  # that release's database had no version
    Accounts(migrated(tmp_path), CHEAP)
    assert _attempt_rows(path) == []


def test_attempts_are_purged_on_a_timer_without_another_login(tmp_path: Path) -> None:
    path, clock = tmp_path / "store.sqlite3", Clock(NOW)
    accounts = Accounts(
        migrated(path.parent), CHEAP, clock=clock, secret=b"k" * 32, purge_delay=0.05
    )
    accounts.login("alice", PASSWORD, "123456")
    clock.advance(30)
    accounts.login("bob", PASSWORD, "123456")
    clock.advance(31)  # alice's attempt is now over a minute old, bob's is not
    for _ in range(200):
        if len(_attempt_rows(path)) == 1:
            break
        time.sleep(0.05)
    assert [at for _, at in _attempt_rows(path)] == [NOW + 30]
    clock.advance(30)
    for _ in range(200):
        if not _attempt_rows(path):
            break
        time.sleep(0.05)
    assert _attempt_rows(path) == []


def test_stopping_cancels_the_purge_timer(tmp_path: Path) -> None:
    """A stopped app leaves no timer thread behind (a test's app, or one a fork would copy)."""
    path, clock = tmp_path / "store.sqlite3", Clock(NOW)
    accounts = Accounts(
        migrated(path.parent), CHEAP, clock=clock, secret=b"k" * 32, purge_delay=3600
    )
    before = {t for t in threading.enumerate() if isinstance(t, threading.Timer)}
    accounts.login("alice", PASSWORD, "123456")
    (timer,) = {t for t in threading.enumerate() if isinstance(t, threading.Timer)} - before
    accounts.attempts.stop()
    timer.join(timeout=10)
    assert not timer.is_alive()
    accounts.attempts.stop()  # twice is fine


def _argon2_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spy on argon2-cffi's verification: the parameters of every hash it checks against."""
    import argon2._password_hasher as hasher_module

    calls: list[str] = []
    real = hasher_module.verify_secret

    def spy(digest: bytes, secret: bytes, kind: object) -> bool:
        calls.append(digest.decode().rsplit("$", 2)[0])  # $argon2id$v=19$m=…,t=…,p=…
        return real(digest, secret, kind)  # type: ignore[arg-type]

    monkeypatch.setattr(hasher_module, "verify_secret", spy)
    return calls


@pytest.mark.parametrize("now", [CHEAP, PasswordCost(3, 32, 2)])
def test_unknown_users_cost_what_known_users_cost_after_the_setting_changes(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch, now: PasswordCost
) -> None:
    path = tmp_path / "store.sqlite3"
    Accounts(migrated(path.parent), PasswordCost(2, 16, 1), clock=clock).add("alice", PASSWORD)
    accounts = Accounts(migrated(path.parent), now, clock=clock)  # the cost setting changed since
    calls = _argon2_calls(monkeypatch)
    accounts.login("alice", "a wrong password, long enough", "123456")
    accounts.login("nobody", "a wrong password, long enough", "123456")
    accounts.login("alice", PASSWORD, "000000")
    accounts.login("nobody", PASSWORD, "000000")
    assert calls == ["$argon2id$v=19$m=16,t=2,p=1"] * 4


def test_without_accounts_unknown_users_cost_the_configured_cost(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts = Accounts(migrated(tmp_path), PasswordCost(2, 16, 1), clock=clock)
    calls = _argon2_calls(monkeypatch)
    accounts.login("nobody", PASSWORD, "000000")
    assert calls == ["$argon2id$v=19$m=16,t=2,p=1"]
