"""deploy/harden.sh: the swap check, the inbound firewall, daily security updates and the
nightly reboot, run by ``make deploy`` against a throwaway root (see tests/test_deploy.py).

The firewall rules are checked by the real ``nft`` and loaded, twice, into a network namespace
of their own, never into this machine's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.live import make_newsroom_keys
from tests.test_deploy import ANALYZE, DEPLOY, _bare_root, _run, _script_env

NFT = shutil.which("nft")


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-n", "true"], check=False).returncode == 0
    except OSError:
        return False


needs_nft = pytest.mark.skipif(
    NFT is None or not _can_unshare(), reason="nft (Debian's nftables) and unshare -n are needed"
)


def _harden(root: Path, call: str) -> subprocess.CompletedProcess[str]:
    """Run ``call`` in bash after sourcing lib.sh and harden.sh with ROOT=root."""
    script = f'source "{DEPLOY}/lib.sh"; source "{DEPLOY}/harden.sh"; {call}'
    return subprocess.run(
        ["bash", "-c", script],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# --- swap ---------------------------------------------------------------------------------


def _device(root: Path, name: str, uuid: str = "", slaves: tuple[str, ...] = ()) -> None:
    block = root / "sys/block" / name
    (block / "slaves").mkdir(parents=True, exist_ok=True)
    if uuid:
        (block / "dm").mkdir(exist_ok=True)
        (block / "dm/uuid").write_text(uuid + "\n")
    for slave in slaves:
        (block / "slaves" / slave).mkdir(exist_ok=True)
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / name).touch()


def _swaps(root: Path, *lines: str) -> None:
    (root / "proc").mkdir(exist_ok=True)
    header = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    (root / "proc/swaps").write_text(header + "".join(f"{line}\n" for line in lines))


def _mapper(root: Path, name: str, target: str) -> None:
    (root / "dev/mapper").mkdir(parents=True, exist_ok=True)
    (root / "dev/mapper" / name).symlink_to(f"../{target}")


@pytest.mark.parametrize(
    ("swaps", "refused"),
    [
        ([], False),  # no swap at all
        (["/dev/sda2 partition 1048572 0 -2"], True),
        (["/dev/mapper/cryptswap partition 1048572 0 -2"], False),  # random-key dm-crypt
        (["/dev/mapper/vg-swap partition 1048572 0 -2"], False),  # LVM on LUKS
        (["/dev/mapper/plain-swap partition 1048572 0 -2"], True),  # LVM, no LUKS
        (["/dev/zram0 partition 1048572 0 100"], False),  # in memory
        (["/dev/zram0 partition 1 0 100", "/dev/sda2 partition 1 0 -2"], True),
    ],
)
def test_swap_must_be_off_or_encrypted(tmp_path: Path, swaps: list[str], refused: bool) -> None:
    root = tmp_path / "root"
    _device(root, "sda2")
    _device(root, "sda3")
    _device(root, "zram0")
    _device(root, "dm-0", "CRYPT-PLAIN-cryptswap")
    _device(root, "dm-1", "CRYPT-LUKS2-0123-sda3_crypt", ("sda3",))
    _device(root, "dm-2", "LVM-abc", ("dm-1",))
    _device(root, "dm-3", "LVM-def", ("sda3",))
    _mapper(root, "cryptswap", "dm-0")
    _mapper(root, "vg-swap", "dm-2")
    _mapper(root, "plain-swap", "dm-3")
    _swaps(root, *swaps)
    result = _harden(root, "check_swap; echo passed")
    assert (result.returncode == 1) == refused, result.stderr
    assert ("passed" in result.stdout) != refused
    if refused:
        assert result.stderr.startswith("tipbox: error: swap is on and not encrypted: ")
        assert "tipbox: hint: turn it off (swapoff -a" in result.stderr


def test_deploy_with_plain_swap_changes_nothing(tmp_path: Path) -> None:
    root = _bare_root(tmp_path)
    _device(root, "sda2")
    _swaps(root, "/dev/sda2 partition 1048572 0 -2")
    keys = tmp_path / "keys"
    make_newsroom_keys(tmp_path / "identity.txt", keys)
    result = _run("install.sh", _script_env(tmp_path, root, keys))
    assert result.returncode == 1
    assert "swap is on and not encrypted: /dev/sda2" in result.stderr
    assert not (tmp_path / "stub.log").exists()  # not even apt-get ran
    assert not (root / "opt").exists()


# --- firewall -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ports", "line"),
    [
        ("22", "tcp dport { 22 } ct state new accept"),
        ("22, 2222", "tcp dport { 22,2222 } ct state new accept"),
        ("", None),
    ],
)
def test_firewall_rules_drop_every_inbound_connection_but_the_ports(
    tmp_path: Path, ports: str, line: str | None
) -> None:
    result = _harden(tmp_path, f"firewall_rules '{ports}'")
    assert result.returncode == 0, result.stderr
    rules = result.stdout
    assert "type filter hook input priority filter; policy drop;" in rules
    assert 'iif "lo" accept' in rules
    assert "hook output" not in rules  # tor, apt and the digest relay go out
    assert [r.strip() for r in rules.splitlines() if "dport {" in r] == ([line] if line else [])


@pytest.mark.parametrize("bad", ["0", "65536", "ssh", "22;flush ruleset", "022"])
def test_firewall_refuses_a_bad_port(tmp_path: Path, bad: str) -> None:
    result = _harden(tmp_path, f"firewall_rules '{bad}'")
    assert result.returncode == 1
    assert result.stderr.startswith("tipbox: error: TIPBOX_INBOUND_TCP: ")


@needs_nft
@pytest.mark.parametrize("ports", ["22", ""])
def test_firewall_rules_load_in_nft_and_replace_only_their_table(
    tmp_path: Path, ports: str
) -> None:
    """In a fresh network namespace: another table survives, loading twice leaves one table."""
    rules = tmp_path / "tipbox.nft"
    rules.write_text(_harden(tmp_path, f"firewall_rules '{ports}'").stdout)
    other = tmp_path / "other.nft"
    other.write_text(
        "table inet other {\n chain input {\n type filter hook input priority 0;\n }\n}\n"
    )
    script = f"nft -f {other} && nft -f {rules} && nft -f {rules} && nft list ruleset"
    result = subprocess.run(
        ["unshare", "-n", "bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("table inet tipbox {") == 1
    assert "table inet other {" in result.stdout
    assert "policy drop;" in result.stdout
    broken = tmp_path / "broken.nft"
    broken.write_text(rules.read_text().replace("policy drop", "policy perhaps"))
    refused = subprocess.run(
        ["unshare", "-n", "nft", "-c", "-f", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0  # the check can fail


# --- make deploy: updates, reboot, firewall; make uninstall takes them back ---------------


def _deploy_until_tor(tmp_path: Path, env_file: str | None) -> tuple[Path, str, str]:
    """install.sh in a throwaway root with no tor: it stops at the onion services, after every
    step of harden.sh. The root, the stubs' log and what the deploy printed."""
    root = _bare_root(tmp_path)
    if env_file is not None:
        (root / "etc/tipbox").mkdir(parents=True)
        (root / "etc/tipbox/tipbox.env").write_text(env_file)
    keys = tmp_path / "keys"
    make_newsroom_keys(tmp_path / "identity.txt", keys)
    env = _script_env(tmp_path, root, keys)
    env["TIPBOX_TOR_CONTROL"] = str(tmp_path / "no-tor.sock")
    result = _run("install.sh", env)
    assert "==> onion services" in result.stdout, result.stdout + result.stderr
    return root, (tmp_path / "stub.log").read_text(), result.stdout


