"""Build the offline install kit for the journalist's air-gapped machine (``make airgap-kit``).

    python deploy/airgap_kit.py [--out dist/airgap-kit] [--platform TAG --python-version X.Y]

The kit is a folder to copy onto a USB stick: ``wheels/`` (tipbox, and only what the air-gapped
commands import: cryptography and PyNaCl, with their cffi and pycparser; plus pip's own wheel for
machines whose Python lacks ``ensurepip``), ``requirements.txt`` (exact versions and SHA-256),
``SHA256SUMS``, ``install.sh`` and ``README.txt``. Building needs PyPI; installing never touches
a network. Versions are those installed beside the Python running this script, so the kit holds
what the test suite ran against. Wheels only: nothing is compiled on the air-gapped machine.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CRYPTO_DEPENDENCIES = ("cryptography", "pynacl")
SOURCE_FILES = ("pyproject.toml", "README.md")
_WHEEL = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl")

INSTALL_SH = r"""#!/bin/sh
# Install tipbox from this kit into a new virtual environment, without any network.
#   sh install.sh [VENV]      default ~/tipbox; on Tails, ~/Persistent/tipbox survives a reboot
set -eu
kit=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$HOME/tipbox}
python=${PYTHON:-python3}

# Only this kit's wheels: ignore this machine's pip configuration, indexes and caches.
export PIP_CONFIG_FILE=/dev/null PIP_NO_INDEX=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_FIND_LINKS PIP_CONSTRAINT PIP_REQUIREMENT || true

(cd "$kit" && sha256sum --quiet --strict -c SHA256SUMS) || {
    echo "install.sh: the kit is damaged (SHA256SUMS does not match): copy it again" >&2
    exit 1
}

if [ -z "${KIT_WITHOUT_ENSUREPIP:-}" ] && "$python" -m venv --clear "$venv" 2>/dev/null; then
    :
else
    # Debian and Tails ship ensurepip separately (python3-venv): bring pip from the kit instead.
    "$python" -m venv --clear --without-pip "$venv"
    pip_wheel=$(ls "$kit"/wheels/pip-*.whl)
    "$venv/bin/python" "$pip_wheel/pip" install --quiet --no-deps "$pip_wheel"
fi

# tipbox's metadata also lists the server's dependencies (flask, gunicorn, stem...), which the
# air-gapped commands never import and the kit does not carry: install every wheel by its exact
# name, version and hash (requirements.txt) with --no-deps, so pip does not go looking for them.
"$venv/bin/python" -m pip install --quiet --no-index --find-links "$kit/wheels" \
    --no-deps --require-hashes -r "$kit/requirements.txt"
"$venv/bin/tipbox" --help >/dev/null
echo "installed: $venv/bin/tipbox"
"""

README_TXT = """Tipbox air-gapped kit
=====================

This folder installs the `tipbox` command on the journalist's air-gapped machine (Debian 12 or
Tails 6, Python 3.11, x86_64), with no network. Tails ships gpg but not age: `tipbox` reads and
writes age files itself.

    sh install.sh                   # into ~/tipbox
    sh install.sh ~/Persistent/tipbox   # on Tails, to keep it across reboots

