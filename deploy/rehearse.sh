#!/usr/bin/env bash
# `make rehearse`: run `make deploy` and the other admin targets for real, on a fresh Debian 12
# booted in qemu with systemd, AppArmor and no network at all. Root on a Debian or Ubuntu host.
#
#   bash deploy/rehearse.sh                   the whole rehearsal (what `make rehearse` runs)
#   bash deploy/rehearse.sh wheelhouse DIR    only build a wheelhouse for `make deploy WHEELS=DIR`
#
#   WORK=DIR      caches and results (default /var/tmp/tipbox-rehearsal; never inside the repo)
#   MIRROR=URL    Debian mirror for debootstrap (default http://deb.debian.org/debian)
#   TIMEOUT=SEC   the VM's whole run, after which qemu is killed (default 3600)
#   ACCEL=X       auto (default: KVM if a probe boots, else TCG), kvm or tcg
#   MEMORY=MIB    the VM's memory (default 2048); CPUS=N (default 2)
#   REBUILD=1     build the Debian root and the wheelhouse again even if cached
#   STEPS="…"     run only these steps of deploy/rehearse-guest.sh (debugging; most need deploy)
#   PYTHON=CMD    the host's Python 3.11, to build the wheelhouse (default python3)
#   PREVIOUS=REV  the previous release the upgrade step deploys first (default 9ea2f0a, the last
#                 commit before the database had a schema version; tests/releases has its data)
#
# Host steps: (1) a Debian 12 root with debootstrap, holding what `make deploy` needs from Debian
# (tor, python3, python3-venv, make…) plus a kernel, cached in WORK/root; (2) its ext4 image
# (WORK/base.img; each run writes to a throwaway qcow2 overlay); (3) a wheelhouse of every
# Python package for CPython 3.11 x86_64 (WORK/wheels), for this code and the previous release;
# (4) a second disk holding the repository's files (tracked and untracked-not-ignored, as in the
# working tree), the previous release's files (`git archive PREVIOUS`: the same tree as a `git
# worktree` of it, without a worktree to clean up), the wheels and a throwaway newsroom key
# pair made for this run; (5) qemu boots with `-nic none` (KVM, or
# TCG where KVM does not work): a oneshot unit in the guest mounts that disk, runs
# deploy/rehearse-guest.sh (the steps and their checks are listed there), writes its log to the
# disk and powers off; (6) the log is read back from the disk image (debugfs) and printed.
# Exit 0 only if every step passed. docs/deploy.md ("How this was verified") has the results.
set -euo pipefail
umask 022

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${WORK:-/var/tmp/tipbox-rehearsal}"
WORK="${WORK%/}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
TIMEOUT="${TIMEOUT:-3600}"
MEMORY="${MEMORY:-2048}"
CPUS="${CPUS:-2}"
REBUILD="${REBUILD:-}"
PYTHON="${PYTHON:-python3}"
PREVIOUS="${PREVIOUS:-9ea2f0a}"
SUITE=bookworm
# What `make deploy` needs from Debian (deploy/install.sh: tor python3 python3-venv
# ca-certificates gpg unattended-upgrades nftables), what the admin needs to run it (make), what
# the rehearsal itself uses (curl, apparmor's aa-exec), and a bootable system (kernel, initramfs,
# systemd as PID 1, udev, dbus). Debian installs AppArmor by default since Debian 10, so it is
# here and enforcing. gpg-agent is for the digest step's journalist (her key pair, to read the
# digest); the server's side of the digest encrypts without an agent (app/server/openpgp.py).
PACKAGES=(tor python3 python3-venv ca-certificates gpg gpg-agent unattended-upgrades nftables make curl apparmor
    linux-image-amd64 initramfs-tools systemd systemd-sysv udev dbus kmod procps iproute2 less)
ROOT_STAMP="$SUITE ${PACKAGES[*]} v1"

