"""Section "opening": ``tipbox open`` with its reading view, against the previous ``tipbox open``
and against the ``age`` tool (issue 13).

Method (every figure against a baseline measured in the same run):

1. A bundle of 1,000 items, 500 messages of 1 KiB and 500 files of 1 MiB (100 sources), opened
   by: this ``tipbox open`` (conversation names, folder index, ``index.html`` and a page per
   source); the ``tipbox open`` of :data:`BASELINE` (the code before issue 13, exported with
   ``git archive`` and given the same bundle in format 1); and ``age -d -i id item | tar -x``
   in a shell loop, one folder per item, from the items the bundle holds (extracted first,
   untimed). Target: this open at most 1.2 × the previous one's wall time, and at least 1.5 ×
   faster than the age loop. Also timed: opening the same bundle again into the same folder
   (nothing new: the index is read, nothing written).
2. Memory: peak RSS of both ``tipbox open`` on 10,000 messages of 1 KiB (100 sources), and of
   this one on 1,000: flat means the 10,000-item run needs about what the 1,000-item run does.

mat2 is kept off ``PATH`` for every run (``PATH=/nonexistent``): its process per file is the
same for both versions and would hide what is measured here.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from bench.core import (
    MIB,
    REPO,
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
from bench.journalist import AGE, newsroom
from bench.procs import CommandError, Measurement, run_checked, run_measured

BASELINE = "74597fc"  # main before issue 13: messages and files apart, no index, no pages
SOURCES = 100
MIXED = 1_000
SMALL = 10_000
MESSAGE_SIZE = 1024
NO_MAT2 = ["/usr/bin/env", "PATH=/nonexistent"]
AGE_LOOP = (
    'n=0; for f in items/*.age; do n=$((n+1)); mkdir -p "out/$n"; '
    'age -d -i "$1" "$f" | tar -x -C "out/$n"; done'
)


def make_bundle(workspace: Workspace, keys: Path, name: str, items: int, files: bool) -> Path:
    """A bundle of ``items`` items from :data:`SOURCES` sources, half 1 MiB files if ``files``."""
    from app.bundle import write_bundle
    from app.db import migrated
    from app.journalist.inbox import Inbox
    from app.server.newsroom import load_recipients
    from app.server.store import Store

    store = Store(migrated(workspace.path(f"{name}-data")), load_recipients(keys))
    say(f"  encrypting {items:,} items for {name}")
    per_source = items // SOURCES
    for _ in range(SOURCES):
        messages = per_source // 2 if files else per_source
        pending = [store.add_message("m" * MESSAGE_SIZE) for _ in range(messages)]
        for k in range(per_source - messages):
            writer = store.writer("file", f"file-{k}.bin", "application/octet-stream")
            writer.write(os.urandom(MIB))
            pending.append(writer.finish())
        store.commit(secrets.token_hex(32), str(store.recipients[0]), pending)
    entries, _ = Inbox(store.database).bundle_sources([s.id for s in store.list_sources()])
    path = workspace.path(f"{name}.tar")
    with path.open("wb") as out:
        open_item = lambda i: (store.items / i.id).open("rb")  # noqa: E731
        write_bundle(out, entries, open_item, recipients=[str(store.recipients[0])])
    shutil.rmtree(store.root)
    return path


def as_version_1(bundle: Path, path: Path) -> Path:
    """The same bundle in format 1 (no seq, no submission), for the previous ``tipbox open``."""
    from app.bundle import MANIFEST_NAME, read_bundle

    manifest, read_item = read_bundle(bundle)
    document = json.loads(manifest.to_json())
    document["format"] = "tipbox-bundle/1"
    for source in document["sources"]:
        for item in source["items"]:
            del item["seq"], item["submission"]
    data = json.dumps(document, indent=1).encode("ascii") + b"\n"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for _, item in manifest.items():
            info = tarfile.TarInfo(item.path)
            info.size = item.size
            with read_item(item) as handle:
                tar.addfile(info, handle)
    return path


def export_baseline(workspace: Workspace) -> Path:
    """The previous ``app`` package, from git, in a folder of its own."""
    root = workspace.path("baseline")
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", BASELINE, "app"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def tipbox(bundle: Path, identity: Path, out: Path, cwd: Path | None = None) -> list[str]:
    """``python -m app.cli open`` of the checkout in ``cwd`` (this one by default)."""
    argv = [*NO_MAT2, sys.executable, "-m", "app.cli", "open", str(bundle), "-i", str(identity)]
    argv += ["--out", str(out)]
    return ["/usr/bin/env", "-C", str(cwd or REPO), *argv]


Runs = dict[str, list[Measurement]]
NEW = "this `tipbox open` (names, index, reading view)"
OLD = f"`tipbox open` of {BASELINE} (before issue 13)"
AGAIN = "this `tipbox open`, same bundle again (nothing new)"
AGE_RUN = "`age -d` into `tar -x`, item by item"


def _timed(runs: Runs, name: str, argv: list[str], clear: list[Path]) -> None:
    for path in clear:
        shutil.rmtree(path, ignore_errors=True)
    os.sync()
    runs.setdefault(name, []).append(run_measured(argv))
    say(f"    {name}: {runs[name][-1].wall:.2f} s, {mib(runs[name][-1].max_rss_kib)} MiB")


def _count(out: Path) -> int:
    return sum(1 for p in out.rglob("*") if p.is_file() and p.name[:4].isdigit())


def mixed_runs(context: Context, keys: Path, identity: Path, old: Path) -> tuple[Runs, int]:
    workspace = context.workspace
    bundle = make_bundle(workspace, keys, "mixed", MIXED, files=True)
    bundle_1 = as_version_1(bundle, workspace.path("mixed-v1.tar"))
    items = workspace.path("age-run")
    items.mkdir()
    run_checked(["tar", "-xf", str(bundle), "-C", str(items)])
    new_out, old_out = workspace.path("opened-new"), workspace.path("opened-old")
    runs: Runs = {}
    for rep in range(context.options.repetitions):
        say(f"  rep {rep + 1}")
        _timed(runs, OLD, tipbox(bundle_1, identity, old_out, old), [old_out])
        _timed(runs, NEW, tipbox(bundle, identity, new_out), [new_out])
        _timed(runs, AGAIN, tipbox(bundle, identity, new_out), [])
        loop = ["bash", "-c", f'cd "{items}" && {AGE_LOOP}', "bash", str(identity)]
        _timed(runs, AGE_RUN, loop, [items / "out"])
        if _count(new_out) != MIXED or not (new_out / "index.html").is_file():
            raise CommandError(f"this tipbox open wrote {_count(new_out)} items, not {MIXED}")
    return runs, bundle.stat().st_size


def memory_runs(context: Context, keys: Path, identity: Path, old: Path) -> Runs:
    workspace = context.workspace
    small = make_bundle(workspace, keys, "small", SMALL, files=False)
    small_1 = as_version_1(small, workspace.path("small-v1.tar"))
    fewer = make_bundle(workspace, keys, "fewer", MIXED, files=False)
    out = workspace.path("opened-small")
    runs: Runs = {}
    for _ in range(max(1, context.options.repetitions // 2)):
        _timed(runs, f"this, {MIXED:,} messages", tipbox(fewer, identity, out), [out])
        _timed(runs, f"this, {SMALL:,} messages", tipbox(small, identity, out), [out])
        _timed(runs, f"{BASELINE}, {SMALL:,} messages", tipbox(small_1, identity, out, old), [out])
    return runs


def _row(name: str, done: list[Measurement], base: float) -> list[str]:
    peak = max(r.max_rss_kib or 0 for r in done) or None
    wall = median([r.wall for r in done])
    return [
        name, seconds(wall), seconds(median([r.user for r in done])),
        seconds(median([r.system for r in done])), mib(peak), ratio(wall / base),
    ]  # fmt: skip


def run(context: Context) -> str:
    if not AGE.exists():
        raise CommandError(f"the age tool is needed as the baseline and is not at {AGE}")
    keys, identity = newsroom(context.workspace)
    old = export_baseline(context.workspace)
    mixed, size = mixed_runs(context, keys, identity, old)
    memory = memory_runs(context, keys, identity, old)
    old_wall = median([r.wall for r in mixed[OLD]])
    new_wall = median([r.wall for r in mixed[NEW]])
    age_wall = median([r.wall for r in mixed[AGE_RUN]])
    old_cpu, new_cpu = (median([r.user + r.system for r in mixed[k]]) for k in (OLD, NEW))
    headers = ["", "wall s", "user s", "sys s", "peak RSS MiB", f"/ {BASELINE} (wall)"]
    first = table(headers, [_row(n, d, old_wall) for n, d in mixed.items()], "lrrrrr")
    base = median([r.wall for r in next(iter(memory.values()))])
    second = table(headers[:5], [_row(n, d, base)[:5] for n, d in memory.items()], "lrrrr")
    return f"""`tipbox open` on the air-gapped machine: the conversation names, the folder index and
the reading view against the previous `tipbox open` and the `age` tool; method in
`bench/opening.py`.

### 1,000 items (500 × 1 KiB messages, 500 × 1 MiB files, 100 sources; {size / MIB:.0f} MiB)

{first}

This open / previous open: **{ratio(new_wall / old_wall)}** (target at most 1.20×); age loop /
this open: **{ratio(age_wall / new_wall)}** (target at least 1.50×). CPU time (user + sys), which
a loaded machine disturbs less than wall time: this open / previous open
**{ratio(new_cpu / old_cpu)}**.

### Memory: 1 KiB messages (100 sources)

{second}

Peak memory grows with the number of items for both versions (the manifest, and now the folder
index, are held whole). On small items the reading view costs CPU: every message is read back
once to be inlined in its page."""


SECTION = Section("opening", "tipbox open and its reading view", run)
