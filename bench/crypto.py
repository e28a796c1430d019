"""Section "crypto": the age v1 envelope against the ``age`` tool, its ceiling, memory, Argon2id.

Method (everything in one run, each figure next to the baseline it is compared with):

1. Speed: a 1 GiB random file is encrypted and decrypted by ``tipbox`` and by ``age``, file to
   file and to /dev/null (stdout redirected: the CPU-bound view, as the file-to-file figures
   depend on the shared disk). Both decrypt the same ciphertext (written by ``age``). Before
   every timed run the previous output is deleted and ``os.sync()`` flushes whatever is dirty,
   so no run pays for another's writeback; tipbox and age runs are interleaved (the first tool
   alternates between repetitions). The input is warm in the page cache and the outputs are not
   fsynced by either tool: file to file measures writing into the page cache, as a user sees it.
   Reported: median and min wall time, MB/s (10^6 bytes) of the median, and the ratio
   age_time / tipbox_time (>= 1: tipbox is faster; the project's target is >= 0.9). Start-up
   (an empty input) is measured too, since a 1 GiB run of ``tipbox`` pays for a Python start.
2. Ceiling: raw ChaCha20-Poly1305 (``encrypt_into``/``decrypt_into`` of ``cryptography``) over
   64 KiB in-memory buffers for 1 GiB on one thread, in this process, against which the
   /dev/null throughput of each tool is put. Tipbox seals on two threads, so it can exceed 1.
3. Memory: the peak RSS of each command on a 2 GiB file, file to file, as GNU time's ``%M``
   reports it (why not ``wait4``/RUSAGE_CHILDREN: see :mod:`bench.procs`); the 1 GiB runs of
   part 1 give the same figure, to show it does not grow with the input. Tipbox's target is
   under 64 MiB, whatever the size.
4. Argon2id: ``derive_source_keys`` with the default KdfCost (3 passes, 64 MiB), 7 runs in a
   fresh interpreter (:mod:`bench.kdf_probe`) for the median time and the growth of its peak
   RSS; argon2-cffi's ``hash_secret_raw`` with the same parameters is the baseline when it is
   importable (it is not a dependency, and is not installed for this).

Before timing, round trips are checked both ways (age opens tipbox's file, tipbox opens age's)
by comparing SHA-256 digests, so a fast but wrong result cannot be reported.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from bench.core import (
    GIB,
    KIB,
    MIB,
    Context,
    Section,
    Workspace,
    median,
    mib,
    ratio,
    say,
    seconds,
    table,
)
from bench.procs import (
    TIME,
    Argv,
    CommandError,
    Measurement,
    file_sha256,
    run_checked,
    run_measured,
    stdout_sha256,
)

SIZE = GIB
RSS_SIZE = 2 * GIB
CHUNK = 64 * KIB
RATIO_TARGET = 0.9
RSS_TARGET_KIB = 64 * MIB // KIB
KDF_RUNS = 7
KDF_TARGET = 0.5
STARTUP_RUNS = 5
TOOLS = ("tipbox", "age")
TIPBOX = Path(sys.executable).parent / "tipbox"
AGE = Path(shutil.which("age") or "/usr/bin/age")
RSS_METHOD = "max RSS of the command, GNU time `%M`" if TIME.exists() else "`wait4` ru_maxrss"


@dataclass(frozen=True)
class Keys:
    identity: Path
    recipients: Path


@dataclass(frozen=True)
class Case:
    op: str  # "encrypt" or "decrypt"
    to_file: bool

    @property
    def label(self) -> str:
        return f"{self.op}, file → {'file' if self.to_file else '/dev/null'}"


CASES = (
    Case("encrypt", True),
    Case("decrypt", True),
    Case("encrypt", False),
    Case("decrypt", False),
)
Results = dict[tuple[str, str], list[Measurement]]  # (case label, tool) -> runs


def command(tool: str, op: str, keys: Keys, src: Path, out: Path | None) -> list[str | Path]:
    """The command line of ``tool`` for ``op``; no ``out``: ciphertext/plaintext to stdout.

    /dev/null is never passed as ``-o`` to tipbox: it writes through a temporary file renamed
    over the target, which would replace the device node with a regular file.
    """
    argv: list[str | Path]
    if tool == "tipbox":
        argv = [TIPBOX, "encrypt", "-R", keys.recipients]
        if op == "decrypt":
            argv = [TIPBOX, "decrypt", "-i", keys.identity]
    else:
        argv = [AGE, "-R", keys.recipients]
        if op == "decrypt":
            argv = [AGE, "-d", "-i", keys.identity]
    if out is not None:
        argv += ["-o", out]
    return [*argv, src]


def shown(argv: Argv, workspace: Workspace) -> str:
    """``argv`` as a reader would type it, with workspace files by their bare names."""
    words = []
    for arg in argv:
        path = Path(arg)
        if arg == TIPBOX:
            words.append(".venv/bin/tipbox")
        elif path.parent == workspace.root:
            words.append(path.name)
        else:
            words.append(str(arg))
    return " ".join(words)


def measure(argv: Argv, out: Path | None) -> Measurement:
    """One timed run: delete the previous output, flush dirty pages, run."""
    if out is not None:
        out.unlink(missing_ok=True)
    os.sync()
    return run_measured(argv)


# --- preparation ------------------------------------------------------------------------------


def make_keys(workspace: Workspace) -> Keys:
    keys = Keys(workspace.path("identity.txt"), workspace.path("keys.pub"))
    argv: list[str | Path] = [TIPBOX, "keygen", "--no-passphrase"]
    run_checked([*argv, "--identity", keys.identity, "--recipient", keys.recipients])
    return keys


def age_ciphertext(workspace: Workspace, keys: Keys, plain: Path) -> Path:
    """The ciphertext both tools decrypt, written (untimed) by age."""
    cipher = workspace.fresh(plain.with_suffix(".age").name)
    run_checked(command("age", "encrypt", keys, plain, cipher))
    return cipher


def check_round_trips(workspace: Workspace, keys: Keys, plain: Path, cipher: Path) -> None:
    """age opens tipbox's file and tipbox opens age's, byte for byte (also warms both up)."""
    say("  checking round trips (age ⇄ tipbox) by SHA-256")
    expected = file_sha256(plain)
    ours = workspace.fresh("tipbox-check.age")
    run_checked(command("tipbox", "encrypt", keys, plain, ours))
    checks = {
        "age -d of tipbox's ciphertext": command("age", "decrypt", keys, ours, None),
        "tipbox decrypt of age's ciphertext": command("tipbox", "decrypt", keys, cipher, None),
    }
    for what, argv in checks.items():
        if stdout_sha256(argv) != expected:
            raise CommandError(f"{what} does not give back the plaintext")
    ours.unlink()


# --- measurements -----------------------------------------------------------------------------


def log_run(prefix: str, tool: str, run: Measurement) -> None:
    say(
        f"  {prefix:<38} {tool:<6} {run.wall:6.2f} s  user {run.user:5.2f}  sys {run.system:5.2f}"
        f"  peak {mib(run.max_rss_kib)} MiB"
    )


def check_output(case: Case, out: Path | None, plain_size: int) -> None:
    if out is None:
        return
    size = out.stat().st_size
    if (case.op == "decrypt" and size != plain_size) or size < plain_size:
        raise CommandError(f"{case.label}: unexpected output size {size}")


def time_cases(context: Context, keys: Keys, plain: Path, cipher: Path) -> Results:
    """Every case, ``repetitions`` times, tipbox and age interleaved."""
    workspace, reps = context.workspace, context.options.repetitions
    results: Results = defaultdict(list)
    for rep in range(reps):
        order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
        for case in CASES:
            src = plain if case.op == "encrypt" else cipher
            for tool in order:
                out = workspace.path(f"out-{tool}") if case.to_file else None
                run = measure(command(tool, case.op, keys, src, out), out)
                check_output(case, out, SIZE)
                results[case.label, tool].append(run)
                log_run(f"rep {rep + 1}/{reps} {case.label}", tool, run)
    for tool in TOOLS:
        workspace.fresh(f"out-{tool}")
    return dict(results)


def time_startup(workspace: Workspace, keys: Keys) -> dict[str, list[Measurement]]:
    """Encrypting an empty input: process start-up and key handling, nothing else."""
    empty = workspace.path("empty.bin")
    empty.touch()
    runs: dict[str, list[Measurement]] = defaultdict(list)
    for rep in range(STARTUP_RUNS):
        for tool in TOOLS if rep % 2 == 0 else TOOLS[::-1]:
            runs[tool].append(measure(command(tool, "encrypt", keys, empty, None), None))
    for tool in TOOLS:
        say(
            f"  start-up (empty input, median of {STARTUP_RUNS}) {tool:<6} "
            f"{median([r.wall for r in runs[tool]]):.3f} s"
        )
    return dict(runs)


def raw_aead(op: str, total: int = SIZE) -> float:
    """Seconds for ``op`` of ``total`` bytes in 64 KiB chunks on one thread (no I/O)."""
    aead = ChaCha20Poly1305(os.urandom(32))
    nonce = bytes(12)  # one nonce for all: what is measured is the arithmetic, not STREAM
    plain = memoryview(bytearray(os.urandom(CHUNK)))
    sealed = memoryview(bytearray(aead.encrypt(nonce, plain, None)))
    out = memoryview(bytearray(CHUNK + 16))
    opened = out[:CHUNK]
    count = total // CHUNK
    start = time.perf_counter()
    if op == "encrypt":
        for _ in range(count):
            aead.encrypt_into(nonce, plain, None, out)
    else:
        for _ in range(count):
            aead.decrypt_into(nonce, sealed, None, opened)
    return time.perf_counter() - start


def time_ceiling(repetitions: int) -> dict[str, list[float]]:
    runs: dict[str, list[float]] = {"encrypt": [], "decrypt": []}
    for _ in range(max(3, repetitions)):
        for op, times in runs.items():
            times.append(raw_aead(op))
    for op, times in runs.items():
        say(f"  raw ChaCha20-Poly1305 {op}_into, 1 thread: {SIZE / GIB / median(times):.2f} GiB/s")
    return runs


def peak_rss(workspace: Workspace, keys: Keys) -> dict[tuple[str, str], Measurement]:
    """Each tool once per direction on a 2 GiB file, file to file (age's file is then decrypted)."""
    plain = workspace.random_file(RSS_SIZE)
    cipher = workspace.path("big.age")
    runs: dict[tuple[str, str], Measurement] = {}
    for op in ("encrypt", "decrypt"):
        src = plain if op == "encrypt" else cipher
        for tool in ("tipbox", "age"):
            out = cipher if (op, tool) == ("encrypt", "age") else workspace.path("big-out")
            runs[op, tool] = measure(command(tool, op, keys, src, out), out)
            log_run(f"2 GiB {op}, file → file", tool, runs[op, tool])
    for name in ("big-out", "big.age", plain.name):
        workspace.fresh(name)
    return runs


@dataclass(frozen=True)
class KdfResult:
    """What :mod:`bench.kdf_probe` reports."""

    times: list[float]
    memlimit: int  # bytes
    peak_growth_kib: int

    @classmethod
    def parse(cls, text: str) -> KdfResult:
        data = json.loads(text)
        times = [float(t) for t in data["times"]]
        return cls(times, int(data["memlimit"]), int(data["peak_growth_kib"]))


def kdf_probe(name: str) -> KdfResult:
    result = KdfResult.parse(
        run_checked([sys.executable, "-m", "bench.kdf_probe", name, str(KDF_RUNS)])
    )
    say(
        f"  Argon2id {name}: median {median(result.times):.3f} s over {KDF_RUNS} runs, "
        f"peak RSS +{result.peak_growth_kib / KIB:.1f} MiB"
    )
    return result


def time_kdf() -> dict[str, KdfResult | None]:
    """Tipbox's derivation, then argon2-cffi with the same parameters if it is importable."""
    cffi = importlib.util.find_spec("argon2") is not None
    return {
        "tipbox": kdf_probe("tipbox"),
        "argon2-cffi": kdf_probe("argon2-cffi") if cffi else None,
    }


# --- tables -----------------------------------------------------------------------------------


def walls(runs: Sequence[Measurement]) -> list[float]:
    return [r.wall for r in runs]


def mbps(wall: float, size: int = SIZE) -> str:
    return f"{size / 1e6 / wall:.0f}"


def verdict(ok: bool) -> str:
    return "yes" if ok else "**no**"


def paired(results: Results, label: str) -> float:
    """Median of age/tipbox over the runs of each repetition (robust to drifting load)."""
    pairs = zip(results[label, "age"], results[label, "tipbox"], strict=True)
    return median([a.wall / t.wall for a, t in pairs])


def speed_row(label: str, ours: list[float], theirs: list[float], speed: bool) -> list[str]:
    return [
        label,
        seconds(median(ours)), seconds(min(ours)), mbps(median(ours)) if speed else "",
        seconds(median(theirs)), seconds(min(theirs)), mbps(median(theirs)) if speed else "",
        ratio(median(theirs) / median(ours)), ratio(min(theirs) / min(ours)),
    ]  # fmt: skip


def speed_table(results: Results, startup: dict[str, list[Measurement]]) -> str:
    rows = []
    for case in CASES:
        ours, theirs = walls(results[case.label, "tipbox"]), walls(results[case.label, "age"])
        by_median = median(theirs) / median(ours)
        row = speed_row(case.label, ours, theirs, speed=True)
        rows.append([*row, ratio(paired(results, case.label)), verdict(by_median >= RATIO_TARGET)])
    ours, theirs = walls(startup["tipbox"]), walls(startup["age"])
    rows.append([*speed_row("start-up only (empty input)", ours, theirs, speed=False), "", "n/a"])
    headers = [
        "1 GiB", "tipbox median s", "tipbox min s", "tipbox MB/s", "age median s", "age min s",
        "age MB/s", "age/tipbox (medians)", "age/tipbox (mins)", "age/tipbox (paired)",
        f"medians ≥ {RATIO_TARGET}×",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrrrrrl")


def cpu_table(results: Results) -> str:
    rows = []
    for case in CASES:
        cells = [case.label]
        for tool in TOOLS:
            runs = results[case.label, tool]
            cells += [
                seconds(median([r.user for r in runs])),
                seconds(median([r.system for r in runs])),
            ]
        rows.append(cells)
    headers = ["1 GiB (median CPU s)", "tipbox user", "tipbox sys", "age user", "age sys"]
    return table(headers, rows, "lrrrr")


def ceiling_table(
    ceiling: dict[str, list[float]], results: Results, startup: dict[str, list[Measurement]]
) -> str:
    rows = []
    for op in ("encrypt", "decrypt"):
        raw = SIZE / GIB / median(ceiling[op])
        rows.append([f"raw ChaCha20-Poly1305 `{op}_into`, 64 KiB, 1 thread", f"{raw:.2f}", "1.00"])
        label = Case(op, False).label
        for tool in TOOLS:
            wall = median(walls(results[label, tool]))
            net = wall - median(walls(startup[tool]))
            rows.append(
                [f"{tool} {label}", f"{SIZE / GIB / wall:.2f}", f"{SIZE / GIB / wall / raw:.2f}"]
            )
            if net > 0:
                rows.append(
                    ["… minus start-up", f"{SIZE / GIB / net:.2f}", f"{SIZE / GIB / net / raw:.2f}"]
                )
            else:
                rows.append(["… minus start-up", "n/a", "n/a"])
    return table(["1 GiB, in memory / to /dev/null", "GiB/s", "fraction of ceiling"], rows, "lrr")


def rss_table(big: dict[tuple[str, str], Measurement], results: Results) -> str:
    rows = []
    for tool in TOOLS:
        for op in ("encrypt", "decrypt"):
            run = big[op, tool]
            small = [r.max_rss_kib or 0 for r in results[Case(op, True).label, tool]]
            target = "n/a (baseline)"
            if tool == "tipbox":
                target = verdict(run.max_rss_kib is not None and run.max_rss_kib < RSS_TARGET_KIB)
            rows.append([
                f"{tool} {op}", mib(run.max_rss_kib), mib(max(small) or None),
                seconds(run.wall), mbps(run.wall, RSS_SIZE), target,
            ])  # fmt: skip
    headers = [
        "file → file", "peak RSS MiB (2 GiB)", "peak RSS MiB (1 GiB, max of runs)",
        "wall s (2 GiB)", "MB/s", "< 64 MiB",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrl")


def kdf_row(name: str, result: KdfResult, base: float) -> list[str]:
    times = result.times
    return [
        name, seconds(median(times)), seconds(min(times)), seconds(max(times)),
        f"{result.memlimit / MIB:.0f}", mib(result.peak_growth_kib), ratio(median(times) / base),
        verdict(median(times) < KDF_TARGET),
    ]  # fmt: skip


def kdf_table(kdf: dict[str, KdfResult | None]) -> str:
    ours, cffi = kdf["tipbox"], kdf["argon2-cffi"]
    assert ours is not None
    base = median(ours.times)
    rows = [kdf_row("tipbox `derive_source_keys` (PyNaCl → libsodium)", ours, base)]
    if cffi is None:
        rows.append(["argon2-cffi `hash_secret_raw`", "not installed: not measured", *[""] * 6])
    else:
        rows.append(kdf_row("argon2-cffi `hash_secret_raw` (baseline)", cffi, base))
    headers = [
        f"Argon2id, t=3, 64 MiB, 1 lane ({KDF_RUNS} runs)", "median s", "min s", "max s",
        "memlimit MiB", "peak RSS growth MiB", "time / tipbox", f"< {KDF_TARGET} s",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrrl")


def commands_block(workspace: Workspace, keys: Keys) -> str:
    plain, cipher = Path("random-1024MiB.bin"), Path("random-1024MiB.age")
    lines = []
    for case in CASES:
        src = workspace.path(str(plain if case.op == "encrypt" else cipher))
        out = workspace.path("OUT") if case.to_file else None
        for tool in TOOLS:
            text = shown(command(tool, case.op, keys, src, out), workspace)
            lines.append(text if case.to_file else f"{text} > /dev/null")
    return "\n".join(lines)


def misses(results: Results) -> list[str]:
    out = []
    for case in CASES:
        value = median(walls(results[case.label, "age"])) / median(
            walls(results[case.label, "tipbox"])
        )
        if value < RATIO_TARGET:
            out.append(f"{case.label} ({ratio(value)})")
    return out


# --- the section ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    results: Results
    startup: dict[str, list[Measurement]]
    ceiling: dict[str, list[float]]
    big: dict[tuple[str, str], Measurement]
    kdf: dict[str, KdfResult | None]


def measure_all(context: Context) -> tuple[Keys, Figures]:
    workspace = context.workspace
    if not AGE.exists():
        raise CommandError(f"the age tool is needed as the baseline and is not at {AGE}")
    keys = make_keys(workspace)
    plain = workspace.random_file(SIZE)
    cipher = age_ciphertext(workspace, keys, plain)
    check_round_trips(workspace, keys, plain, cipher)
    say(f"  timing {len(CASES)} cases × {len(TOOLS)} tools × {context.options.repetitions} rep(s)")
    results = time_cases(context, keys, plain, cipher)
    startup = time_startup(workspace, keys)
    os.sync()  # the in-memory measurements should not share the CPU with writeback
    ceiling = time_ceiling(context.options.repetitions)
    kdf = time_kdf()
    big = peak_rss(workspace, keys)
    return keys, Figures(results, startup, ceiling, big, kdf)


def render(workspace: Workspace, keys: Keys, figures: Figures) -> str:
    missed = misses(figures.results)
    summary = (
        f"tipbox misses the {RATIO_TARGET}× target in: {'; '.join(missed)}."
        if missed
        else f"tipbox meets the {RATIO_TARGET}× target in every case."
    )
    return f"""Tipbox's age v1 implementation against the `age` tool, the raw AEAD and its own
targets; method in `bench/crypto.py`. A ratio age/tipbox ≥ 1 means tipbox is faster. {summary}

### Speed, 1 GiB (age/tipbox ≥ {RATIO_TARGET}× is the target)

{speed_table(figures.results, figures.startup)}

File to file writes into the page cache (neither tool fsyncs); the previous output is deleted
and `os.sync()` runs before every timed run; tipbox and age alternate. To /dev/null, the same
commands without `-o`, stdout redirected to /dev/null. Both decrypt the same file, made by age.
MB/s is 10^6 bytes per second of the median; "paired" is the median of the per-repetition
ratios, each age run against the tipbox run next to it. Median CPU time per run:

{cpu_table(figures.results)}

```
{commands_block(workspace, keys)}
```

### Ceiling: raw ChaCha20-Poly1305, one thread

{ceiling_table(figures.ceiling, figures.results, figures.startup)}

### Peak memory ({RSS_METHOD})

{rss_table(figures.big, figures.results)}

### Argon2id codename derivation (default KdfCost: 3 passes, 64 MiB)

{kdf_table(figures.kdf)}

Measured in a fresh interpreter (`bench/kdf_probe.py`); the peak RSS growth is over the first
derivation. Target: under {KDF_TARGET} s per login."""


def run(context: Context) -> str:
    keys, figures = measure_all(context)
    return render(context.workspace, keys, figures)


SECTION = Section("crypto", "age v1 envelope, memory and Argon2id", run)