say() { printf '\n=== %s\n' "$*"; }
die() {
    printf 'rehearse: error: %s\n' "$*" >&2
    exit 1
}
[[ $WORK == "$REPO" || $WORK == "$REPO"/* ]] && die "WORK=$WORK is inside the repository"

# --- The wheelhouse -------------------------------------------------------------------------

# pip on this host, used only to fetch and build wheels (never to install them here), from
# PyPI alone: this host's pip configuration (extra indexes, find-links, constraints) is ignored.
host_pip() {
    local venv="$WORK/pip-venv"
    if [[ ! -x $venv/bin/pip ]]; then
        "$PYTHON" -m venv "$venv" || die "$PYTHON -m venv failed: apt-get install python3-venv"
    fi
    env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
        -u PIP_REQUIREMENT PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/pip" "$@"
}

# Every wheel `pip install --no-index` needs for the project on Debian 12's CPython 3.11
# (x86_64, glibc 2.36): the runtime dependencies from pyproject.toml and the build backend
# (setuptools: pip builds tipbox itself from the source on the server). `pip wheel` resolves
# them with this host's Python 3.11 and builds the packages PyPI has only as source (stem, pure
# Python); a binary wheel made for a newer glibc than Debian 12's is fetched again for
# manylinux <= 2.36.
build_wheelhouse() { # DIR [PYPROJECT…]: this code's packages, and those of other pyproject.toml
    local dir="$1" requirements line name version platforms=()
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
        die "the wheelhouse is built with Python 3.11, as on Debian 12: set PYTHON=python3.11"
    requirements="$("$PYTHON" - "$REPO/pyproject.toml" "${@:2}" <<'PY'
import sys, tomllib
found = {}
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    found.update(dict.fromkeys([*data["build-system"]["requires"], *data["project"]["dependencies"]]))
print("\n".join(found))
PY
)"
    for minor in $(seq 17 36); do
        platforms+=(--platform "manylinux_2_${minor}_x86_64")
    done
    platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    mapfile -t requirements <<<"$requirements"
    host_pip wheel --quiet --wheel-dir "$dir.tmp" "${requirements[@]}"
    # Wheels whose platform tag Debian 12 cannot take: NAME VERSION per line.
    while read -r line; do
        [[ -n $line ]] || continue
        read -r name version file <<<"$line"
        printf 'fetching %s %s for manylinux <= 2.36 instead of %s\n' "$name" "$version" "$file"
        rm -f "$dir.tmp/$file"
        host_pip download --quiet --no-deps --only-binary=:all: --dest "$dir.tmp" \
            --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
            "${platforms[@]}" "$name==$version"
    done < <("$PYTHON" - "$dir.tmp" <<'PY'
import pathlib, re, sys
ok = re.compile(r"any|manylinux1_x86_64|manylinux2010_x86_64|manylinux2014_x86_64|manylinux_2_(\d+)_x86_64")
for wheel in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    name, version, *_, platform = wheel.stem.split("-")
    tags = [ok.fullmatch(tag) for tag in platform.split(".")]
    if not any(m and (m.group(1) is None or int(m.group(1)) <= 36) for m in tags):
        print(name, version, wheel.name)
PY
)
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    printf 'wheelhouse %s: %s wheels\n' "$dir" "$(find "$dir" -name '*.whl' | wc -l)"
}

if [[ ${1:-} == wheelhouse ]]; then
    [[ -n ${2:-} ]] || die "usage: bash deploy/rehearse.sh wheelhouse DIR"
    mkdir -p "$WORK"
    build_wheelhouse "$2"
    exit 0
fi
[[ $# -eq 0 ]] || die "usage: bash deploy/rehearse.sh [wheelhouse DIR]"

# --- Checks ---------------------------------------------------------------------------------

[[ $EUID -eq 0 ]] || die "run this as root (debootstrap, image ownership): sudo make rehearse"
for tool in debootstrap qemu-system-x86_64 qemu-img mkfs.ext4 debugfs python3 git timeout; do
    command -v "$tool" >/dev/null ||
        die "$tool is missing: apt-get install debootstrap qemu-system-x86 qemu-utils e2fsprogs python3-venv git"
done
mkdir -p "$WORK"
START=$SECONDS
declare -A TOOK

# --- (1) The Debian 12 root -----------------------------------------------------------------

# Refuse to delete a root that still has something mounted in it (an interrupted debootstrap
# can leave its /proc or /sys mounted).
remove_root() { # DIR
    if grep -qF " $1/" /proc/mounts; then
        die "something is still mounted under $1 (see /proc/mounts): unmount it, then run again"
    fi
    rm -rf "$1"
}

build_root() {
    local root="$WORK/root.tmp" include
    remove_root "$root"
    include="$(
        IFS=,
        echo "${PACKAGES[*]}"
    )"
    debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$MIRROR" \
        >"$WORK/debootstrap.log" 2>&1 || die "debootstrap failed: see $WORK/debootstrap.log"
    ls "$root"/boot/vmlinuz-* "$root"/boot/initrd.img-* >/dev/null 2>&1 ||
        die "no kernel or initramfs in $root/boot: see $WORK/debootstrap.log"
    echo tipbox-rehearsal >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\ttipbox-rehearsal\n::1\tlocalhost ip6-localhost ip6-loopback\n' \
        >"$root/etc/hosts"
    printf '/dev/vda\t/\text4\terrors=remount-ro\t0\t1\n' >"$root/etc/fstab"
    rm -f "$root/etc/machine-id" "$root/var/lib/dbus/machine-id"
    : >"$root/etc/machine-id"
    # The rehearsal itself: mounts the second disk, runs the guest script from it, powers off.
    mkdir -p "$root/mnt/rehearsal"
    cat >"$root/etc/systemd/system/tipbox-rehearsal.service" <<'EOF'
[Unit]
Description=Tipbox deploy rehearsal (deploy/rehearse-guest.sh on /dev/vdb)
After=basic.target systemd-user-sessions.service
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStart=/bin/mount -o noatime /dev/vdb /mnt/rehearsal
ExecStart=/bin/bash /mnt/rehearsal/repo/deploy/rehearse-guest.sh /mnt/rehearsal
ExecStopPost=-/bin/umount /mnt/rehearsal
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=60min

[Install]
WantedBy=multi-user.target
EOF
    ln -sf /etc/systemd/system/tipbox-rehearsal.service \
        "$root/etc/systemd/system/multi-user.target.wants/tipbox-rehearsal.service"
    remove_root "$WORK/root"
    mv "$root" "$WORK/root"
    rm -f "$WORK/base.img"
    echo "$ROOT_STAMP" >"$WORK/root.stamp"
}

say "(1) Debian 12 root in $WORK/root"
t=$SECONDS
if [[ -z $REBUILD && -d $WORK/root && "$(cat "$WORK/root.stamp" 2>/dev/null)" == "$ROOT_STAMP" ]]; then
    echo "cached"
else
    build_root
fi
TOOK[root]=$((SECONDS - t))

say "(2) its disk image $WORK/base.img"
t=$SECONDS
# 8 GiB (sparse): the installed system takes about 1.5 GiB, and the apps refuse submissions while
# less than TIPBOX_FREE_SPACE_RESERVE is free (by default the largest submission, 2 GiB, + 64 MiB).
IMAGE_SIZE=$((8 * 1024 * 1024 * 1024))
if [[ -f $WORK/base.img && $WORK/base.img -nt $WORK/root.stamp &&
      "$(stat -c %s "$WORK/base.img")" -ge $IMAGE_SIZE ]]; then
    echo "cached"
else
    rm -f "$WORK/base.img.tmp"
    truncate -s "$IMAGE_SIZE" "$WORK/base.img.tmp"
    mkfs.ext4 -q -F -L tipbox-root -d "$WORK/root" "$WORK/base.img.tmp"
    mv "$WORK/base.img.tmp" "$WORK/base.img"
fi
TOOK[image]=$((SECONDS - t))

# --- (3) The wheelhouse ---------------------------------------------------------------------

say "(3) wheelhouse $WORK/wheels (this code and the previous release, $PREVIOUS)"
t=$SECONDS
git -C "$REPO" show "$PREVIOUS:pyproject.toml" >"$WORK/previous-pyproject.toml" ||
    die "PREVIOUS=$PREVIOUS: no such commit in this repository (or it has no pyproject.toml)"
wheel_stamp="$(cat "$REPO/pyproject.toml" "$WORK/previous-pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ -z $REBUILD && -d $WORK/wheels && "$(cat "$WORK/wheels.stamp" 2>/dev/null)" == "$wheel_stamp" ]]; then
    echo "cached"
else
    build_wheelhouse "$WORK/wheels" "$WORK/previous-pyproject.toml"
    echo "$wheel_stamp" >"$WORK/wheels.stamp"
fi
TOOK[wheels]=$((SECONDS - t))

# --- (4) This run's disks -------------------------------------------------------------------

RUN="$WORK/run-$(date -u +%Y%m%dT%H%M%SZ)"
trap 'rm -f "$RUN/root.qcow2"' EXIT # the guest's throwaway disk (the payload disk stays)
say "(4) this run's disks in $RUN"
t=$SECONDS
mkdir -p "$RUN/payload/repo" "$RUN/payload/previous" "$RUN/payload/results"
# The repository as the working tree has it: tracked files (with uncommitted changes) and new
# files not ignored; nothing ignored (.venv, data/, caches) and no .git.
(
    cd "$REPO"
    git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' file; do
            [[ -e $file ]] && printf '%s\0' "$file"
        done |
        tar --null -T - -cf -
) | tar -C "$RUN/payload/repo" -xf -
# The previous release, for the upgrade step: its committed tree, and its name.
git -C "$REPO" archive --format=tar "$PREVIOUS" | tar -C "$RUN/payload/previous" -xf -
git -C "$REPO" rev-parse --short "$PREVIOUS^{commit}" >"$RUN/payload/previous/RELEASE"
cp -a "$WORK/wheels" "$RUN/payload/wheels"
# A throwaway newsroom key for this run (the identity too: the guest decrypts the backup and
# restores it), made by tipbox installed from the wheelhouse into a scratch venv here.
rm -rf "$WORK/keygen-venv"
"$PYTHON" -m venv "$WORK/keygen-venv"
PIP_CONFIG_FILE=/dev/null "$WORK/keygen-venv/bin/pip" install --quiet --disable-pip-version-check \
    --no-index --find-links "$WORK/wheels" "$RUN/payload/repo"
mkdir -p "$RUN/payload/keys"
"$WORK/keygen-venv/bin/tipbox" keygen --no-passphrase --identity "$RUN/payload/identity.age" \
    --recipient "$RUN/payload/keys/newsroom.pub" >/dev/null
# The upgrade step's newsroom key is classical (X25519): the previous release reads no other kind,
# and the rotation step then moves the newsroom to a post-quantum key, as a real one would.
mkdir -p "$RUN/payload/keys-classic"
"$WORK/keygen-venv/bin/tipbox" keygen --classic --no-passphrase --identity "$RUN/payload/identity-classic.age" \
    --recipient "$RUN/payload/keys-classic/newsroom.pub" >/dev/null
rm -rf "$WORK/keygen-venv"
# STEPS="deploy pages …": only these guest steps (deploy/rehearse-guest.sh), to debug one.
if [[ -n ${STEPS:-} ]]; then echo "$STEPS" >"$RUN/payload/steps"; fi
rm -f "$RUN/payload.img"
truncate -s 1G "$RUN/payload.img"
mkfs.ext4 -q -F -L tipbox-payload -d "$RUN/payload" "$RUN/payload.img"
qemu-img create -q -f qcow2 -F raw -b "$WORK/base.img" "$RUN/root.qcow2"
TOOK[disks]=$((SECONDS - t))

# --- (5) Boot -------------------------------------------------------------------------------

kernel="$(find "$WORK/root/boot" -name 'vmlinuz-*' | sort -V | tail -n 1)"
initrd="$(find "$WORK/root/boot" -name 'initrd.img-*' | sort -V | tail -n 1)"
# KVM if it really works here: a kernel booted without a root must print its banner (and then
# panic and exit) within 60 s; some hosts have a /dev/kvm whose guests hang or abort. Otherwise
# TCG (emulation: several times slower, but the same guest).
kvm_works() {
    [[ -r /dev/kvm && -w /dev/kvm ]] || return 1
    rm -f "$RUN/kvm-probe.log"
    (timeout --kill-after=5 60 qemu-system-x86_64 -accel kvm -cpu host -machine q35 -m 256 \
        -nic none -display none -no-reboot -monitor none -serial "file:$RUN/kvm-probe.log" \
        -kernel "$kernel" -append "console=ttyS0 panic=-1" </dev/null || true) >/dev/null 2>&1
    grep -q 'Linux version' "$RUN/kvm-probe.log" 2>/dev/null
}
say "(5) booting Debian 12 in qemu (no network; at most ${TIMEOUT}s; console: $RUN/console.log)"
case "${ACCEL:-auto}" in
kvm) accel=(-accel kvm -cpu host) ;;
tcg) accel=(-accel tcg -cpu max) ;;
auto)
    if kvm_works; then
        accel=(-accel kvm -cpu host)
    else
        echo "KVM is not usable on this host (see $RUN/kvm-probe.log): emulating with TCG"
        accel=(-accel tcg -cpu max)
    fi
    ;;
*) die "ACCEL must be auto, kvm or tcg" ;;
esac
t=$SECONDS
qemu_status=0
timeout --kill-after=15 "$TIMEOUT" qemu-system-x86_64 "${accel[@]}" \
    -machine q35 -m "$MEMORY" -smp "$CPUS" \
    -nic none -display none -no-reboot -monitor none -serial "file:$RUN/console.log" \
    -kernel "$kernel" -initrd "$initrd" \
    -append "root=/dev/vda rw console=ttyS0 panic=-1 systemd.show_status=0" \
    -drive "file=$RUN/root.qcow2,if=virtio,format=qcow2" \
    -drive "file=$RUN/payload.img,if=virtio,format=raw" \
    -device virtio-rng-pci \
    </dev/null || qemu_status=$?
TOOK[vm]=$((SECONDS - t))
if [[ $qemu_status -eq 124 || $qemu_status -eq 137 ]]; then
    printf 'rehearse: the VM ran over %ss and was killed; the console says:\n' "$TIMEOUT" >&2
    tail -n 40 "$RUN/console.log" >&2 || true
elif [[ $qemu_status -ne 0 ]]; then
    printf 'rehearse: qemu exited with status %s; the console says:\n' "$qemu_status" >&2
    tail -n 40 "$RUN/console.log" >&2 || true
fi

# --- (6) Results ----------------------------------------------------------------------------

say "(6) results"
rm -rf "$RUN/results"
debugfs -R "rdump /results $RUN" "$RUN/payload.img" >/dev/null 2>&1 || true
if [[ ! -f $RUN/results/rehearsal.log ]]; then
    tail -n 60 "$RUN/console.log" >&2 || true
    die "the guest wrote no log; the console is in $RUN/console.log"
fi
cat "$RUN/results/rehearsal.log"
printf '\nhost: root %ss, image %ss, wheelhouse %ss, disks %ss, VM (boot, rehearsal, poweroff) %ss; total %ss\n' \
    "${TOOK[root]}" "${TOOK[image]}" "${TOOK[wheels]}" "${TOOK[disks]}" "${TOOK[vm]}" "$((SECONDS - START))"
printf 'logs: %s/results/ (every step'"'"'s output), %s/console.log\n' "$RUN" "$RUN"
if [[ $qemu_status -eq 0 ]] && grep -qx 'REHEARSAL PASSED' "$RUN/results/rehearsal.log"; then
    echo "rehearsal passed"
    exit 0
fi
echo "rehearsal FAILED"
exit 1
