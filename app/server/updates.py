"""Staying patched, as ``tipbox status`` reports it: the security updates apt has not installed
yet, whether unattended-upgrades is there to install them, and whether a reboot must finish them.

Everything comes from apt's own view, with no network and no root: ``apt-get --simulate
dist-upgrade`` prints an ``Inst NAME [OLD] (NEW SOURCES [ARCH])`` line per package it would
install. dist-upgrade, not upgrade, because unattended-upgrades also installs the new packages an
update brings (a new kernel's). Each source reads ``Label:Version/Suite``: apt does not print the
Release file's Origin, so an update counts as a security update when one of its sources is
labelled ``Debian-Security`` in a ``…-security`` suite, the archive deploy/harden.sh lets
unattended-upgrades take from (origin Debian, label Debian-Security, codename …-security).

The rest are files the daily jobs leave, all under a root so that tests use a throwaway one:
apt.systemd.daily's stamps, unattended-upgrades' own stamp and log, and ``/run/reboot-required``,
which packages write when only a reboot puts their update to work. Levels: nothing pending is ok;
pending while unattended-upgrades is healthy is a warning (its next daily run installs them);
pending while it is missing, off, or silent for :data:`STALE` seconds is a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

APT_GET = "/usr/bin/apt-get"
APT_CONFIG = "/usr/bin/apt-config"
APT_TIMEOUT = 60.0  # seconds; a simulation takes about 3 s on a small server
STALE = 2 * 86400  # seconds: the daily jobs have missed two days in a row
SHOWN = 5  # package names shown in a line
SECURITY_LABEL = "Debian-Security"
HARDEN_CONF = "etc/apt/apt.conf.d/52tipbox-security-updates"  # deploy/harden.sh, under the root
HOUR = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")  # TIPBOX_REBOOT_AT, as harden.sh checks it
INST = re.compile(r"Inst (\S+)(?: \[([^\]]*)\])? \((\S+)(?: (.*?))? \[[^\]]*\]\)")

OK, WARN, FAIL = "ok", "warn", "fail"
Line = tuple[str, str]  # (OK, WARN or FAIL, what tipbox status prints)


class AptError(Exception):
    """apt could not say what it would install (its message says why)."""


@dataclass(frozen=True)
class Update:
    """A package apt would install or upgrade, and where the new version comes from."""

    name: str
    old: str | None  # None: a new package (a new kernel, pulled in by an update)
    new: str
    sources: tuple[str, ...]  # "Label:Version/Suite" each, as apt prints them

    @property
    def security(self) -> bool:
        """Whether Debian's security archive has the new version."""
        return any(_security_source(source) for source in self.sources)


def _security_source(source: str) -> bool:
    label, _, rest = source.partition(":")
    return label == SECURITY_LABEL and rest.rpartition("/")[2].endswith("-security")


def parse_simulation(text: str) -> list[Update]:
    """The ``Inst`` lines of ``apt-get --simulate`` (LC_ALL=C), in apt's order."""
    updates = []
    for line in text.splitlines():
        match = INST.match(line)
        if match:
            name, old, new, sources = match.groups()
            parts = tuple(part.strip() for part in (sources or "").split(","))
            updates.append(Update(name, old, new, tuple(part for part in parts if part)))
    return updates


