"""deploy/: the torrc snippet, the systemd units, the Gunicorn configs and the scripts behind
``make deploy|status|backup|restore|uninstall``.

- The torrc snippet passes ``tor --verify-config`` with Debian's own defaults and torrc.
- The units pass ``systemd-analyze verify`` and score "SAFE" in ``systemd-analyze security``,
  both run offline against a throwaway root (no systemd is running in CI containers).
- The app really runs the way the units run it: socket-activated, in a network namespace with
  only a loopback interface that is down, with memory that cannot be made executable.
- The whole lifecycle runs in a throwaway ROOT against a real (offline) tor, with stubs for
  apt-get, systemctl, useradd, userdel and python3 -m venv.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import tarfile
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest

from app import onion
from app.onion import Layout
from app.server.unixhttp import UnixHTTPConnection
from tests.helpers import TIPBOX
from tests.live import make_newsroom_keys
from tests.testnet import REPO, TOR, Tor, needs_tor, start_tor

DEPLOY = REPO / "deploy"
UNITS = [
    "tipbox-source.socket",
    "tipbox-source.service",
    "tipbox-journalist.socket",
    "tipbox-journalist.service",
    "tipbox-retention.timer",
    "tipbox-retention.service",
]
SERVICES = [u for u in UNITS if u.endswith(".service")]
ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
DEBIAN_DEFAULTS = Path("/usr/share/tor/tor-service-defaults-torrc")
MAX_EXPOSURE = 1.0  # docs/deploy.md records the actual scores (0.2)


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> every value (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --- torrc --------------------------------------------------------------------------------


def test_torrc_file_is_the_snippet_tipbox_writes() -> None:
    assert (DEPLOY / "torrc").read_text() == onion.render_torrc(Layout.under(Path("/")))


@pytest.mark.tor
@needs_tor
@pytest.mark.skipif(not DEBIAN_DEFAULTS.exists(), reason="Debian's tor package is not installed")
@pytest.mark.parametrize("broken", [False, True])
def test_torrc_passes_tor_verify_config(tmp_path: Path, broken: bool) -> None:
    assert TOR is not None
    torrc_d = tmp_path / "torrc.d"
    torrc_d.mkdir()
    snippet = (DEPLOY / "torrc").read_text()
    if broken:  # the check must be able to fail
        snippet += "HiddenServicePoWDefensesEnabled perhaps\n"
    (torrc_d / "tipbox.conf").write_text(snippet)
    debian = Path("/etc/tor/torrc").read_text() if Path("/etc/tor/torrc").exists() else ""
    torrc = tmp_path / "torrc"
    torrc.write_text(f"{debian}\n%include {torrc_d}/*.conf\n")
    result = subprocess.run(
        [TOR, "--verify-config", "--defaults-torrc", str(DEBIAN_DEFAULTS), "-f", str(torrc)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode != 0) == broken, result.stdout
    assert ("Configuration was valid" in result.stdout) != broken
    assert f'Including configuration file "{torrc_d}/tipbox.conf"' in result.stdout


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_scripts_pass_shellcheck() -> None:
    scripts = sorted(str(p.name) for p in DEPLOY.glob("*.sh"))
    result = subprocess.run(
        ["shellcheck", "-x", "-s", "bash", *scripts],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# --- systemd units ------------------------------------------------------------------------


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    """A root holding systemd's own units, our units, and a stand-in for the venv's gunicorn."""
    root = tmp_path / "sysroot"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "bin").mkdir()
    shutil.copy2("/bin/kill", root / "bin/kill")
    for program in ("gunicorn", "tipbox"):
        standin = root / "opt/tipbox/venv/bin" / program
        standin.parent.mkdir(parents=True, exist_ok=True)
        standin.write_text("#!/bin/sh\n")
        standin.chmod(0o755)
    (root / "etc/systemd/system").mkdir(parents=True)
    for unit in UNITS:
        shutil.copy2(DEPLOY / unit, root / "etc/systemd/system" / unit)
    return root


@needs_systemd
def test_units_pass_systemd_analyze_verify(unit_root: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", f"--root={unit_root}", *UNITS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=unit_root,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # unknown keys and bad values are only warnings


@needs_systemd
@pytest.mark.parametrize("service", SERVICES)
def test_units_score_safe(unit_root: Path, service: str) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", f"--root={unit_root}", service],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=unit_root,
    )
    match = re.search(rf"Overall exposure level for {service}: ([0-9.]+) (\w+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    assert match.group(2) == "SAFE"


@pytest.mark.parametrize("name", ["source", "journalist"])
def test_units_hardening_and_wiring(name: str) -> None:
    service = parse_unit(DEPLOY / f"tipbox-{name}.service")["Service"]
    socket = parse_unit(DEPLOY / f"tipbox-{name}.socket")["Socket"]
    expected = {
        "User": ["tipbox"],
        "Group": ["tipbox"],
        "PrivateNetwork": ["yes"],
        "RestrictAddressFamilies": ["AF_UNIX"],
        "IPAddressDeny": ["any"],
        "ProtectSystem": ["strict"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "MemoryDenyWriteExecute": ["yes"],
        "CapabilityBoundingSet": [""],
        "StateDirectory": ["tipbox"],
    }
    for key, value in expected.items():
        assert service.get(key) == value, key
    assert "SupplementaryGroups" not in service  # never debian-tor
    assert "debian-tor" not in " ".join(v for values in service.values() for v in values)
    conf = "gunicorn.conf.py" if name == "source" else "gunicorn-journalist.conf.py"
    assert service["ExecStart"] == [
        f"/opt/tipbox/venv/bin/gunicorn -c /opt/tipbox/src/deploy/{conf}"
    ]
    # One socket path, four places: the socket unit, Gunicorn's default bind, tor's target.
    path = f"/run/tipbox/{name}.sock"
    assert socket["ListenStream"] == [path]
    assert (socket["SocketGroup"], socket["SocketMode"]) == (["debian-tor"], ["0660"])
    assert f"unix:{path}" in (DEPLOY / conf).read_text()
    assert f"HiddenServicePort 80 unix:{path}" in (DEPLOY / "torrc").read_text()
    assert Layout.under(Path("/")).socket(name) == Path(path)


def test_journalist_gunicorn_config_shares_every_setting() -> None:
    def settings(conf: str) -> dict[str, str]:
        result = subprocess.run(
            [
                str(REPO / ".venv/bin/gunicorn"),
                "-c",
                str(DEPLOY / conf),
                "--print-config",
                "tests.live:standin_app",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            cwd=REPO,
            env={k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "GUNICORN"))},
        )
        lines = (line.partition(" = ") for line in result.stdout.splitlines() if " = " in line)
        return {key.strip(): re.sub(r" at 0x[0-9a-f]+", "", value) for key, _, value in lines}

    source, journalist = settings("gunicorn.conf.py"), settings("gunicorn-journalist.conf.py")
    assert journalist.pop("bind") == "['unix:/run/tipbox/journalist.sock']"
    assert source.pop("bind") == "['unix:/run/tipbox/source.sock']"
    assert journalist.pop("wsgi_app") == "app.journalist:create_app()"
    assert source.pop("wsgi_app") == "app.source:create_app()"
    assert journalist.pop("config") != source.pop("config")
    sized = ("workers", "threads", "worker_connections")  # a handful of journalists
    assert [journalist.pop(k) for k in sized] == ["1", "16", "16"]
    assert [source.pop(k) for k in sized] == ["3", "96", "96"]
    assert journalist == source


# --- The app, run the way the units run it ------------------------------------------------

MDWE = """\
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN (Linux >= 6.3)
    sys.exit(f"prctl(PR_SET_MDWE) failed: {os.strerror(ctypes.get_errno())}")
