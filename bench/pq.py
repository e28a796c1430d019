"""Section "pq": what the post-quantum hybrid newsroom key costs against an X25519 one.

Method (everything in one run, the hybrid figure next to the X25519 one it is compared with):

1. Per item: wrapping a file key to the recipient (``HybridRecipient.wrap``: an ML-KEM-768
   encapsulation, an X25519 exchange, SHA3-256 and the HPKE key schedule; ``X25519Recipient.wrap``:
   an exchange and HKDF) and unwrapping it with the identity, in this process, ``ROUNDS`` times
   each, alternating; plus a whole 1 KiB message encrypted and decrypted (header, MAC, payload).
   Reported: CPU milliseconds per item of the best of ``BATCHES`` batches (the medians beside).
2. Upload: a 1 GiB file POSTed to ``/en/submit`` of two real Gunicorn servers (bench/live.py,
   the deploy config), one whose keys folder holds a hybrid recipient and one an X25519 one,
   alternating (``upload_once`` of bench/upload.py: checked stored item, workers' peak RSS).
3. ``tipbox open`` of a bundle of 1,000 items (500 messages of 1 KiB, 500 files of 1 MiB,
   ``make_bundle`` of bench/journalist.py), one bundle per kind of key, alternating, with mat2
   kept off PATH (decryption alone); wall time and the command's peak RSS (bench/procs.py).

The target is "within run-to-run noise": the spread (max/min) of the X25519 runs is printed next
to the hybrid/X25519 ratio. ``--quick``: 256 MiB uploads and one repetition.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

from app.crypto.hybrid import HybridIdentity
from app.crypto.keyfile import KeyIdentity
from app.crypto.recipients import X25519Identity
from bench.core import GIB, KIB, MIB, Context, Section, Workspace, median, ratio, say, table
from bench.procs import CommandError, Measurement, run_measured
from bench.upload import Upload

ROUNDS = 200
BATCHES = 7  # per-item figures: the fastest of these batches (the least disturbed by the load)
MESSAGE = 1024
KINDS = ("hybrid", "x25519")


def identity(kind: str) -> KeyIdentity:
    return HybridIdentity.generate() if kind == "hybrid" else X25519Identity.generate()


def per_item_ms(run: Callable[[], object], rounds: int = ROUNDS) -> float:
    """CPU milliseconds per call (this process's CPU time: on a shared, loaded machine the wall
    clock measures the neighbours as much as the code)."""
    start = time.process_time()
    for _ in range(rounds):
        run()
    return (time.process_time() - start) / rounds * 1000


def kem_batch(kind: str) -> dict[str, float]:
    """One batch of the four per-item operations for ``kind``, in milliseconds per item."""
    from app.crypto import decrypt, encrypt

    key = identity(kind)
    recipient = key.recipient
    stanza = recipient.wrap(bytes(16))
    message = os.urandom(MESSAGE)
    sealed = io.BytesIO()
    encrypt(io.BytesIO(message), sealed, [recipient])
    return {
        "wrap (encapsulate)": per_item_ms(lambda: recipient.wrap(bytes(16))),
        "unwrap (decapsulate)": per_item_ms(lambda: key.unwrap(stanza)),
        "1 KiB message, encrypt": per_item_ms(
            lambda: encrypt(io.BytesIO(message), io.BytesIO(), [recipient])
        ),
        "1 KiB message, decrypt": per_item_ms(
            lambda: decrypt(io.BytesIO(sealed.getvalue()), io.BytesIO(), [key])
        ),
    }


def kem_timings(repetitions: int) -> dict[str, dict[str, list[float]]]:
    runs: dict[str, dict[str, list[float]]] = {kind: {} for kind in KINDS}
    for rep in range(max(BATCHES, repetitions)):
        for kind in KINDS if rep % 2 == 0 else KINDS[::-1]:
            for op, value in kem_batch(kind).items():
                runs[kind].setdefault(op, []).append(value)
    for op in runs["hybrid"]:
        say(
            f"  {op:<24} hybrid {min(runs['hybrid'][op]):7.3f} ms  "
            f"x25519 {min(runs['x25519'][op]):7.3f} ms (CPU, best of {len(runs['hybrid'][op])})"
        )
    return runs


def kem_table(runs: dict[str, dict[str, list[float]]]) -> str:
    rows = []
    for op, hybrid in runs["hybrid"].items():
        classic = runs["x25519"][op]
        rows.append([
            op, f"{min(classic):.3f}", f"{min(hybrid):.3f}", f"{min(hybrid) - min(classic):+.3f}",
            ratio(min(hybrid) / min(classic)),
            f"{median(classic):.3f} / {median(hybrid):.3f}",
        ])  # fmt: skip
    headers = [
        "per item (CPU ms, best batch)", "X25519", "hybrid", "hybrid − X25519",
        "hybrid / X25519", "medians X25519 / hybrid",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrr")


# --- 2. a 1 GiB upload to a server with each kind of key ---------------------------------------


def keys_folder(root: Path, kind: str) -> Path:
    """``root/keys/newsroom.pub`` with a fresh recipient of ``kind`` (the server's keys)."""
    keys = root / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    (keys / "newsroom.pub").write_text(f"{identity(kind).recipient}\n")
    return keys


def upload_timings(context: Context, size: int) -> dict[str, list[Upload]]:
    import contextlib

    from bench import live
    from bench.upload import log_upload, upload_once

    root = context.workspace.path("pq-upload")
    runs: dict[str, list[Upload]] = {kind: [] for kind in KINDS}
    with contextlib.ExitStack() as stack:
        servers = {}
        for kind in KINDS:
            keys_folder(root / kind, kind)
            servers[kind] = stack.enter_context(live.running(root / kind, live.TIPBOX_APP))
        for rep in range(context.options.repetitions):
            for kind in KINDS if rep % 2 == 0 else KINDS[::-1]:
                run = upload_once(servers[kind], "tipbox", size)
                runs[kind].append(run)
                log_upload(run, f"rep {rep + 1} {kind:<7}")
    return runs


def upload_table(runs: dict[str, list[Upload]], size: int) -> str:
    rows, base = [], median([r.total for r in runs["x25519"]])
    cpu_base = median([r.cpu for r in runs["x25519"]])
    for kind in KINDS:
        done = runs[kind]
        walls = [r.total for r in done]
        peak = max(r.rss_peak_kib for r in done)
        cpu = median([r.cpu for r in done])
        rows.append([
            kind, f"{median(walls):.2f}", f"{size / 1e6 / median(walls):.0f}",
            ratio(max(walls) / min(walls)), f"{cpu:.2f}", f"{peak / KIB:.0f}",
            ratio(median(walls) / base), ratio(cpu / cpu_base),
        ])  # fmt: skip
    headers = [
        f"{size / MIB:.0f} MiB upload", "median s", "MB/s", "spread (max/min)",
        "workers' CPU s", "workers' peak RSS MiB", "time / X25519", "CPU / X25519",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrrr")


# --- 3. tipbox open of 1,000 items with each kind of key ---------------------------------------


def open_timings(context: Context) -> dict[str, list[Measurement]]:
    from bench.journalist import ITEMS, make_bundle

    workspace = context.workspace
    bundles: dict[str, Path] = {}
    identities: dict[str, Path] = {}
    for kind in KINDS:
        key = identity(kind)
        keys = workspace.path(f"pq-keys-{kind}")
        keys.mkdir()
        (keys / "newsroom.pub").write_text(f"{key.recipient}\n")
        identities[kind] = workspace.path(f"pq-identity-{kind}.txt")
        identities[kind].write_text(f"{key}\n")
        bundle = make_bundle(Workspace(workspace.path(f"pq-open-{kind}")), keys)
        bundles[kind] = bundle
    runs: dict[str, list[Measurement]] = {kind: [] for kind in KINDS}
    out = workspace.path("pq-opened")
    for rep in range(context.options.repetitions):
        for kind in KINDS if rep % 2 == 0 else KINDS[::-1]:
            shutil.rmtree(out, ignore_errors=True)
            os.sync()
            argv: list[str | Path] = [
                "/usr/bin/env", "PATH=/nonexistent", sys.executable, "-m", "app.cli", "open",
                bundles[kind], "-i", identities[kind], "--out", out,
            ]  # fmt: skip
            runs[kind].append(run_measured(argv))
            say(f"  rep {rep + 1}: tipbox open, {kind} key {runs[kind][-1].wall:.2f} s")
            written = [f for f in out.rglob("*") if f.is_file()]
            if len(written) != ITEMS + 1:  # and manifest.json
                raise CommandError(f"tipbox open ({kind}) wrote {len(written)} files")
    shutil.rmtree(out, ignore_errors=True)
    return runs


def open_table(runs: dict[str, list[Measurement]]) -> str:
    base = median([r.wall for r in runs["x25519"]])
    cpu_base = median([r.user + r.system for r in runs["x25519"]])
    rows = []
    for kind in KINDS:
        walls = [r.wall for r in runs[kind]]
        cpu = median([r.user + r.system for r in runs[kind]])
        peak = max(r.max_rss_kib or 0 for r in runs[kind])
        rows.append([
            kind, f"{median(walls):.2f}", f"{cpu:.2f}", ratio(max(walls) / min(walls)),
            f"{peak / KIB:.1f}", ratio(median(walls) / base), ratio(cpu / cpu_base),
        ])  # fmt: skip
    headers = [
        "`tipbox open`, 1,000 items", "wall s", "CPU s (user + sys)", "spread (max/min)",
        "peak RSS MiB", "time / X25519", "CPU / X25519",
    ]  # fmt: skip
    return table(headers, rows, "lrrrrrr")


def run(context: Context) -> str:
    quick = context.options.repetitions == 1
    size = 256 * MIB if quick else GIB
    say(f"  per-item wrap/unwrap, {ROUNDS} rounds a batch")
    kem = kem_timings(context.options.repetitions)
    say(f"  {size / MIB:.0f} MiB uploads to a hybrid-key and an X25519-key server")
    uploads = upload_timings(context, size)
    say("  tipbox open of 1,000 items, hybrid and X25519 bundles")
    opened = open_timings(context)
    return f"""The post-quantum hybrid recipient (`mlkem768x25519`, the default newsroom key)
against X25519, in the same run; method in `bench/pq.py`.

### Per item (in process, CPU time, {ROUNDS} calls a batch, alternating)

{kem_table(kem)}

### Upload through the real app (Gunicorn, deploy config)

{upload_table(uploads, size)}

### `tipbox open` of a 1,000-item bundle (500 × 1 KiB, 500 × 1 MiB; mat2 off PATH)

{open_table(opened)}

The spread of the X25519 runs is the run-to-run noise the hybrid ratio is read against; on a
shared, loaded machine the CPU seconds (of the workers, of the command) are the steadier
figure."""


SECTION = Section("pq", "post-quantum hybrid key against X25519", run)
