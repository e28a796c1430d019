"""What every benchmark section shares: options, the section type, test data, tables, statistics.

Test data lives in a fresh directory under ``bench/out/`` (gitignored), is generated on demand
from ``os.urandom`` in 64 MiB pieces, is reused by every section of a run, and is deleted when
the run ends, whatever the outcome.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO = PACKAGE_DIR.parent
OUT_DIR = PACKAGE_DIR / "out"
PIECE = 64 * 1024 * 1024
KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


def say(text: str) -> None:
    """Print progress at once (the runs are long; show them as they go)."""
    print(text, flush=True)


@dataclass(frozen=True)
class Options:
    """How this run was asked for."""

    repetitions: int
    flags: tuple[str, ...] = ()  # the command-line flags that chose them

    def command(self, section: str) -> str:
        """The exact command that reproduces ``section`` with these options."""
        return " ".join([".venv/bin/python", "-m", "bench", section, *self.flags])


class Workspace:
    """A temporary directory of test data and outputs, removed by :meth:`cleanup`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._random: dict[int, Path] = {}

    @classmethod
    def create(cls, parent: Path = OUT_DIR) -> Workspace:
        parent.mkdir(parents=True, exist_ok=True)
        return cls(Path(tempfile.mkdtemp(prefix="run-", dir=parent)))

    def path(self, name: str) -> Path:
        """A path in the workspace (not created)."""
        return self.root / name

    def fresh(self, name: str) -> Path:
        """A path in the workspace whose previous content, if any, was deleted."""
        path = self.path(name)
        path.unlink(missing_ok=True)
        return path

    def random_file(self, size: int) -> Path:
        """A file of ``size`` random bytes, written once per run and then reused."""
        if size not in self._random:
            path = self.path(f"random-{size // MIB}MiB.bin")
            say(f"  generating {size / GIB:.2f} GiB of random test data in {path.name}")
            with path.open("wb") as handle:
                left = size
                while left:
                    piece = min(PIECE, left)
                    handle.write(os.urandom(piece))
                    left -= piece
            self._random[size] = path
        return self._random[size]

    def cleanup(self) -> None:
        """Delete everything this run wrote, and ``bench/out/`` itself if it is now empty."""
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):  # another run's data, or files someone keeps there
            self.root.parent.rmdir()


@dataclass(frozen=True)
class Context:
    """What a section gets: the options and the shared workspace."""

    options: Options
    workspace: Workspace


@dataclass(frozen=True)
class Section:
    """One benchmark: ``run`` measures, prints as it goes, and returns the section's Markdown."""

    name: str
    title: str
    run: Callable[[Context], str] = field(repr=False)

    @property
    def heading(self) -> str:
        """The ``## `` heading of the section (its key is the part before the colon)."""
        return f"{self.name}: {self.title}"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column (``l`` or ``r``, default ``l``)."""
    align = align.ljust(len(headers), "l")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = [headers, rule, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def seconds(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def ratio(value: float) -> str:
    return f"{value:.2f}×"


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / KIB:.1f}"
