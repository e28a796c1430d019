# Shared by deploy/*.sh (sourced, not run): the server's paths and small helpers.
#
# Every path is under $ROOT, which is empty on a real server. Tests set ROOT to a throwaway
# folder and put stubs for apt-get, systemctl, useradd, userdel and python3 first on PATH:
# those commands act on the running system, not on $ROOT (see docs/deploy.md).
# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this

set -euo pipefail
umask 022

ROOT="${ROOT:-}"
ROOT="${ROOT%/}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APP_USER=tipbox
TOR_USER=debian-tor
APP_DIR="$ROOT/opt/tipbox"
SRC="$APP_DIR/src"
VENV="$APP_DIR/venv"
ETC="$ROOT/etc/tipbox"
KEYS_DIR="$ETC/keys"
ENV_FILE="$ETC/tipbox.env"
DATA="$ROOT/var/lib/tipbox"
TOR_DIR="$ROOT/var/lib/tor"
TORRC="$ROOT/etc/tor/torrc"
TORRC_DIR="$ROOT/etc/tor/torrc.d"
INCLUDE="%include $TORRC_DIR/*.conf"
UNIT_DIR="$ROOT/etc/systemd/system"
APPARMOR_LOCAL="$ROOT/etc/apparmor.d/local/system_tor"
BIN_LINK="$ROOT/usr/local/bin/tipbox"
SOCKETS=(tipbox-source.socket tipbox-journalist.socket)
UNITS=(tipbox-source.socket tipbox-source.service tipbox-journalist.socket tipbox-journalist.service)
# The daily digest (app/server/digest.py): on only when TIPBOX_DIGEST_RELAY is set.
DIGEST_UNITS=(tipbox-digest.timer tipbox-digest.service)
# What a backup holds, relative to $ROOT: configuration, database and items, onion keys.
BACKUP_PATHS=(etc/tipbox var/lib/tipbox var/lib/tor/tipbox-source var/lib/tor/tipbox-journalist)
MARK_BEGIN="# BEGIN tipbox (managed by make deploy)"
MARK_END="# END tipbox"
export TIPBOX_ROOT="${ROOT:-/}"

step() { printf '==> %s\n' "$*"; }
warn() { printf 'tipbox: warning: %s\n' "$*" >&2; }
die() {
    printf 'tipbox: error: %s\n' "$*" >&2
    exit 1
}
need_root() { [[ $EUID -eq 0 ]] || die "run this as root: sudo make $1"; }
tipbox() { "$VENV/bin/tipbox" "$@"; }

# Users and groups: from $ROOT/etc when ROOT is set, from the system's databases otherwise.
passwd_field() { # NAME FIELD
    if [[ -n $ROOT ]]; then
        awk -F: -v n="$1" -v f="$2" '$1 == n { print $f }' "$ROOT/etc/passwd" 2>/dev/null || true
    else
        getent passwd "$1" | cut -d: -f"$2" || true
    fi
}
group_field() { # NAME FIELD
    if [[ -n $ROOT ]]; then
        awk -F: -v n="$1" -v f="$2" '$1 == n { print $f }' "$ROOT/etc/group" 2>/dev/null || true
    else
        getent group "$1" | cut -d: -f"$2" || true
    fi
}
user_exists() { [[ -n "$(passwd_field "$1" 1)" ]]; }
uid_of() { passwd_field "$1" 3; }
gid_of() { passwd_field "$1" 4; }
# Whether USER is in GROUP, as its primary group or as a member.
in_group() { # USER GROUP
    local gid members
    gid="$(group_field "$2" 3)"
    [[ -n $gid ]] || return 1
    [[ "$(gid_of "$1")" == "$gid" ]] && return 0
    members="$(group_field "$2" 4)"
    [[ ",$members," == *",$1,"* ]]
}

# Replace the block between our markers in FILE with STDIN (an empty STDIN removes it).
set_block() { # FILE
    local file="$1" body tmp
    body="$(cat)"
    tmp="$(mktemp "$file.XXXXXX")"
    if [[ -f $file ]]; then
        awk -v b="$MARK_BEGIN" -v e="$MARK_END" '$0 == b { skip = 1 } !skip { print } $0 == e { skip = 0 }' "$file" >"$tmp"
        chmod --reference="$file" "$tmp"
    else
        chmod 0644 "$tmp"
    fi
    if [[ -n $body ]]; then
        printf '%s\n%s\n%s\n' "$MARK_BEGIN" "$body" "$MARK_END" >>"$tmp"
    fi
    if [[ -f $file ]] && cmp -s "$tmp" "$file"; then
        rm -f "$tmp"
        return 1 # unchanged
    fi
    mv "$tmp" "$file"
}

# Whether this machine enforces AppArmor (and this is the real root, not a test's).
apparmor_active() {
    [[ -z $ROOT && -e /sys/kernel/security/apparmor/profiles ]] && command -v apparmor_parser >/dev/null
}
