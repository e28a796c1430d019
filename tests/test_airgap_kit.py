"""The offline kit: built for real, installed with the network cut off, then used on a bundle."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.store_helpers import read_member
from tests.test_bundle import Newsroom

pytestmark = pytest.mark.slow
BUILD_TIMEOUT = 600
TIMEOUT = 120
KIT_PACKAGES = {"tipbox", "cryptography", "pynacl", "cffi", "pycparser"}
# What a fresh venv brings by itself (Python 3.11's ensurepip also installs setuptools).
VENV_PACKAGES = {"pip", "setuptools"}
SERVER_COMMANDS = [["status"], ["user", "list"], ["onion", "addresses"], ["access", "list"]]


def _kit_module() -> Any:
    """deploy/airgap_kit.py, imported from its path (deploy/ is not a package)."""
    spec = importlib.util.spec_from_file_location("airgap_kit", REPO / "deploy" / "airgap_kit.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_lists_the_packages() -> None:
    """It listed them one character at a time ("c, f, f, i, ,, …"): a string joined again."""
    versions = {"tipbox": "0.1.0", "pynacl": "1.5.0", "cffi": "1.17.1", "pip": "24.0"}
    readme = _kit_module()._readme(versions | {"cryptography": "44.0.1", "pycparser": "2.22"})
    assert "tipbox 0.1.0, cffi 1.17.1, cryptography 44.0.1, pycparser 2.22, pynacl 1.5.0" in readme
    assert "pip 24.0" in readme  # for a Python without ensurepip


def _python() -> str:
    """Debian's python3 when there is one (as on Tails), else the interpreter behind this venv."""
    return shutil.which("python3", path="/usr/bin") or sys._base_executable


def _offline() -> list[str]:
    """A prefix that runs a command in a new network namespace with no interfaces, if allowed."""
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, check=False)
    return ["unshare", "--net", "--"] if probe.returncode == 0 else []


def _run(args: list[str | Path], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run with a bare environment and, as far as this machine allows, no network at all."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "LC_ALL": "C.UTF-8"}
    dead = "http://127.0.0.1:9"  # should anything still try the network, it fails at once
    base |= {"http_proxy": dead, "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead}
    return subprocess.run(
        [*_offline(), *map(str, args)],
        cwd=cwd,
        env=base | env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _build(out: Path) -> Path:
    script = REPO / "deploy" / "airgap_kit.py"
    proc = subprocess.run(
        [sys.executable, script, "--out", out],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _check_contents(kit: Path) -> None:
    wheels = sorted(p.name for p in (kit / "wheels").iterdir())
    names = {re.sub(r"-.*", "", w).lower() for w in wheels}
    assert names == KIT_PACKAGES | {"pip"}, wheels
    assert all(w.endswith(".whl") for w in wheels)  # nothing to compile on the air-gapped side
    pinned = (kit / "requirements.txt").read_text().splitlines()
    assert sorted(line.split("==")[0] for line in pinned) == sorted(KIT_PACKAGES)
    assert all(re.search(r"==\S+ --hash=sha256:[0-9a-f]{64}$", line) for line in pinned)
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=kit, check=False)
    assert check.returncode == 0
    readme = (kit / "README.txt").read_text()
    assert "sh install.sh" in readme
    for wheel in wheels:
        name, version = wheel.split("-")[:2]
        assert f"{name.lower()} {version}" in readme, (wheel, readme)


def _install(kit: Path, venv: Path, **env: str) -> None:
    proc = _run(["sh", kit / "install.sh", venv], venv.parent, PYTHON=_python(), **env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"installed: {venv}/bin/tipbox" in proc.stdout
    listed = _run([venv / "bin" / "python", "-m", "pip", "list", "--format=json"], venv.parent)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert KIT_PACKAGES <= installed <= KIT_PACKAGES | VENV_PACKAGES, installed
    assert _run([venv / "bin" / "python", "-c", "import flask"], venv.parent).returncode == 1


def _use(venv: Path, newsroom: Newsroom, work: Path) -> None:
    """Decrypt one item and open a whole bundle with the installed tipbox, offline."""
    source = newsroom.submit("tip from the kit test", [("memo.pdf", os.urandom(5000))])
    bundle = newsroom.bundle(work / "b.tar")
    tipbox, identity = venv / "bin" / "tipbox", newsroom.identity_file
    item = newsroom.store.path_of(newsroom.store.items_of(source)[-1])
    decrypt = _run([tipbox, "decrypt", "-i", identity, "-o", work / "item.tar", item], work)
    assert decrypt.returncode == 0, decrypt.stderr
    assert read_member((work / "item.tar").read_bytes())[1] == b"tip from the kit test"
    opened = _run([tipbox, "open", bundle, "-i", identity, "--out", work / "out"], work)
    assert opened.returncode == 0, opened.stderr
    assert "opened 2 new items (1 message, 1 file" in opened.stdout
    folder = work / "out" / newsroom.designation(source).replace(" ", "-")
    assert (folder / "0001 message.txt").read_bytes() == b"tip from the kit test"
    assert (folder / "0002 file with 0001 memo.pdf").stat().st_size == 5000
    assert (work / "out" / "index.html").is_file()


def _server_commands_say_so(venv: Path, work: Path) -> None:
    """The kit's tipbox knows its version, and a server command says in one line that it runs
    on the server (the server's libraries are not in the kit), with no traceback."""
    tipbox = venv / "bin" / "tipbox"
    version = _run([tipbox, "--version"], work)
    assert (version.returncode, version.stderr) == (0, "")
    assert re.fullmatch(r"tipbox \d+\.\d+\.\d+\S*\n", version.stdout), version.stdout
    for args in SERVER_COMMANDS:
        proc = _run([tipbox, *args], work)
        assert (proc.returncode, proc.stdout) == (1, ""), proc.stderr
        assert proc.stderr.startswith(
            f"tipbox: error: 'tipbox {args[0]}' runs on the server, not from the air-gapped kit"
        ), proc.stderr
        assert proc.stderr.count("\n") == 1, proc.stderr


def test_kit_builds_installs_offline_and_opens_a_bundle(tmp_path: Path) -> None:
    kit = _build(tmp_path / "dist" / "airgap-kit")
    _check_contents(kit)
    for mode, env in (("venv", {}), ("bare", {"KIT_WITHOUT_ENSUREPIP": "1"})):
        work = tmp_path / mode
        work.mkdir()
        _install(kit, work / "tipbox", **env)
        _use(work / "tipbox", Newsroom(work), work)
        _server_commands_say_so(work / "tipbox", work)
    again = _build(kit)  # rebuilding replaces the previous kit
    _check_contents(again)


def test_a_damaged_kit_refuses_to_install(tmp_path: Path) -> None:
    kit = _build(tmp_path / "kit")
    wheel = next((kit / "wheels").glob("tipbox-*.whl"))
    data = bytearray(wheel.read_bytes())
    data[100] ^= 1
    wheel.write_bytes(bytes(data))
    proc = _run(["sh", kit / "install.sh", tmp_path / "venv"], tmp_path, PYTHON=_python())
    assert proc.returncode == 1
    assert "the kit is damaged" in proc.stderr
    assert not (tmp_path / "venv").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("not a kit")
    with pytest.raises(AssertionError, match="not a kit"):
        _build(tmp_path / "other")
    assert (tmp_path / "other" / "keep.txt").exists()