It checks SHA256SUMS, creates a Python virtual environment and installs, from wheels/ only:
tipbox {tipbox}, {versions}
(and pip {pip}, for a Python without ensurepip, such as Debian's without python3-venv).
Then:

    ~/tipbox/bin/tipbox open BUNDLE -i IDENTITY --out DIR
    ~/tipbox/bin/tipbox reply DIR --source "amber falcon" --message "..." -o reply.age
    ~/tipbox/bin/tipbox decrypt -i IDENTITY -o item.tar ITEM

Only the air-gapped commands work from this kit (keygen, encrypt, decrypt, open, reply,
fingerprint, codename): the server's dependencies are left out on purpose, and a server command
(status, user, onion, access) says so in one line. `tipbox COMMAND --help` explains each
command with an example; `tipbox --version` names this kit's version.
Install mat2 (apt install mat2, from a Debian mirror or Tails' additional software) to have
`tipbox open` warn about identifying metadata in received files.
"""


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True)  # noqa: S603 - our own pip, fixed arguments


def _pip(*args: str | Path) -> None:
    _run(sys.executable, "-m", "pip", "--disable-pip-version-check", *args)


def _copy_source(target: Path) -> Path:
    """The files the wheel is built from, copied so the build leaves the work tree untouched."""
    src = target / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "app", src / "app", ignore=ignore)
    for name in SOURCE_FILES:
        shutil.copy2(REPO / name, src / name)
    return src


def _pins() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in (*CRYPTO_DEPENDENCIES, "pip")]


def _fetch(wheels: Path, work: Path, platform: str | None, python: str | None) -> None:
    _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", wheels, _copy_source(work))
    target = ["--platform", platform] if platform else []
    target += ["--python-version", python, "--implementation", "cp"] if python else []
    _pip("download", "--quiet", "--only-binary=:all:", "--dest", wheels, *target, *_pins())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _write_lists(kit: Path) -> None:
    """requirements.txt (every wheel but pip's, pinned and hashed) and SHA256SUMS."""
    requirements, sums = [], []
    for wheel in sorted((kit / "wheels").glob("*.whl")):
        match = _WHEEL.fullmatch(wheel.name)
        if match is None:
            raise SystemExit(f"airgap_kit: unexpected file {wheel.name}")
        name, version, digest = match["name"].lower(), match["version"], _sha256(wheel)
        sums.append(f"{digest}  wheels/{wheel.name}\n")
        if name != "pip":
            requirements.append(f"{name}=={version} --hash=sha256:{digest}\n")
    (kit / "requirements.txt").write_text("".join(requirements))
    for name in ("install.sh", "README.txt", "requirements.txt"):
        sums.append(f"{_sha256(kit / name)}  {name}\n")
    (kit / "SHA256SUMS").write_text("".join(sums))


def build(out: Path, platform: str | None = None, python: str | None = None) -> Path:
    """Build the kit into ``out`` (replacing a previous kit there); return ``out``."""
    if out.exists() and not (out / "install.sh").is_file():
        raise SystemExit(f"airgap_kit: {out} exists and is not a kit; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".airgap-kit-") as tmp:
        kit, work = Path(tmp) / "kit", Path(tmp) / "work"
        (kit / "wheels").mkdir(parents=True)
        work.mkdir()
        _fetch(kit / "wheels", work, platform, python)
        (kit / "install.sh").write_text(INSTALL_SH)
        (kit / "install.sh").chmod(0o755)
        (kit / "README.txt").write_text(_readme(_versions(kit)))
        _write_lists(kit)
        if out.exists():
            shutil.rmtree(out)
        os.replace(kit, out)
    return out


def _versions(kit: Path) -> dict[str, str]:
    found = (_WHEEL.fullmatch(w.name) for w in (kit / "wheels").glob("*.whl"))
    return {m["name"].lower(): m["version"] for m in found if m}


def _readme(versions: dict[str, str]) -> str:
    """README.txt, naming every wheel of the kit with its version."""
    others = [f"{n} {v}" for n, v in sorted(versions.items()) if n not in ("tipbox", "pip")]
    return README_TXT.format(
        tipbox=versions.get("tipbox", "?"), versions=", ".join(others), pip=versions.get("pip", "?")
    )


def main() -> None:
    """Parse the command line and build the kit."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "airgap-kit")
    parser.add_argument("--platform", help="wheel platform tag, e.g. manylinux_2_34_x86_64")
    parser.add_argument("--python-version", help="target Python, e.g. 3.11")
    args = parser.parse_args()
    kit = build(args.out, args.platform, args.python_version)
    print(f"air-gapped kit: {kit}")


if __name__ == "__main__":
    main()
