"""app.files: atomic writes (complete file or nothing) and path containment."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.files import (
    NAME_MAX,
    atomic_write,
    contained,
    remove_leftovers,
    temporary_name,
)
from tests.helpers import leftovers


@pytest.fixture(autouse=True)
def umask() -> Iterator[None]:
    """A known umask, so file modes are predictable (restored afterwards)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("durable", [True, False])
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o644])
def test_writes_whole_file_with_mode(tmp_path: Path, mode: int, durable: bool) -> None:
    target = tmp_path / "tip.age"
    with atomic_write(target, mode, durable=durable) as handle:
        handle.write(b"part one, ")
        assert not target.exists()  # nothing under the real name until the block ends
        assert len(leftovers(tmp_path)) == 1  # the temporary file sits next to the target
        handle.write(b"part two")
    assert target.read_bytes() == b"part one, part two"
    assert _mode(target) == mode
    assert leftovers(tmp_path) == []


def test_default_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    with atomic_write(target) as handle:
        handle.write(b"x")
    assert _mode(target) == 0o600


@pytest.mark.parametrize("error", [ValueError, OSError, KeyboardInterrupt])
@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_leaves_nothing(
    tmp_path: Path, error: type[BaseException], overwrite: bool
) -> None:
    target = tmp_path / "plain.txt"
    with pytest.raises(error), atomic_write(target, overwrite=overwrite) as handle:  # noqa: PT012
        handle.write(b"half of a decrypted tip")
        raise error("disk full")
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "plain.txt"
    target.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_write(target, overwrite=True) as handle:  # noqa: PT012
        handle.write(b"new but broken")
        raise RuntimeError("tampered chunk")
    assert target.read_bytes() == b"previous"
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_by_default(tmp_path: Path) -> None:
    target = tmp_path / "newsroom.pub"
    target.write_bytes(b"original")
    with pytest.raises(FileExistsError), atomic_write(target) as handle:
        handle.write(b"replacement")
    assert target.read_bytes() == b"original"
    assert leftovers(tmp_path) == []


def test_refuses_to_overwrite_a_symlink(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"original")
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "link") as handle:
        handle.write(b"replacement")
    assert elsewhere.read_bytes() == b"original"


def test_overwrite_replaces(tmp_path: Path) -> None:
    target = tmp_path / "out"
    target.write_bytes(b"old contents, longer than the new ones")
    with atomic_write(target, 0o644, overwrite=True) as handle:
        handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o644


@pytest.mark.parametrize(
    "name",
    ["a", "x" * 232, "x" * 233, "y" * 255, "報告書" * 26, "é" * 127 + "x", "😀" * 63 + ".gz"],
)
def test_any_name_up_to_255_bytes_is_written(tmp_path: Path, name: str) -> None:
    """Its temporary name stays within 255 bytes, cut between characters, and unique."""
    temporary = temporary_name(name)
    assert len(temporary.encode()) <= NAME_MAX
    assert name.startswith(temporary[1:-22])
    assert temporary != temporary_name(name)
    with atomic_write(tmp_path / name) as handle:
        handle.write(b"data")
    assert (tmp_path / name).read_bytes() == b"data"
    assert leftovers(tmp_path) == []


def test_remove_leftovers_takes_only_temporary_files(tmp_path: Path) -> None:
    ours = [temporary_name(name) for name in ("a.txt", "y" * 255, "報告書" * 26, ".x\n")]
    theirs = [".notes.part", "a.txt", f".a.{'0' * 15}.part", f"a.{'0' * 16}.part", "keep"]
    for name in ours + theirs:
        (tmp_path / name).write_bytes(b"x")
    link = temporary_name("link")  # the right name, but a symbolic link: not ours
    (tmp_path / link).symlink_to(tmp_path / "a.txt")
    assert remove_leftovers(tmp_path) == len(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*theirs, link])


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "nope" / "out") as handle:
        handle.write(b"x")
    assert list(tmp_path.iterdir()) == []


# --- contained() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("a",), "a"),
        (("a", "b.age"), "a/b.age"),
        (("a/../b",), "b"),
        ((".",), ""),
        (("a", ".."), ""),
    ],
)
def test_contained_inside(tmp_path: Path, parts: tuple[str, ...], expected: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    assert contained(root, *parts) == (root / expected).resolve()


@pytest.mark.parametrize(
    "parts",
    [
        ("..",),
        ("../outside",),
        ("a", "..", "..", "outside"),
        ("/etc/passwd",),
        ("a", "/etc"),
        ("../root-sibling",),  # shares the prefix "root" but is not under it
        ("link-out", "file"),  # a symlink inside the root that points outside
    ],
)
def test_contained_refuses_escapes(tmp_path: Path, parts: tuple[str, ...]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link-out").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="escapes"):
        contained(root, *parts)


def test_contained_accepts_a_symlinked_root(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert contained(tmp_path / "alias", "x") == real / "x"
