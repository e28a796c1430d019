"""Child process of the crypto section: time Argon2id and measure the memory it touches.

``python -m bench.kdf_probe {tipbox|argon2-cffi} RUNS`` prints one JSON object. It runs in a
fresh interpreter, and reads its peak RSS as ``VmHWM`` of /proc/self/status, the high-water mark
of its own memory image (``ru_maxrss`` would start at the benchmark process's peak: see
:mod:`bench.procs`). The growth of that peak across the first derivation is the memory
Argon2id touched. Both implementations get the same parameters: Argon2id v1.3, 3 passes,
64 MiB, 1 lane, 32-byte output, 16-byte salt.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

CODENAME = "gentle harbour violet seventeen ladder orbit quietly"  # normalised, 7 words
PEPPER = bytes(range(32))


def _tipbox() -> tuple[Callable[[], object], dict[str, int]]:
    from app.crypto.derive import KdfCost, derive_source_keys

    cost = KdfCost()
    params = {"opslimit": cost.opslimit, "memlimit": cost.memlimit, "lanes": 1}
    return lambda: derive_source_keys(CODENAME, PEPPER, cost), params


def _argon2_cffi() -> tuple[Callable[[], object], dict[str, int]]:
    from argon2.low_level import Type, hash_secret_raw  # type: ignore[import-not-found]

    from app.crypto.derive import KdfCost

    cost = KdfCost()
    salt = os.urandom(16)

    def run() -> object:
        return hash_secret_raw(
            CODENAME.encode(),
            salt,
            time_cost=cost.opslimit,
            memory_cost=cost.memlimit // 1024,
            parallelism=1,
            hash_len=32,
            type=Type.ID,
        )

    params = {"opslimit": cost.opslimit, "memlimit": cost.memlimit, "lanes": 1}
    return run, params


IMPLEMENTATIONS = {"tipbox": _tipbox, "argon2-cffi": _argon2_cffi}


def _status_kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (``VmHWM``, ``VmRSS``), KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def probe(name: str, runs: int) -> dict[str, object]:
    derive, params = IMPLEMENTATIONS[name]()
    peak_before = _status_kib("VmHWM")
    times: list[float] = []
    peak_growth = 0
    for _ in range(max(1, runs)):
        start = time.perf_counter()
        derive()
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            peak_growth = _status_kib("VmHWM") - peak_before
    return {
        "times": times,
        "peak_growth_kib": peak_growth,
        "rss_after_kib": _status_kib("VmRSS"),
        "peak_before_kib": peak_before,
        **params,
    }


def main(argv: list[str]) -> int:
    name, runs = argv[0], int(argv[1])
    print(json.dumps(probe(name, runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