@pytest.mark.slow
def test_deploy_turns_on_security_updates_and_the_firewall(tmp_path: Path) -> None:
    root, calls, printed = _deploy_until_tor(tmp_path, None)
    assert "    inbound: TCP 22 only\n" in printed
    assert "unattended-upgrades nftables" in calls.splitlines()[1]  # apt-get install …
    apt = (root / "etc/apt/apt.conf.d/52tipbox-security-updates").read_text()
    assert 'APT::Periodic::Unattended-Upgrade "1";' in apt
    assert "label=Debian-Security" in apt
    assert "systemctl enable --now apt-daily.timer apt-daily-upgrade.timer" in calls
    assert "systemctl enable nftables.service" in calls
    rules = (root / "etc/nftables.d/tipbox.nft").read_text()
    assert "tcp dport { 22 } ct state new accept" in rules  # the new env file's default
    assert f'include "{root}/etc/nftables.d/tipbox.nft"' in (root / "etc/nftables.conf").read_text()
    assert not (root / "etc/systemd/system/tipbox-reboot.timer").exists()
    assert "TIPBOX_INBOUND_TCP=22\n" in (root / "etc/tipbox/tipbox.env").read_text()

    env = _script_env(tmp_path, root, tmp_path / "keys")
    removed = _run("uninstall.sh", env)
    assert removed.returncode == 0, removed.stderr
    for gone in ("etc/apt/apt.conf.d/52tipbox-security-updates", "etc/nftables.d/tipbox.nft"):
        assert not (root / gone).exists(), gone
    assert "tipbox" not in (root / "etc/nftables.conf").read_text()


@pytest.mark.slow
def test_deploy_reboots_nightly_and_lets_nothing_in_when_asked(tmp_path: Path) -> None:
    settings = "TIPBOX_ENV=production\nTIPBOX_REBOOT_AT='04:30'\nTIPBOX_INBOUND_TCP=\n"
    root, calls, printed = _deploy_until_tor(tmp_path, settings)
    assert "    inbound: nothing\n" in printed
    timer = (root / "etc/systemd/system/tipbox-reboot.timer").read_text()
    assert "OnCalendar=*-*-* 04:30:00" in timer
    assert "systemctl enable --now tipbox-reboot.timer" in calls
    assert "tcp dport" not in (root / "etc/nftables.d/tipbox.nft").read_text()
    if ANALYZE is not None:  # with systemd's own units and systemctl, as on a server
        units = root / "etc/systemd/system"
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
        (root / "usr/bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2("/usr/bin/systemctl", root / "usr/bin/systemctl")
        result = subprocess.run(
            [ANALYZE, "verify", f"--root={root}", "tipbox-reboot.timer", "tipbox-reboot.service"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=units,
        )
        assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("at", ["4:30", "24:00", "04:30; reboot"])
def test_deploy_refuses_a_bad_reboot_hour(tmp_path: Path, at: str) -> None:
    root = _bare_root(tmp_path)
    (root / "etc/tipbox").mkdir(parents=True)
    (root / "etc/tipbox/tipbox.env").write_text(f"TIPBOX_REBOOT_AT={at}\n")
    keys = tmp_path / "keys"
    make_newsroom_keys(tmp_path / "identity.txt", keys)
    result = _run("install.sh", _script_env(tmp_path, root, keys))
    assert result.returncode == 1
    assert f"tipbox: error: TIPBOX_REBOOT_AT={at} is not an hour such as 04:00" in result.stderr
