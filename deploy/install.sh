#!/usr/bin/env bash
# `make deploy`: install or update Tipbox on a Debian 12 server, as root. Idempotent: a second
# run changes nothing but the code, and keeps the onion addresses.
#
#   KEYS=DIR    the newsroom's public recipients (default: the repository's keys/)
#   WHEELS=DIR  offline mode, for a server without internet: Python packages come from the
#               wheels in DIR only (pip --no-index --find-links DIR; `bash deploy/rehearse.sh
#               wheelhouse DIR` builds it elsewhere), and apt-get is skipped when every Debian
#               package below is already installed (dpkg-query). Without WHEELS: apt and PyPI.
#   ROOT=DIR    install under DIR instead of / (tests; see deploy/lib.sh)
#
# Steps: swap off or encrypted; Debian packages; the tipbox user; folders; the code and its
# venv (PyPI, or WHEELS); the newsroom keys (public only, checked); daily security updates, an
# optional nightly reboot and the inbound firewall (deploy/harden.sh); tor's configuration
# (include dir, AppArmor rule for the app sockets); the systemd units (the apps, the daily
# retention job, the daily digest); the database migrated (or created) as tipbox; a first load
# of both apps as tipbox; both onion services published; sockets and the retention timer
# started; the daily digest's timer, if a relay is set in tipbox.env. Rehearsed on a real
# Debian 12 by
# `make rehearse` (deploy/rehearse.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/harden.sh"
need_root deploy
KEYS="${KEYS:-$REPO/keys}"

if [[ -r /etc/os-release ]] && ! grep -qx 'VERSION_ID="12"' /etc/os-release; then
    warn "this script is written for Debian 12; check every step on this system"
fi

step "swap: off or encrypted"
check_swap

DEBIAN_PACKAGES=(tor python3 python3-venv ca-certificates gpg "${HARDEN_PACKAGES[@]}")
WHEELS="${WHEELS:-}"
if [[ -n $WHEELS ]]; then
    [[ -d $WHEELS ]] || die "WHEELS=$WHEELS is not a folder of wheels"
    WHEELS="$(cd "$WHEELS" && pwd)"
fi

