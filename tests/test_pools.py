"""Per-process thread pools (app.server.pools): they never refuse work, even at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# The main thread ends at once; a request thread still running then (as in a Gunicorn worker
# that is stopping) uses the pool while the interpreter exits.
LATE_WORK = """
import threading, time
from app.crypto.envelope import shared_pool
from app.crypto.stream import Sealer, CHUNK_SIZE
shared_pool().submit(int).result()

def late():
    time.sleep(0.5)
    sealer = Sealer(bytes(32), shared_pool())
    data = memoryview(bytes(16 * CHUNK_SIZE))
    out = memoryview(bytearray(16 * (CHUNK_SIZE + 16)))
    print(len(sealer.seal_batch(data, out, last=True)))

threading.Thread(target=late).start()
"""


def test_a_pool_works_while_the_interpreter_exits() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", LATE_WORK], cwd=REPO, capture_output=True, timeout=60, check=False
    )
    assert proc.stderr.decode() == ""
    assert proc.stdout.decode().strip() == str(16 * (64 * 1024 + 16))