os.execv(sys.argv[1], sys.argv[1:])
"""


def _mdwe_works(wrapper: Path) -> bool:
    code = (
        "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)"
    )
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), str(wrapper), str(REPO / ".venv/bin/python"), "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode != 0 and "PermissionError" in result.stderr


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None, reason="no systemd")
def test_app_runs_socket_activated_without_network_and_wx_memory(tmp_path: Path) -> None:
    """systemd-socket-activate stands in for the .socket unit, ``unshare -n`` for
    PrivateNetwork=yes, and prctl(PR_SET_MDWE) for MemoryDenyWriteExecute=yes."""
    wrapper = tmp_path / "mdwe.py"
    wrapper.write_text(MDWE)
    if not _mdwe_works(wrapper):
        pytest.skip("this kernel cannot deny W+X memory with prctl (Linux >= 6.3 needed)")
    if subprocess.run(["unshare", "-n", "true"], check=False).returncode != 0:
        pytest.skip("no permission to make a network namespace")
    for folder in ("data", "keys", "tmp", "home"):
        (tmp_path / folder).mkdir()
    make_newsroom_keys(tmp_path / "identity.txt", tmp_path / "keys")
    env = {
        "PATH": os.environ["PATH"],
        "TIPBOX_ENV": "production",
        "TIPBOX_DATA_DIR": str(tmp_path / "data"),
        "TIPBOX_KEYS_DIR": str(tmp_path / "keys"),
        "TIPBOX_KDF_OPSLIMIT": "1",
        "TIPBOX_KDF_MEMLIMIT": "8388608",
        "HOME": str(tmp_path / "home"),
        "TMPDIR": str(tmp_path / "tmp"),
    }
    sock = tmp_path / "source.sock"
    python = str(REPO / ".venv/bin/python")
    command = ["systemd-socket-activate", "-l", str(sock)]
    command += [f"--setenv={name}" for name in env]
    command += ["--", "unshare", "-n", "--", python, str(wrapper), python, "-m", "gunicorn"]
    command += ["-c", str(DEPLOY / "gunicorn.conf.py")]
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=log, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert process.poll() is None, (tmp_path / "log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        conn = UnixHTTPConnection(sock, timeout=60)  # the first connection starts Gunicorn
        try:
            conn.request("GET", "/", headers={"Host": "example2345.onion"})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        assert response.status == 200, (tmp_path / "log").read_text()
        assert b"<html" in body
        # Master and workers see only a loopback interface in their own namespace.
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        for pid in [str(process.pid), *children]:
            interfaces = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
            assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(30)


# --- make deploy, status, backup, restore, uninstall in a throwaway root ------------------

STUBS = {
    "apt-get": 'echo "apt-get $*" >>"$STUB_LOG"',
    "systemctl": 'echo "systemctl $*" >>"$STUB_LOG"',
    "apparmor_parser": 'echo "apparmor_parser $*" >>"$STUB_LOG"',
    "useradd": """\
