"""``tipbox status``'s free-space line and the settings file it reads (no tor needed here; the
whole command is tested against a real tor in tests/test_onion.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.cli.server import _disk, disk_check, keys_check, read_env_file
from app.crypto import X25519Identity
from app.crypto.hybrid import HybridIdentity
from app.onion import Layout


def test_free_space_against_the_reserve(tmp_path: Path) -> None:
    stats = os.statvfs(tmp_path)
    free = stats.f_bavail * stats.f_frsize
    ok = disk_check(tmp_path, 0)
    assert ok.ok
    assert str(ok).startswith("ok    ")
    assert f"free in {tmp_path} (submissions are refused below 0.00 GiB)" in str(ok)
    full = disk_check(tmp_path, free + (1 << 40))
    assert not full.ok
    assert str(full).startswith("FAIL  ")
    assert str(full).endswith("make room, or lower TIPBOX_FREE_SPACE_RESERVE")
    missing = disk_check(tmp_path / "nowhere", 0)
    assert (missing.ok, missing.text) == (
        False,
        f"data folder {tmp_path / 'nowhere'}: No such file or directory",
    )


def test_the_reserve_comes_from_the_apps_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layout = Layout.under(tmp_path)
    layout.data_dir.mkdir(parents=True)
    monkeypatch.setenv("TIPBOX_ROOT", str(tmp_path))
    monkeypatch.delenv("TIPBOX_FREE_SPACE_RESERVE", raising=False)
    assert "refused below 2.06 GiB" in _disk(layout).text  # 2 GiB + 64 MiB, the default
    settings = tmp_path / "etc/tipbox/tipbox.env"
    settings.parent.mkdir(parents=True)
    settings.write_text(
        "# comment\nTIPBOX_NEWSROOM_NAME=Our Newsroom\nTIPBOX_FREE_SPACE_RESERVE='1073741824'\n"
    )
    assert "refused below 1.00 GiB" in _disk(layout).text
    settings.write_text("TIPBOX_FREE_SPACE_RESERVE=lots\n")
    check = _disk(layout)
    assert not check.ok
    assert "TIPBOX_FREE_SPACE_RESERVE must be a whole number" in check.text


def test_read_env_file(tmp_path: Path) -> None:
    path = tmp_path / "env"
    path.write_text('A=1\n# B=2\n; C=3\nD = "two words"\nnot a setting\n')
    assert read_env_file(path) == {"A": "1", "D": "two words"}
    assert read_env_file(tmp_path / "missing") == {}


def _keys_folder(tmp_path: Path, *recipients: str) -> Path:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "newsroom.pub").write_text("".join(f"{r}\n" for r in recipients))
    return keys


def test_status_says_plainly_when_a_newsroom_key_is_classical(tmp_path: Path) -> None:
    classic = X25519Identity.generate().recipient
    check = keys_check(_keys_folder(tmp_path, str(classic)))
    assert check.ok  # it still works: a warning, not a failure
    assert str(check).startswith("WARN  newsroom keys: 1 of 1 newsroom recipients are classical")


def test_status_with_post_quantum_keys(tmp_path: Path) -> None:
    hybrid = [str(HybridIdentity.generate().recipient) for _ in range(2)]
    check = keys_check(_keys_folder(tmp_path, *hybrid))
    assert str(check) == "ok    newsroom keys: 2 post-quantum recipients (age1pq1…)"


def test_status_fails_on_mixed_or_missing_keys(tmp_path: Path) -> None:
    mixed = [str(HybridIdentity.generate().recipient), str(X25519Identity.generate().recipient)]
    check = keys_check(_keys_folder(tmp_path, *mixed))
    assert not check.ok
    assert "mixes post-quantum" in check.text
    assert not keys_check(tmp_path / "nowhere").ok