def _apt(command: Sequence[str], timeout: float) -> str:
    """Run an apt program in the C locale, never asking anything; its standard output."""
    env = {**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(  # noqa: S603 - a fixed program, the arguments are not a shell's
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError:
        raise  # no apt at all: not a Debian system, said apart by the caller
    except OSError as exc:
        raise AptError(f"cannot run {Path(command[0]).name}: {exc.strerror}") from None
    except subprocess.TimeoutExpired:
        raise AptError(f"{Path(command[0]).name} gave no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("E: ")]
        reason = errors[0] if errors else f"exit status {done.returncode}"
        raise AptError(f"{Path(command[0]).name} failed: {reason}")
    return done.stdout


def simulate(options: Sequence[str] = (), timeout: float = APT_TIMEOUT) -> list[Update]:
    """What a dist-upgrade would install now, from the package lists apt already has.

    :raises FileNotFoundError: apt-get is not installed (not a Debian system).
    """
    command = [APT_GET, *options, "--simulate", "--quiet", "dist-upgrade"]
    return parse_simulation(_apt(command, timeout))


def periodic_enabled(options: Sequence[str] = (), timeout: float = APT_TIMEOUT) -> bool:
    """Whether apt's daily job runs unattended-upgrades (APT::Periodic, as apt.systemd.daily
    reads it: ``Enable`` defaults to on, ``Unattended-Upgrade`` to off)."""
    names = ["E", "APT::Periodic::Enable", "U", "APT::Periodic::Unattended-Upgrade"]
    shell = _apt([APT_CONFIG, *options, "shell", *names], timeout)  # lines such as U='1'
    values = dict(re.findall(r"^(\w+)='([^']*)'$", shell, re.M))
    return values.get("E", "1") != "0" and values.get("U", "0") not in ("", "0")


@dataclass(frozen=True)
class Places:
    """Where the daily jobs leave their traces, under a root (``/`` on a server)."""

    upgrader: Path  # unattended-upgrades' program: installed or not
    enabled_since: Path  # deploy/harden.sh's apt setting: its age is a grace period
    runs: tuple[Path, ...]  # unattended-upgrades' stamps and log: the newest is its last run
    lists: tuple[Path, ...]  # stamps of a successful apt-get update (apt.systemd.daily's)
    reboot: Path  # exists while an installed update waits for a reboot
    reboot_packages: Path  # the packages that asked for it, one a line

    @classmethod
    def under(cls, root: Path) -> Places:
        """Debian's places under ``root``."""
        periodic = root / "var/lib/apt/periodic"
        return cls(
            upgrader=root / "usr/bin/unattended-upgrade",
            enabled_since=root / HARDEN_CONF,
            runs=(
                periodic / "unattended-upgrades-stamp",
                periodic / "upgrade-stamp",
                root / "var/log/unattended-upgrades/unattended-upgrades.log",
            ),
            lists=(periodic / "update-success-stamp", periodic / "update-stamp"),
            reboot=root / "run/reboot-required",
            reboot_packages=root / "run/reboot-required.pkgs",
        )


@dataclass(frozen=True)
class Facts:
    """What the machine says, read once; :func:`assess` judges it against a clock."""

    pending: list[Update] | str  # the pending security updates, or why apt cannot tell
    installed: bool
    enabled: bool
    enabled_at: float | None  # when deploy/harden.sh last wrote its apt setting
    last_run: float | None  # unattended-upgrades' last run
    lists_at: float | None  # apt's package lists' last successful update
    reboot: list[str] | None  # the packages waiting for a reboot; None: no reboot needed
    reboot_at: str  # TIPBOX_REBOOT_AT from tipbox.env, "" when unset


def gather(
    places: Places,
    settings: Mapping[str, str],
    options: Sequence[str] = (),
    timeout: float = APT_TIMEOUT,
) -> Facts | None:
    """The facts, with apt's ``-o`` ``options``; None when this machine has no apt."""
    try:
        pending: list[Update] | str = [u for u in simulate(options, timeout) if u.security]
    except FileNotFoundError:
        return None
    except AptError as exc:
        pending = str(exc)
    try:
        enabled = periodic_enabled(options, timeout)
    except (OSError, AptError):
        enabled = False
    return Facts(
        pending=pending,
        installed=places.upgrader.is_file(),
        enabled=enabled,
        enabled_at=_newest([places.enabled_since]),
        last_run=_newest(places.runs),
        lists_at=_newest(places.lists),
        reboot=_reboot_packages(places),
        reboot_at=settings.get("TIPBOX_REBOOT_AT", "").strip(),
    )


def _newest(paths: Sequence[Path]) -> float | None:
    """The latest modification time among the files that exist."""
    times = []
    for path in paths:
        try:
            times.append(path.stat().st_mtime)
        except OSError:
            continue
    return max(times, default=None)


def _reboot_packages(places: Places) -> list[str] | None:
    if not places.reboot.exists():
        return None
    try:
        text = places.reboot_packages.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""  # some packages ask for a reboot without naming themselves
    return list(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def status(
    places: Places,
    settings: Mapping[str, str],
    now: float | None = None,
    options: Sequence[str] = (),
) -> list[Line]:
    """``tipbox status``'s lines about updates; one warning on a machine without apt."""
    facts = gather(places, settings, options)
    if facts is None:
        return [(WARN, "security updates: cannot tell, this machine has no apt-get (not Debian?)")]
    return assess(facts, time.time() if now is None else now)


def assess(facts: Facts, now: float) -> list[Line]:
    """The pending updates, unattended-upgrades itself, and the reboot if one is needed."""
    lines = [_pending_line(facts, now), _upgrader_line(facts, now)]
    if facts.reboot is not None:
        lines.append(_reboot_line(facts.reboot, facts.reboot_at, now))
    return lines


def _trouble(facts: Facts, now: float) -> str:
    """Why unattended-upgrades will not install the updates soon; "" when it will."""
    if not facts.installed:
        return "unattended-upgrades is not installed"
    if not facts.enabled:
        return "unattended-upgrades is not enabled (APT::Periodic::Unattended-Upgrade)"
    if facts.last_run is None:
        if _within(facts.enabled_at, now):  # just deployed: its first daily run is still to come
            return ""
        return "unattended-upgrades has never run"
    if not _within(facts.last_run, now):
        return f"unattended-upgrades last ran {_ago(facts.last_run, now)}"
    if facts.lists_at is None:
        return "apt's daily job has never updated the package lists"
    if not _within(facts.lists_at, now):
        return f"apt's package lists were last updated {_ago(facts.lists_at, now)}"
    return ""


def _pending_line(facts: Facts, now: float) -> Line:
    if isinstance(facts.pending, str):
        return FAIL, f"security updates: {facts.pending}"
    if not facts.pending:
        return OK, "no security update pending"
    count = len(facts.pending)
    what = f"{count} security update{'s' * (count > 1)} pending ({_names(facts.pending)})"
    trouble = _trouble(facts, now)
    if trouble:
        return FAIL, f"{what}, and {trouble}: 'sudo apt-get update && sudo apt-get upgrade'"
    return WARN, f"{what}: unattended-upgrades installs them at its next daily run"


def _upgrader_line(facts: Facts, now: float) -> Line:
    trouble = _trouble(facts, now)
    if trouble and (not facts.installed or not facts.enabled):
        return WARN, f"{trouble}: 'sudo make deploy' turns it on"
    if trouble:
        where = "systemctl status apt-daily.timer apt-daily-upgrade.timer"
        return WARN, f"{trouble}: see '{where}' and /var/log/unattended-upgrades/"
    if facts.last_run is None:
        return OK, "unattended-upgrades is on and has not run yet (it runs every morning)"
    lists = _ago(facts.lists_at, now) if facts.lists_at is not None else "never"
    return OK, f"unattended-upgrades last ran {_ago(facts.last_run, now)}, lists updated {lists}"


def _reboot_line(packages: list[str], at: str, now: float) -> Line:
    what = "a reboot is needed to finish updates"
    if packages:
        what += f" ({_names_of(packages)})"
    if HOUR.fullmatch(at):
        return (
            WARN,
            f"{what}: the nightly reboot does it at {at} (in {_span(_next(at, now) - now)})",
        )
    if at:
        return WARN, f"{what}, and TIPBOX_REBOOT_AT={at} is not an hour such as 04:00"
    return WARN, f"{what}: 'sudo systemctl reboot', or TIPBOX_REBOOT_AT=04:00 in tipbox.env"


def _next(at: str, now: float) -> float:
    """The next time the clock shows ``at`` (HH:MM, server time, as systemd's OnCalendar)."""
    hour, minute = (int(part) for part in at.split(":"))
    local = datetime.fromtimestamp(now)
    when = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if when <= local:
        when += timedelta(days=1)
    return when.timestamp()


def _names(updates: Sequence[Update]) -> str:
    return _names_of(sorted({update.name for update in updates}))


def _names_of(names: Sequence[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    return f"{shown} and {len(names) - SHOWN} more" if len(names) > SHOWN else shown


def _within(then: float | None, now: float) -> bool:
    return then is not None and now - then <= STALE


def _ago(then: float, now: float) -> str:
    return f"{_span(now - then)} ago"


def _span(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} days"
