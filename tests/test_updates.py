"""``tipbox status``'s lines about staying patched, on apt's real output: each test builds a real
apt repository in its own temp folder (a higher version of the installed ``hostname``, packed by
dpkg-deb, behind a hand-written Release file), and points a real, offline ``apt-get update`` and
``apt-get --simulate`` at it; the installed packages are this machine's own dpkg database."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

import pytest

from app.server import updates
from app.server.updates import FAIL, OK, WARN, Facts, Places, Update

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 60
HOUR = 3600.0
DAY = 24 * HOUR
SECURITY = {
    "Origin": "Debian",
    "Label": "Debian-Security",
    "Suite": "stable-security",
    "Codename": "bookworm-security",
    "Version": "12",
}
POINT_RELEASE = {**SECURITY, "Label": "Debian", "Suite": "stable-updates"}
POINT_RELEASE["Codename"] = "bookworm-updates"
NOW = datetime(2026, 12, 3, 22, 30).timestamp()  # server time, as TIPBOX_REBOOT_AT is


def _output(*command: str) -> str:
    env = {**os.environ, "LC_ALL": "C"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)
    assert run.returncode == 0, run.stderr
    return run.stdout


INSTALLED = _output("dpkg-query", "--show", "--showformat=${Version}", "hostname")
ARCH = _output("dpkg", "--print-architecture").strip()
NEWER = f"{INSTALLED}+tipbox1"


def _package(tmp: Path, pool: Path) -> str:
    """hostname's next version as a .deb (an empty one: it is only ever simulated); its
    Packages stanza."""
    control = tmp / "pkg/DEBIAN/control"
    control.parent.mkdir(parents=True)
    fields = f"Package: hostname\nVersion: {NEWER}\nArchitecture: {ARCH}\n"
    control.write_text(f"{fields}Maintainer: Tipbox tests <tests@localhost>\nDescription: test\n")
    deb = pool / "hostname.deb"
    _output("dpkg-deb", "--root-owner-group", "--build", str(control.parent.parent), str(deb))
    data = deb.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    return f"{fields}Filename: pool/hostname.deb\nSize: {len(data)}\nSHA256: {digest}\n"


def _repository(tmp: Path, release: dict[str, str]) -> Path:
    """A one-package apt repository whose Release file says ``release``; its folder."""
    repo = tmp / "repo"
    (repo / "pool").mkdir(parents=True)
    index = f"main/binary-{ARCH}/Packages"
    dist = repo / "dists" / release["Codename"]
    (dist / index).parent.mkdir(parents=True)
    (dist / index).write_text(_package(tmp, repo / "pool"))
    data = (dist / index).read_bytes()
    head = "".join(f"{key}: {value}\n" for key, value in release.items())
    head += f"Date: {formatdate(usegmt=True)}\nArchitectures: {ARCH}\nComponents: main\n"
    sums = f"SHA256:\n {hashlib.sha256(data).hexdigest()} {len(data)} {index}\n"
    (dist / "Release").write_text(head + sums)
    return repo


def _apt(tmp: Path, release: dict[str, str] | None) -> dict[str, str]:
    """apt's settings for a private source list, lists and cache in ``tmp`` (one repository,
    or none), its lists updated: no network, nothing of the machine's apt state changed."""
    tmp.mkdir(exist_ok=True)
    sources = tmp / "sources.list"
    sources.write_text("")
    if release is not None:
        repo = _repository(tmp, release)
        sources.write_text(f"deb [trusted=yes] file:{repo} {release['Codename']} main\n")
    for folder in ("sources.list.d", "lists/partial", "cache"):
        (tmp / folder).mkdir(parents=True)
    settings = {
        "Dir::Etc::SourceList": str(sources),
        "Dir::Etc::SourceParts": str(tmp / "sources.list.d"),
        "Dir::State::Lists": str(tmp / "lists"),
        "Dir::Cache": str(tmp / "cache"),
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "APT::Sandbox::User": "root",  # _apt may not enter a 0700 temp folder
        "APT::Periodic::Unattended-Upgrade": "1",
    }
    _output("apt-get", *_options(settings), "--quiet", "update")
    return settings


def _options(settings: dict[str, str]) -> list[str]:
    return [f"-o{key}={value}" for key, value in settings.items()]


# --- apt's real output ------------------------------------------------------------------------


