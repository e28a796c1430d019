"""Size buckets: the sizes stored ciphertext is padded up to, so a size does not fingerprint a file.

A bucket scheme trades what the size still tells against what the padding costs in disk space and
I/O. Tipbox's scheme has one knob, ``steps``: the number of buckets between two consecutive
powers of two, themselves evenly spaced.

* ``steps=1`` pads to the next power of two: the fewest buckets (one per doubling), and up to
  twice the size on disk and twice the writing (a 1 GiB upload is stored in 2 GiB).
* ``steps=4`` (the default for stored items) keeps two bits after the leading one: a size
  between 4 and 8 MiB becomes 5, 6, 7 or 8 MiB. Padding adds less than 25%, and each bucket
  still holds every size within a quarter of its power of two (a 3.2 MB document, 3.05 MiB,
  shares its bucket with everything from 3 to 3.5 MiB).
* Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication with
  PURBs", PETS 2019) keeps about log2(log2(size)) bits: 32 buckets per doubling for files
  between 64 KiB and 4 GiB, under 3% overhead. Finer than Tipbox wants for leaked documents,
  whose exact size an adversary may know; ``steps=32`` is the nearest setting here.

For comparison, SecureDrop and GlobaLeaks store ciphertext whose size follows the plaintext's
(SecureDrop compresses first). Every bucket is at least ``minimum`` bytes, so short messages all
look alike whatever the scheme.
"""

from __future__ import annotations

STEPS = (1, 2, 4, 8, 16, 32)


def bucket(size: int, minimum: int = 1024, steps: int = 1) -> int:
    """The padded size for ``size`` bytes: the smallest bucket that holds it.

    :raises ValueError: ``steps`` is not one of :data:`STEPS`.
    """
    if steps not in STEPS:
        raise ValueError(f"steps must be one of {', '.join(map(str, STEPS))}")
    if size <= minimum:
        return minimum
    below = 1 << ((size - 1).bit_length() - 1)  # the power of two just under size
    step = max(1, below // steps)
    return -(-size // step) * step
