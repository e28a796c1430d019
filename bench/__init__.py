"""Tipbox benchmarks: ``make bench`` (``.venv/bin/python -m bench [SECTION ...] [--quick]``).

Each section is a module of this package that exposes ``SECTION``, a :class:`bench.core.Section`:
a name (the command-line word and the key of its ``## `` heading in docs/performance.md), a
title, and a function that measures and returns the section's Markdown. Every figure is a ratio
against a baseline measured in the same run (the ``age`` tool, a raw primitive...), never a
pass/fail timing test: absolute times on a shared machine mean little on their own.

To add a section (upload throughput, page weight, ...): write ``bench/<name>.py`` with a
``SECTION`` and add ``<name>`` to :data:`SECTION_MODULES`, in the order of the report.
"""

from __future__ import annotations

import importlib

from bench.core import Section

SECTION_MODULES: tuple[str, ...] = (
    "crypto",
    "journalist",
    "opening",
    "upload",
    "attack",
    "pq",
    "year",
)


def load_sections(names: list[str] | None = None) -> list[Section]:
    """The registered sections, all of them or the ``names`` given, in registry order."""
    wanted = SECTION_MODULES if not names else tuple(n for n in SECTION_MODULES if n in names)
    sections = []
    for name in wanted:
        section = importlib.import_module(f"bench.{name}").SECTION
        if not isinstance(section, Section) or section.name != name:
            raise TypeError(f"bench.{name}.SECTION must be a Section named {name!r}")
        sections.append(section)
    return sections