def test_a_security_update_as_apt_prints_it(tmp_path: Path) -> None:
    options = _options(_apt(tmp_path, SECURITY))
    sources = ("Debian-Security:12/stable-security",)
    assert updates.simulate(options) == [Update("hostname", INSTALLED, NEWER, sources)]
    assert updates.simulate(options)[0].security
    assert updates.periodic_enabled(options)
    assert not updates.periodic_enabled([*options, "-oAPT::Periodic::Unattended-Upgrade=0"])
    assert not updates.periodic_enabled([*options, "-oAPT::Periodic::Enable=0"])


@pytest.mark.parametrize(
    ("release", "expect"),
    [
        (POINT_RELEASE, "Debian:12/stable-updates"),  # a point release: not a security update
        ({**SECURITY, "Label": "Debian"}, "Debian:12/stable-security"),
        ({**SECURITY, "Suite": "stable"}, "Debian-Security:12/stable"),
    ],
)
def test_other_archives_are_not_security_updates(
    tmp_path: Path, release: dict[str, str], expect: str
) -> None:
    (update,) = updates.simulate(_options(_apt(tmp_path, release)))
    assert (update.name, update.sources, update.security) == ("hostname", (expect,), False)


def test_parse_simulation() -> None:
    """Lines as apt prints them (from a Debian 12 server): several sources, a new package, the
    lines that are not installs."""
    text = (
        "NOTE: This is only a simulation!\n"
        "Inst libgcrypt20 [1.10.1-3] (1.10.1-3+deb12u1 Debian:12.15/oldstable,"
        " Debian-Security:12/oldstable-security [amd64]) []\n"
        "Inst linux-image-6.1.0-41-amd64 (6.1.158-1 Debian-Security:12/oldstable-security"
        " [amd64])\n"
        "Inst bash [5.2.15-2+b8] (5.2.15-2+b13 Debian:12.15/oldstable [amd64])\n"
        "Conf bash (5.2.15-2+b13 Debian:12.15/oldstable [amd64])\n"
        "Remv oldpackage [1.0]\n"
    )
    gcrypt, linux, bash = updates.parse_simulation(text)
    sources = ("Debian:12.15/oldstable", "Debian-Security:12/oldstable-security")
    assert gcrypt == Update("libgcrypt20", "1.10.1-3", "1.10.1-3+deb12u1", sources)
    assert (linux.old, linux.new, linux.security) == (None, "6.1.158-1", True)
    assert (gcrypt.security, bash.security) == (True, False)


def test_apt_errors_are_one_line(tmp_path: Path) -> None:
    settings = _apt(tmp_path, None)
    Path(settings["Dir::Etc::SourceList"]).write_text("deb nonsense\n")
    with pytest.raises(updates.AptError, match=r"^apt-get failed: E: Malformed entry 1 in list"):
        updates.simulate(_options(settings))
    with pytest.raises(updates.AptError, match=r"^apt-get gave no answer within 0 s$"):
        updates.simulate(_options(settings), timeout=0.001)
    places = Places.under(tmp_path / "root")
    (level, text), _ = updates.status(places, {}, NOW, _options(settings))
    assert (level, text.split(" in list")[0]) == (
        FAIL,
        "security updates: apt-get failed: E: Malformed entry 1",
    )


# --- The levels, against a settable clock ------------------------------------------------------