step "Debian packages: tor, python3, python3-venv, gpg, unattended-upgrades, nftables"
missing=()
if [[ -n $WHEELS ]]; then
    for package in "${DEBIAN_PACKAGES[@]}"; do
        if [[ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" != installed ]]; then
            missing+=("$package")
        fi
    done
fi
if [[ -n $WHEELS && ${#missing[@]} -eq 0 ]]; then
    printf '    all installed; offline mode (WHEELS=%s): apt-get not run\n' "$WHEELS"
else
    apt_failed() {
        [[ -z $WHEELS ]] || die "apt-get $1 failed; offline, install these Debian packages first: ${missing[*]}"
        exit 1
    }
    apt-get update -qq || apt_failed update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        "${DEBIAN_PACKAGES[@]}" >/dev/null || apt_failed install
fi
[[ -f $TORRC ]] || die "$TORRC is missing: is tor installed?"

step "user $APP_USER (never in the $TOR_USER group)"
if ! user_exists "$APP_USER"; then
    useradd --system --user-group --home-dir /var/lib/tipbox --no-create-home \
        --shell /usr/sbin/nologin --comment "Tipbox web apps" ${ROOT:+--prefix "$ROOT"} "$APP_USER"
fi
user_exists "$APP_USER" || die "could not create the user $APP_USER"
if in_group "$APP_USER" "$TOR_USER"; then
    die "$APP_USER is in the $TOR_USER group: remove it (gpasswd -d $APP_USER $TOR_USER); the apps must never reach tor's control port"
fi

step "folders"
install -d -m 0755 "$APP_DIR" "$TORRC_DIR" "$UNIT_DIR" "$(dirname "$BIN_LINK")"
install -d -m 0750 -o 0 -g "$(gid_of "$APP_USER")" "$ETC"
install -d -m 0755 "$KEYS_DIR"
install -d -m 0750 -o 0 -g "$(gid_of "$APP_USER")" "$ETC/digest-keys"
install -d -m 0700 -o "$(uid_of "$APP_USER")" -g "$(gid_of "$APP_USER")" "$DATA"

step "code in $SRC, Python packages in $VENV"
rm -rf "$SRC.new"
install -d -m 0755 "$SRC.new"
tar -C "$REPO" --exclude=__pycache__ --exclude='*.pyc' -cf - app deploy docs pyproject.toml README.md |
    tar -C "$SRC.new" --no-same-owner -xf -
rm -rf "$SRC.old"
if [[ -d $SRC ]]; then mv "$SRC" "$SRC.old"; fi
mv "$SRC.new" "$SRC"
rm -rf "$SRC.old"
if [[ ! -x $VENV/bin/python ]]; then
    "${PYTHON:-python3}" -m venv "$VENV"
fi
pip_options=(--quiet --disable-pip-version-check)
if [[ -n $WHEELS ]]; then
    # Offline: these wheels only (the build of tipbox itself needs setuptools from them too).
    pip_options+=(--no-index --find-links "$WHEELS")
fi
"$VENV/bin/pip" install "${pip_options[@]}" --upgrade "$SRC"
ln -sfn "$VENV/bin/tipbox" "$BIN_LINK"
# The compiled catalogues are not in git: compile them where the app was installed (Babel comes
# with flask-babel), or the portal refuses to start. From /, so that `import app` is the venv's
# copy and not the repository's app/ in the current folder (which `make deploy` runs from).
(cd / && "$VENV/bin/python" -) <<'PY'
from pathlib import Path

import app
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

catalogues = sorted(Path(app.__file__).parent.glob("translations/*/LC_MESSAGES/messages.po"))
for po in catalogues:
    with po.open("rb") as source, po.with_suffix(".mo").open("wb") as compiled:
        write_mo(compiled, read_po(source))
print(f"    {len(catalogues)} translation catalogue(s) compiled in {Path(app.__file__).parent}")
PY

step "newsroom keys from $KEYS (public recipients only)"
check_keys() {
    "$VENV/bin/python" -c '
import sys
from pathlib import Path
from app.errors import TipboxError
from app.server.newsroom import classical_warning, load_recipients
try:
    found = load_recipients(Path(sys.argv[1]))
except TipboxError as exc:
    print(f"tipbox: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"tipbox: hint: {exc.hint}", file=sys.stderr)
    sys.exit(1)
print(f"{len(found)} newsroom recipient(s), no secret key")
warning = classical_warning(found)
if warning:
    print(f"tipbox: warning: {warning}", file=sys.stderr)
' "$1"
}
check_keys "$KEYS" || exit 1
for old in "$KEYS_DIR"/*.pub; do
    [[ -e $old && ! -e $KEYS/$(basename "$old") ]] && rm -f "$old"
done
for pub in "$KEYS"/*.pub; do
    install -m 0644 "$pub" "$KEYS_DIR/"
done
check_keys "$KEYS_DIR" >/dev/null || exit 1
tipbox fingerprint -R "$KEYS_DIR"/*.pub | sed 's/^/    /'

step "configuration in $ENV_FILE"
if [[ ! -f $ENV_FILE ]]; then
    install -m 0640 -o 0 -g "$(gid_of "$APP_USER")" /dev/null "$ENV_FILE"
    cat >"$ENV_FILE" <<'EOF'
# Tipbox settings for both apps (see app/config.py for every variable). Kept across deploys.
TIPBOX_ENV=production
TIPBOX_DATA_DIR=/var/lib/tipbox
TIPBOX_KEYS_DIR=/etc/tipbox/keys
#TIPBOX_NEWSROOM_NAME=Our Newsroom
# The daily digest (README: "The daily digest"): one encrypted email a day per key in
# /etc/tipbox/digest-keys (ADDRESS.asc); off while TIPBOX_DIGEST_RELAY is empty.
#TIPBOX_DIGEST_RELAY=smtp.example.org
#TIPBOX_DIGEST_PORT=587
#TIPBOX_DIGEST_TLS=starttls
#TIPBOX_DIGEST_USER=tipbox@example.org
#TIPBOX_DIGEST_PASSWORD_FILE=/etc/tipbox/digest-password
#TIPBOX_DIGEST_FROM=tipbox@example.org
#TIPBOX_DIGEST_TIME=00:15
# Read by make deploy (deploy/harden.sh): a nightly reboot, and the inbound TCP ports let in
# (Tipbox needs none; 22 is SSH for the admin; empty lets nothing in).
#TIPBOX_REBOOT_AT=04:00
TIPBOX_INBOUND_TCP=22
EOF
fi

step "security updates every day (unattended-upgrades)"
enable_security_updates
schedule_reboot

step "firewall: no inbound connection (nftables)"
enable_firewall

step "tor: include $TORRC_DIR, let tor reach /run/tipbox"
if ! grep -qxF "$INCLUDE" "$TORRC"; then
    printf '\n# Added by Tipbox (make deploy): configuration snippets.\n%s\n' "$INCLUDE" >>"$TORRC"
fi
install -d -m 0755 "$(dirname "$APPARMOR_LOCAL")"
if set_block "$APPARMOR_LOCAL" <"$REPO/deploy/apparmor-system_tor" && apparmor_active; then
    apparmor_parser --replace /etc/apparmor.d/system_tor
fi

step "systemd units"
for unit in "${UNITS[@]}" "${DIGEST_UNITS[@]}" "${JOBS[@]}"; do
    install -m 0644 "$REPO/deploy/$unit" "$UNIT_DIR/$unit"
done
systemctl daemon-reload

# Migrate the database, then load each app once, as the apps' user and with their settings,
# before any socket can start them. The migration (app/db.py) brings an existing database to
# this release's schema, under the data folder's lock (the running apps of the previous release
# wait for it), or creates it on a fresh server; a database made by a newer release stops the
# deploy here, in one sentence, before the new code is started on it. Loading the apps creates
# the secrets, and any broken setting (keys, catalogues) stops the deploy with its message
# instead of a crash loop in the journal. Skipped in a throwaway root (tests), where the user
# does not exist on this system.
HAS_JOURNALIST=
if (cd / && "$VENV/bin/python" -c 'from app.journalist import create_app') 2>/dev/null; then
    HAS_JOURNALIST=1
fi
# The settings are read as systemd reads EnvironmentFile= (KEY=VALUE, optional quotes, #
# comments), not sourced by a shell (a value with spaces would be a command there).
LOAD_SETTINGS='import importlib, os, sys
os.umask(0o077)
for line in open(sys.argv[1], encoding="utf-8"):
    key, sep, value = line.strip().partition("=")
    if sep and key and not key.startswith(("#", ";")):
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in "\"'"'"'":
            value = value[1:-1]
        os.environ[key.strip()] = value
'
MIGRATE='from app.config import load_config
from app.db import DATABASE, LATEST, Database
from app.errors import TipboxError
from app.server.startup import open_database
try:
    database = Database(load_config(os.environ).data_dir / DATABASE)
    applied = open_database(database)
except TipboxError as exc:
    hint = f"\ntipbox: hint: {exc.hint}" if exc.hint else ""
    sys.exit(f"tipbox: error: {exc.message}{hint}")
print(f"    {database.path}: schema version {LATEST} ({applied} migration(s) applied)")
'
as_app_user() { # PYTHON-CODE [ARGUMENT]: run with the apps' settings, as their user, from /
    (cd / && runuser -u "$APP_USER" -- env -i PATH=/usr/bin:/bin HOME="$DATA" \
        "$VENV/bin/python" -c "$LOAD_SETTINGS$1" "$ENV_FILE" "${@:2}")
}
# How many migrations this release would apply to the existing database (0 if there is none
# yet), read without writing: the file opened read-only, as its owner (its -shm stays theirs).
PENDING='from app.db import DATABASE, LATEST
path = os.path.join(sys.argv[2], DATABASE)
found = 0
if os.path.exists(path):
    import sqlite3
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    found = LATEST - min(LATEST, db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
print(found)
'
pending_migrations() {
    if [[ -n $ROOT ]]; then # a throwaway root: no such user here, the test's own files
        "$VENV/bin/python" -c "import os, sys
$PENDING" "$ENV_FILE" "$DATA"
    else
        as_app_user "$PENDING" "$DATA"
    fi
}
# Before a migration changes an existing database, a backup of the whole instance as it was
# (make backup: encrypted to the newsroom's recipients), so an upgrade that goes wrong can be
# undone with make restore. Only the newest such backup is kept: older ones are superseded.
pending=0
if [[ -f $DATA/store.sqlite3 ]]; then
    pending="$(pending_migrations)" || die "cannot read the schema version of $DATA/store.sqlite3"
fi
if ((pending > 0)); then
    step "backup before the database is migrated ($pending migration(s) to apply)"
    before="$ROOT/var/backups/tipbox/before-upgrade-$(date -u +%Y%m%dT%H%M%SZ).tar.age"
    OUT="$before" bash "$REPO/deploy/backup.sh" | sed 's/^/    /'
    [[ -s $before ]] || die "the backup before the migration was not written: nothing was changed"
    find "$ROOT/var/backups/tipbox" -maxdepth 1 -name 'before-upgrade-*.tar.age' ! -path "$before" -delete
fi
if [[ -z $ROOT ]]; then
    step "database: migrated to this release's schema, as $APP_USER"
    as_app_user "$MIGRATE" || die "the database was not migrated (the reason is above)"
    step "first load of the apps as $APP_USER (secrets in $DATA)"
    for module in app.source ${HAS_JOURNALIST:+app.journalist}; do
        as_app_user 'importlib.import_module(sys.argv[2]).create_app()' "$module" ||
            die "the $module app does not start with $ENV_FILE (its error is above)"
    done
fi

step "onion services"
systemctl enable --now tor.service
tipbox onion publish --wait 60

step "apps"
systemctl enable --now tipbox-source.socket
if [[ -n $HAS_JOURNALIST ]]; then
    systemctl enable --now tipbox-journalist.socket
else
    warn "this version has no journalist app yet: its onion service is published, nothing answers"
fi
systemctl try-restart tipbox-source.service tipbox-journalist.service
# Retention (off until TIPBOX_RETENTION_DAYS is set): the timer runs either way, and says so.
systemctl enable --now tipbox-retention.timer

step "daily digest"
# Drop-ins from tipbox.env: the relay's addresses (the digest may reach nothing else), the time.
tipbox digest units --out "$UNIT_DIR" | sed 's/^/    /'
systemctl daemon-reload
if [[ -f $UNIT_DIR/tipbox-digest.timer.d/time.conf ]]; then
    systemctl enable --now tipbox-digest.timer
    systemctl restart tipbox-digest.timer
    printf '    timer on; send a test now: sudo tipbox digest send --test\n'
else
    systemctl disable --now tipbox-digest.timer
fi

printf '\nTipbox is installed.\n\n'
tipbox onion addresses | sed 's/^/    /'
cat <<EOF

Next steps:
  1. Publish the source address where sources will find it (your website, print), and
     check the key fingerprint above against the air-gapped machine's.
  2. Give each journalist a key:  sudo tipbox access add NAME
  3. Check everything:            sudo make status
  4. Back up (database, onion keys, config), and keep the file off this server:
                                  sudo make backup
EOF
