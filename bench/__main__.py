"""``python -m bench [SECTION ...] [--quick] [--repetitions N]``: run benchmarks, update the doc.

Runs the registered sections (all by default, in registry order), prints each one's progress and
results as it goes, and rewrites docs/performance.md after every section, so an interrupted run
keeps what it finished. Test data is deleted at the end in every case (also on Ctrl-C/SIGTERM).
``--quick`` (or ``BENCH_QUICK=1``) does one repetition instead of the default five.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType

from bench import SECTION_MODULES, load_sections, report
from bench.core import REPO, Context, Options, Section, Workspace, say

DEFAULT_REPETITIONS = 5


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "sections", nargs="*", metavar="SECTION", help=f"any of {', '.join(SECTION_MODULES)}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=os.environ.get("BENCH_QUICK", "") not in ("", "0"),
        help="one repetition (also BENCH_QUICK=1)",
    )
    parser.add_argument("--repetitions", type=int, metavar="N", help="repetitions (default 5)")
    parser.add_argument("--no-doc", action="store_true", help="print only, leave the doc alone")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.sections) - set(SECTION_MODULES))
    if unknown:
        parser.error(
            f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTION_MODULES)}"
        )
    if args.repetitions is not None and args.repetitions < 1:
        parser.error("--repetitions must be at least 1")
    return args


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: data gets deleted


def run_section(section: Section, context: Context) -> tuple[str, str]:
    """Run one section; return its heading and its body, headed by when and how it ran."""
    say(f"\n== {section.heading}")
    start, load_before = time.monotonic(), os.getloadavg()[0]
    body = section.run(context)
    took, load_after = time.monotonic() - start, os.getloadavg()[0]
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    options = context.options
    header = (
        f"_Measured {date}, {options.repetitions} repetition(s), in {took:.0f} s; load average "
        f"{load_before:.1f} at the start, {load_after:.1f} at the end ({os.cpu_count()} CPUs). "
        f"Reproduce with `{options.command(section.name)}` (or `make bench` for every section)._"
    )
    say(f"\n{body}\n\n({section.name}: {took:.0f} s)")
    return section.heading, f"{header}\n\n{body}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repetitions:
        options = Options(args.repetitions, ("--repetitions", str(args.repetitions)))
    elif args.quick:
        options = Options(1, ("--quick",))
    else:
        options = Options(DEFAULT_REPETITIONS)
    sections = load_sections(args.sections)
    signal.signal(signal.SIGTERM, _terminate)
    workspace = Workspace.create()
    start = time.monotonic()
    try:
        for section in sections:
            result = run_section(section, Context(options, workspace))
            if not args.no_doc:
                report.update([result], SECTION_MODULES)
                say(f"updated {report.DOC.relative_to(REPO)}")
    finally:
        workspace.cleanup()
    say(f"\nbench: {len(sections)} section(s) in {time.monotonic() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