@pytest.fixture(scope="module")
def security(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """apt's options for a repository with one security update (hostname)."""
    return _options(_apt(tmp_path_factory.mktemp("apt"), SECURITY))


@pytest.fixture(scope="module")
def nothing(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """apt's options for no repository at all: nothing to install."""
    return _options(_apt(tmp_path_factory.mktemp("apt"), None))


TRACES = {
    "run": "var/lib/apt/periodic/unattended-upgrades-stamp",
    "log": "var/log/unattended-upgrades/unattended-upgrades.log",
    "lists": "var/lib/apt/periodic/update-stamp",
    "deployed": updates.HARDEN_CONF,
    "upgrader": "usr/bin/unattended-upgrade",
}


def _places(root: Path, **ages: float) -> Places:
    """A throwaway root where each trace in ``ages`` was written that many seconds before NOW."""
    for name, age in ages.items():
        path = root / TRACES[name]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        os.utime(path, (NOW - age, NOW - age))
    return Places.under(root)


PENDING = "1 security update pending (hostname)"
FIX = "'sudo apt-get update && sudo apt-get upgrade'"
TIMERS = "see 'systemctl status apt-daily.timer apt-daily-upgrade.timer'"
TIMERS += " and /var/log/unattended-upgrades/"


@pytest.mark.parametrize(
    ("ages", "expect"),
    [
        (
            {"run": 3 * HOUR, "lists": 3 * HOUR},
            [
                (WARN, f"{PENDING}: unattended-upgrades installs them at its next daily run"),
                (OK, "unattended-upgrades last ran 3 h ago, lists updated 3 h ago"),
            ],
        ),
        (
            {"log": 50 * 60, "lists": 47 * HOUR},  # its log is enough
            [
                (WARN, f"{PENDING}: unattended-upgrades installs them at its next daily run"),
                (OK, "unattended-upgrades last ran 50 min ago, lists updated 47 h ago"),
            ],
        ),
        (
            {"run": 3 * DAY, "lists": HOUR},
            [
                (FAIL, f"{PENDING}, and unattended-upgrades last ran 3 days ago: {FIX}"),
                (WARN, f"unattended-upgrades last ran 3 days ago: {TIMERS}"),
            ],
        ),
        (
            {"run": HOUR, "lists": 3 * DAY},
            [
                (FAIL, f"{PENDING}, and apt's package lists were last updated 3 days ago: {FIX}"),
                (WARN, f"apt's package lists were last updated 3 days ago: {TIMERS}"),
            ],
        ),
        (
            {"run": HOUR},
            [
                (
                    FAIL,
                    f"{PENDING}, and apt's daily job has never updated the package lists: {FIX}",
                ),
                (WARN, f"apt's daily job has never updated the package lists: {TIMERS}"),
            ],
        ),
        (
            {"deployed": 5 * DAY},
            [
                (FAIL, f"{PENDING}, and unattended-upgrades has never run: {FIX}"),
                (WARN, f"unattended-upgrades has never run: {TIMERS}"),
            ],
        ),
        (
            {"deployed": HOUR},  # make deploy just turned it on: its first run is still to come
            [
                (WARN, f"{PENDING}: unattended-upgrades installs them at its next daily run"),
                (OK, "unattended-upgrades is on and has not run yet (it runs every morning)"),
            ],
        ),
    ],
)
def test_levels(
    tmp_path: Path, security: list[str], ages: dict[str, float], expect: list[updates.Line]
) -> None:
    places = _places(tmp_path, upgrader=DAY, **ages)
    lines = updates.status(places, {}, NOW, security)
    assert lines == expect


def test_not_installed_or_not_enabled(tmp_path: Path, security: list[str]) -> None:
    recent = {"run": HOUR, "lists": HOUR}
    assert updates.status(_places(tmp_path / "a", **recent), {}, NOW, security) == [
        (FAIL, f"{PENDING}, and unattended-upgrades is not installed: {FIX}"),
        (WARN, "unattended-upgrades is not installed: 'sudo make deploy' turns it on"),
    ]
    off = [*security, "-oAPT::Periodic::Unattended-Upgrade=0"]
    places = _places(tmp_path / "b", upgrader=DAY, **recent)
    not_enabled = "unattended-upgrades is not enabled (APT::Periodic::Unattended-Upgrade)"
    assert updates.status(places, {}, NOW, off) == [
        (FAIL, f"{PENDING}, and {not_enabled}: {FIX}"),
        (WARN, f"{not_enabled}: 'sudo make deploy' turns it on"),
    ]


def test_nothing_pending(tmp_path: Path, nothing: list[str]) -> None:
    places = _places(tmp_path, upgrader=DAY, run=3 * DAY, lists=3 * DAY)
    assert updates.status(places, {}, NOW, nothing) == [
        (OK, "no security update pending"),
        (
            WARN,
            f"unattended-upgrades last ran 3 days ago: {TIMERS}",
        ),
    ]


def test_two_days_is_the_limit(tmp_path: Path, security: list[str]) -> None:
    """The clock moves on with the same files: healthy for two days after the last run."""
    facts = updates.gather(_places(tmp_path, upgrader=DAY, run=0, lists=0), {}, security)
    assert facts is not None
    assert updates.assess(facts, NOW + 2 * DAY)[0][0] == WARN
    assert updates.assess(facts, NOW + 2 * DAY + 60)[0] == (
        FAIL,
        f"{PENDING}, and unattended-upgrades last ran 2 days ago: {FIX}",
    )


def _reboot(tmp_path: Path, nothing: list[str], packages: str | None) -> Facts:
    places = _places(tmp_path, upgrader=DAY, run=HOUR, lists=HOUR)
    places.reboot.parent.mkdir(parents=True)
    places.reboot.write_text("*** System restart required ***\n")
    if packages is not None:
        places.reboot_packages.write_text(packages)
    facts = updates.gather(places, {"TIPBOX_REBOOT_AT": "04:00"}, nothing)
    assert facts is not None
    return facts


REBOOT = "a reboot is needed to finish updates"


NAMES = "linux-image-6.1.0-41-amd64, libc6"  # as the packages asked, once each


@pytest.mark.parametrize(
    ("at", "expect"),
    [
        ("04:00", f"{REBOOT} ({NAMES}): the nightly reboot does it at 04:00 (in 5 h)"),
        ("23:00", f"{REBOOT} ({NAMES}): the nightly reboot does it at 23:00 (in 30 min)"),
        ("22:30", f"{REBOOT} ({NAMES}): the nightly reboot does it at 22:30 (in 24 h)"),
        (
            "",
            f"{REBOOT} ({NAMES}): 'sudo systemctl reboot', or TIPBOX_REBOOT_AT=04:00 in tipbox.env",
        ),
        ("4am", f"{REBOOT} ({NAMES}), and TIPBOX_REBOOT_AT=4am is not an hour such as 04:00"),
    ],
)
def test_a_reboot_is_needed(tmp_path: Path, nothing: list[str], at: str, expect: str) -> None:
    facts = _reboot(tmp_path, nothing, "linux-image-6.1.0-41-amd64\nlibc6\nlibc6\n")
    assert facts.reboot_at == "04:00"  # from the settings gather was given
    assert updates.assess(dataclasses.replace(facts, reboot_at=at), NOW) == [
        (OK, "no security update pending"),
        (OK, "unattended-upgrades last ran 1 h ago, lists updated 1 h ago"),
        (WARN, expect),
    ]


def test_a_reboot_without_package_names(tmp_path: Path, nothing: list[str]) -> None:
    facts = _reboot(tmp_path, nothing, None)
    assert updates.assess(facts, NOW)[2] == (
        WARN,
        f"{REBOOT}: the nightly reboot does it at 04:00 (in 5 h)",
    )


def test_a_machine_without_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(updates, "APT_GET", str(tmp_path / "no-apt-get"))
    assert updates.status(Places.under(tmp_path), {}, NOW) == [
        (WARN, "security updates: cannot tell, this machine has no apt-get (not Debian?)")
    ]


def test_an_apt_that_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    apt_get = tmp_path / "apt-get"
    apt_get.write_text("")  # not executable
    monkeypatch.setattr(updates, "APT_GET", str(apt_get))
    line, _ = updates.status(Places.under(tmp_path), {}, NOW)
    assert line == (FAIL, "security updates: cannot run apt-get: Permission denied")


# --- tipbox status -----------------------------------------------------------------------------


def test_tipbox_status_prints_the_lines(tmp_path: Path) -> None:
    """The command, with apt pointed at the test repository through APT_CONFIG (as an admin
    could), the traces in a throwaway root, and the nightly reboot in its tipbox.env."""
    settings = _apt(tmp_path / "apt", SECURITY)
    conf = tmp_path / "apt.conf"
    conf.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    root = tmp_path / "root"
    for name in ("upgrader", "run", "lists"):
        (root / TRACES[name]).parent.mkdir(parents=True, exist_ok=True)
        (root / TRACES[name]).write_text("")
    (root / "run").mkdir()
    (root / "run/reboot-required").write_text("")
    (root / "run/reboot-required.pkgs").write_text("libssl3\n")
    (root / "etc/tipbox").mkdir(parents=True)
    (root / "etc/tipbox/tipbox.env").write_text("TIPBOX_REBOOT_AT='03:30'\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TIPBOX_")}
    env = {**clean, "TIPBOX_ROOT": str(root), "APT_CONFIG": str(conf)}
    env["TIPBOX_TOR_CONTROL"] = str(tmp_path / "no-tor")
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", "status"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert run.returncode == 1  # no tor here
    lines = run.stdout.splitlines()
    assert lines[-3:-1] == [
        f"WARN  {PENDING}: unattended-upgrades installs them at its next daily run",
        "ok    unattended-upgrades last ran 0 min ago, lists updated 0 min ago",
    ]
    assert lines[-1].startswith(
        f"WARN  {REBOOT} (libssl3): the nightly reboot does it at 03:30 (in "
    )
    assert "Traceback" not in run.stderr