echo "useradd $*" >>"$STUB_LOG"
prefix=$(printf '%s\n' "$@" | sed -n '/^--prefix$/{n;p}')
prefix=${prefix:-/}
[[ $prefix != / ]] || { echo "stub: refusing to change this system's users" >&2; exit 1; }
name=${!#}
echo "$name:x:990:990:Tipbox:/var/lib/tipbox:/usr/sbin/nologin" >>"$prefix/etc/passwd"
echo "$name:x:990:" >>"$prefix/etc/group"
""",
    "userdel": """\
echo "userdel $*" >>"$STUB_LOG"
prefix=$(printf '%s\n' "$@" | sed -n '/^--prefix$/{n;p}')
prefix=${prefix:-/}
[[ $prefix != / ]] || { echo "stub: refusing to change this system's users" >&2; exit 1; }
name=${!#}
sed -i "/^$name:/d" "$prefix/etc/passwd" "$prefix/etc/group"
""",
    # `python3 -m venv DIR` makes a venv whose programs are this repository's: no PyPI here.
    "python3": """\
if [[ $1 == -m && $2 == venv ]]; then
    echo "python3 $*" >>"$STUB_LOG"
    mkdir -p "$3/bin"
    py="$REPO/.venv/bin/python"
    printf '#!/bin/bash\\nPYTHONPATH=%s exec %s "$@"\\n' "$REPO" "$py" >"$3/bin/python"
    printf '#!/bin/bash\\necho "pip $*" >>"$STUB_LOG"\\n' >"$3/bin/pip"
    printf '#!/bin/bash\\ncd %s && exec %s -m tests.testnet tipbox "$@"\\n' "$REPO" "$py" \\
        >"$3/bin/tipbox"
    chmod +x "$3/bin/"*
    exit 0
fi
exec /usr/bin/python3 "$@"
""",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Path, Tor]]:
    """A throwaway root with Debian's torrc and users, and tor running from it (offline)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\ndebian-tor:x:102:109::/var/lib/tor:/bin/false\n"
    )
    (root / "etc/group").write_text("root:x:0:\ndebian-tor:x:109:\n")
    debian = Path("/etc/tor/torrc")
    torrc = debian.read_text() if debian.exists() else "# Debian's torrc\n"
    tor = start_tor(root, torrc=torrc)
    try:
        yield root, tor
    finally:
        tor.stop()


def _script_env(tmp_path: Path, root: Path, keys: Path) -> dict[str, str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/bin/bash\nset -euo pipefail\n{body}")
        (stubs / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIPBOX_", "GUNICORN"))}
    env.update(
        {
            "PATH": f"{stubs}:{os.environ['PATH']}",
            "ROOT": str(root),
            "KEYS": str(keys),
            "STUB_LOG": str(tmp_path / "stub.log"),
            "REPO": str(REPO),
            "PYTHONWARNINGS": "ignore::DeprecationWarning",
        }
    )
    return env


def _bare_root(tmp_path: Path) -> Path:
    """A throwaway root with just Debian's torrc and users: enough for install.sh to start."""
    root = tmp_path / "root"
    (root / "etc/tor").mkdir(parents=True)
    (root / "etc/tor/torrc").write_text("# Debian's torrc\n")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\ndebian-tor:x:109:\n")
    return root


def _decrypt(tipbox: str, identity: Path, path: Path, env: dict[str, str]) -> bytes:
    """``tipbox decrypt -i identity path``: the plaintext (a backup's tar)."""
    return subprocess.run(
        [tipbox, "decrypt", "-i", str(identity), str(path)],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    ).stdout


def _run(
    script: str, env: dict[str, str], *args: str, **extra: str
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(DEPLOY / script), *args],
        env={**env, **extra},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def _has_journalist_app() -> bool:
    try:
        from app.journalist import create_app  # noqa: F401
    except ImportError:
        return False
    return True


def _owner(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid


@pytest.mark.tor
@pytest.mark.slow
@needs_tor
def test_deploy_lifecycle_in_a_throwaway_root(server: tuple[Path, Tor], tmp_path: Path) -> None:
    root, tor = server
    keys = tmp_path / "keys"
    identity = tmp_path / "newsroom-identity.txt"
    make_newsroom_keys(identity, keys)
    env = _script_env(tmp_path, root, keys)
    layout = Layout.under(root)
    log = Path(env["STUB_LOG"])

    # make deploy
    first = _run("install.sh", env)
    assert first.returncode == 0, first.stdout + first.stderr
    addresses = onion.read_addresses(layout)
    assert set(addresses) == {"source", "journalist"}
    for address in addresses.values():
        assert f"http://{address}/" in first.stdout
    assert "Next steps:" in first.stdout
    journalist_app = _has_journalist_app()
    assert ("no journalist app yet" in first.stderr) != journalist_app
    torrc = (root / "etc/tor/torrc").read_text()
    assert torrc.count(f"%include {root}/etc/tor/torrc.d/*.conf") == 1
    assert layout.snippet.read_text() == onion.render_torrc(layout)
    for unit in UNITS:
        assert (root / "etc/systemd/system" / unit).read_bytes() == (DEPLOY / unit).read_bytes()
    assert (root / "etc/tipbox/keys/newsroom.pub").read_bytes() == (
        keys / "newsroom.pub"
    ).read_bytes()
    assert (root / "etc/tipbox/tipbox.env").stat().st_mode & 0o777 == 0o640
    assert "tipbox:x:990:990:" in (root / "etc/passwd").read_text()
    assert "debian-tor:x:109:\n" in (root / "etc/group").read_text()  # tipbox is no member
    data = root / "var/lib/tipbox"
    assert _owner(data) == (990, 990)
    assert data.stat().st_mode & 0o777 == 0o700
    for name in onion.SERVICES:
        assert (layout.hs_dir(name) / "hs_ed25519_secret_key").stat().st_mode & 0o777 == 0o600
    assert "/run/tipbox/*.sock rw," in (root / "etc/apparmor.d/local/system_tor").read_text()
    assert os.readlink(root / "usr/local/bin/tipbox") == str(root / "opt/tipbox/venv/bin/tipbox")
    calls = log.read_text()
    assert "apt-get install -y --no-install-recommends tor python3 python3-venv" in calls
    assert (
        f"pip install --quiet --disable-pip-version-check --upgrade {root}/opt/tipbox/src" in calls
    )
    assert "systemctl enable --now tipbox-source.socket" in calls
    assert "systemctl enable --now tipbox-retention.timer" in calls
    assert ("systemctl enable --now tipbox-journalist.socket" in calls) == journalist_app
    assert "systemctl disable --now tipbox-digest.timer" in calls  # no relay set: no digest
    assert (root / "etc/systemd/system/tipbox-digest.timer").exists()

    # make deploy again: nothing changes, the addresses stay
    env_file = (root / "etc/tipbox/tipbox.env").read_bytes()
    again = _run("install.sh", env)
    assert again.returncode == 0, again.stderr
    assert onion.read_addresses(layout) == addresses
    assert (root / "etc/tor/torrc").read_text() == torrc
    assert (root / "etc/apparmor.d/local/system_tor").read_text().count("BEGIN tipbox") == 1
    assert (root / "etc/tipbox/tipbox.env").read_bytes() == env_file
    assert log.read_text().count("useradd ") == 1

    # make status: tor answers, but it is offline and no app runs here
    status = _run("status.sh", env)
    assert status.returncode == 1
    assert status.stdout.startswith("ok    tor ")
    assert "FAIL  source app on" in status.stdout
    assert status.stderr.startswith("tipbox: error: ")

    # a journalist, and a database, so the backup has something to carry
    tipbox = str(root / "opt/tipbox/venv/bin/tipbox")
    added = subprocess.run(
        [tipbox, "access", "add", "alice", "--out", str(tmp_path)],
        env={**env, "TIPBOX_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    alice = (layout.clients_dir / "alice.auth").read_bytes()
    db = sqlite3.connect(data / "store.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES ('still here')")
    db.commit()

    # make backup: one age file, and no other file written anywhere we can see
    empty_tmp = tmp_path / "tmpdir"
    empty_tmp.mkdir()
    out = tmp_path / "backups" / "tipbox.tar.age"
    backup = _run("backup.sh", env, OUT=str(out), TMPDIR=str(empty_tmp))
    db.close()
    assert backup.returncode == 0, backup.stderr
    assert out.read_bytes().startswith(b"age-encryption.org/v1\n")
    assert out.stat().st_mode & 0o777 == 0o600
    assert list(out.parent.iterdir()) == [out]
    assert list(empty_tmp.iterdir()) == []
    plain = _decrypt(tipbox, identity, out, env)
    with tarfile.open(fileobj=BytesIO(plain)) as archive:
        names = set(archive.getnames())
    for name in (
        "etc/tipbox/tipbox.env",
        "etc/tipbox/keys/newsroom.pub",
        "var/lib/tipbox/store.sqlite3",
        "var/lib/tipbox/onion-addresses",
        "var/lib/tor/tipbox-source/hs_ed25519_secret_key",
        "var/lib/tor/tipbox-journalist/hs_ed25519_secret_key",
        "var/lib/tor/tipbox-journalist/authorized_clients/alice.auth",
    ):
        assert name in names, name
    assert not any(n.endswith(("-wal", "-shm")) for n in names)

    # disaster: the data and the onion keys are gone; make restore brings them back
    for path in (data, layout.hs_dir("source"), layout.hs_dir("journalist"), root / "etc/tipbox"):
        shutil.rmtree(path)
    # The newsroom identity never comes to the server: IDENTITY= is refused, and so is the
    # backup before this server has made its one-time restore key.
    refused = _run("restore.sh", env, BACKUP=str(out), IDENTITY=str(identity))
    assert refused.returncode == 1
    assert "IDENTITY= is no longer read" in refused.stderr
    refused = _run("restore.sh", env, BACKUP=str(out))
    assert refused.returncode == 1
    assert "sudo make restore-key" in refused.stderr
    made = _run("restore.sh", env, "key")
    assert made.returncode == 0, made.stderr
    recipient = re.search(r"^restore recipient: (age1\S+)$", made.stdout, re.MULTILINE)
    assert recipient, made.stdout
    restore_key = root / "var/lib/tipbox-restore-key/identity.txt"
    assert restore_key.stat().st_mode & 0o777 == 0o600
    # the backup as it was made (to the newsroom key) does not open with the restore key
    refused = _run("restore.sh", env, BACKUP=str(out))
    assert refused.returncode == 1
    assert "tipbox backup reencrypt" in refused.stderr
    assert not data.exists()
    # on the air-gapped machine (here: this checkout's tipbox), re-encrypt it to the new server
    moved = tmp_path / "for-server.age"
    subprocess.run(
        [*TIPBOX, "backup", "reencrypt", "-i", str(identity), "-r", recipient.group(1)]
        + ["-o", str(moved), str(out)],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=tmp_path,
    )
    restored = _run("restore.sh", env, BACKUP=str(moved))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert not restore_key.parent.exists()  # one-time
    assert onion.read_addresses(layout) == addresses
    assert (layout.clients_dir / "alice.auth").read_bytes() == alice
    assert _owner(data) == (990, 990)
    db = sqlite3.connect(data / "store.sqlite3")
    assert db.execute("SELECT v FROM t").fetchall() == [("still here",)]
    db.close()
    assert onion.inspect(layout).services["source"].address == addresses["source"]
    again = _run("restore.sh", env, BACKUP=str(moved))
    assert again.returncode == 1
    assert "FORCE=1" in again.stderr

    # make uninstall keeps the data and keys; a new deploy comes back at the same addresses
    removed = _run("uninstall.sh", env)
    assert removed.returncode == 0, removed.stderr
    assert not (root / "opt/tipbox").exists()
    assert not layout.snippet.exists()
    assert not any((root / "etc/systemd/system" / u).exists() for u in UNITS)
    assert not (root / "etc/systemd/system/tipbox-digest.timer").exists()
    assert "tipbox" not in (root / "etc/apparmor.d/local/system_tor").read_text()
    assert (layout.hs_dir("source") / "hs_ed25519_secret_key").exists()
    assert (data / "store.sqlite3").exists()
    assert tor.alive()
    # The database here predates this release's schema (version 0): the deploy backs the whole
    # instance up before migrating, and that newest backup supersedes the one before it.
    backups = root / "var/backups/tipbox"
    backups.mkdir(mode=0o700, parents=True)
    superseded = backups / "before-upgrade-20260101T000000Z.tar.age"
    superseded.write_bytes(b"an older pre-upgrade backup")
    redeployed = _run("install.sh", env)
    assert redeployed.returncode == 0, redeployed.stderr
    assert "backup before the database is migrated" in redeployed.stdout
    assert onion.read_addresses(layout) == addresses
    (before,) = backups.glob("before-upgrade-*.tar.age")
    assert before != superseded
    assert before.stat().st_mode & 0o777 == 0o600
    plain = _decrypt(tipbox, identity, before, env)
    with tarfile.open(fileobj=BytesIO(plain)) as archive:
        saved = archive.extractfile("var/lib/tipbox/store.sqlite3")
        assert saved is not None
        (tmp_path / "saved.sqlite3").write_bytes(saved.read())
    db = sqlite3.connect(tmp_path / "saved.sqlite3")
    assert db.execute("SELECT v FROM t").fetchall() == [("still here",)]
    db.close()

    # make uninstall PURGE=1 deletes everything, the user too
    purged = _run("uninstall.sh", env, PURGE="1")
    assert purged.returncode == 0, purged.stderr
    for path in (data, root / "etc/tipbox", layout.hs_dir("source"), layout.hs_dir("journalist")):
        assert not path.exists(), path
    assert "tipbox:" not in (root / "etc/passwd").read_text()
    assert "userdel --prefix" in log.read_text()
    assert tor.alive()


@pytest.mark.slow
def test_deploy_refuses_a_secret_key(tmp_path: Path) -> None:
    root = _bare_root(tmp_path)
    keys = tmp_path / "keys"
    make_newsroom_keys(tmp_path / "identity.txt", keys)
    shutil.copy(tmp_path / "identity.txt", keys / "oops.txt")
    result = _run("install.sh", _script_env(tmp_path, root, keys))
    assert result.returncode == 1
    assert re.search(r"tipbox: error: \S+oops.txt contains a secret key", result.stderr)
    assert "tipbox: hint: " in result.stderr
    assert not (root / "etc/systemd/system/tipbox-source.service").exists()
    assert not (root / "etc/tipbox/keys/oops.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("installed", [True, False])
def test_deploy_offline_with_wheels(tmp_path: Path, installed: bool) -> None:
    """WHEELS=DIR: pip installs from DIR only; apt-get is not run when dpkg-query says every
    Debian package is installed, and is still tried when one is missing."""
    root = _bare_root(tmp_path)
    keys = tmp_path / "keys"
    keys.mkdir()  # no recipient: install.sh stops right after the Python packages
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    env = _script_env(tmp_path, root, keys)
    dpkg_query = tmp_path / "stubs/dpkg-query"
    status = "installed" if installed else "not-installed"
    dpkg_query.write_text(f'#!/bin/bash\necho "dpkg-query $*" >>"$STUB_LOG"\nprintf {status}\n')
    dpkg_query.chmod(0o755)
    result = _run("install.sh", env, WHEELS=str(wheels))
    assert result.returncode == 1, result.stdout + result.stderr
    calls = (tmp_path / "stub.log").read_text()
    assert "dpkg-query -W -f=${db:Status-Status} tor" in calls
    assert f"--no-index --find-links {wheels} --upgrade {root}/opt/tipbox/src" in calls
    if installed:
        assert "apt-get" not in calls
        assert f"offline mode (WHEELS={wheels}): apt-get not run" in result.stdout
    else:
        assert "apt-get install -y --no-install-recommends tor python3 python3-venv" in calls
