"""Sizes as people read them, in one unit system for every page: binary (IEC) units.

The size limit (2 GiB by default) and the store's padded sizes (buckets per power of two) are
binary, so KiB, MiB, GiB and TiB state them exactly; "KB" for 1024 bytes, as pages used to say,
was neither SI nor IEC. No Flask here: the source app formats the number in the page's language
(:func:`app.source.language.human_size`), the English-only journalist app uses :func:`plain`.
"""

from __future__ import annotations

UNITS = ((1024**4, "TiB"), (1024**3, "GiB"), (1024**2, "MiB"), (1024, "KiB"))


def in_units(size: int) -> tuple[float, str]:
    """``size`` bytes as (number, unit) in the largest unit it reaches; unit "" for bytes."""
    for factor, unit in UNITS:
        if size >= factor:
            return size / factor, unit
    return size, ""


def plain(size: int) -> str:
    """``size`` bytes in English: "1.5 MiB", "1,000 GiB", "1 byte"."""
    number, unit = in_units(size)
    if not unit:
        return f"{size} byte" if size == 1 else f"{size} bytes"
    return f"{round(number, 1):,g} {unit}"
