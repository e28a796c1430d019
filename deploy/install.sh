#!/usr/bin/env bash
# `make deploy`: install or update Tipbox on a Debian 12 server, as root. Idempotent: a second
# run changes nothing but the code, and keeps the onion addresses.
#
#   KEYS=DIR    the newsroom's public recipients (default: the repository's keys/)
#   ROOT=DIR    install under DIR instead of / (tests; see deploy/lib.sh)
#
# Steps: Debian packages; the tipbox user; folders; the code and its venv (PyPI); the
# newsroom keys (public only, checked); tor's configuration (include dir, AppArmor rule for the
# app sockets); the systemd units; both onion services published; sockets started.
source "$(dirname "$0")/lib.sh"
need_root deploy
KEYS="${KEYS:-$REPO/keys}"

if [[ -r /etc/os-release ]] && ! grep -qx 'VERSION_ID="12"' /etc/os-release; then
    warn "this script is written for Debian 12; check every step on this system"
fi

step "Debian packages: tor, python3, python3-venv"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    tor python3 python3-venv ca-certificates >/dev/null
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
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade "$SRC"
ln -sfn "$VENV/bin/tipbox" "$BIN_LINK"
# The compiled catalogues are not in git: compile them where the app was installed (Babel comes
# with flask-babel), or the portal refuses to start.
"$VENV/bin/python" - <<'PY'
from pathlib import Path

import app
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

for po in Path(app.__file__).parent.glob("translations/*/LC_MESSAGES/messages.po"):
    with po.open("rb") as source, po.with_suffix(".mo").open("wb") as compiled:
        write_mo(compiled, read_po(source))
PY

step "newsroom keys from $KEYS (public recipients only)"
check_keys() {
    "$VENV/bin/python" -c '
import sys
from pathlib import Path
from app.errors import TipboxError
from app.keys import load_recipients
try:
    found = load_recipients(Path(sys.argv[1]))
except TipboxError as exc:
    print(f"tipbox: error: {exc.message}", file=sys.stderr)
    if exc.hint:
        print(f"tipbox: hint: {exc.hint}", file=sys.stderr)
    sys.exit(1)
print(f"{len(found)} newsroom recipient(s), no secret key")
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
EOF
fi

step "tor: include $TORRC_DIR, let tor reach /run/tipbox"
if ! grep -qxF "$INCLUDE" "$TORRC"; then
    printf '\n# Added by Tipbox (make deploy): configuration snippets.\n%s\n' "$INCLUDE" >>"$TORRC"
fi
install -d -m 0755 "$(dirname "$APPARMOR_LOCAL")"
if set_block "$APPARMOR_LOCAL" <"$REPO/deploy/apparmor-system_tor" && apparmor_active; then
    apparmor_parser --replace /etc/apparmor.d/system_tor
fi

step "systemd units"
for unit in "${UNITS[@]}"; do
    install -m 0644 "$REPO/deploy/$unit" "$UNIT_DIR/$unit"
done
systemctl daemon-reload

step "onion services"
systemctl enable --now tor.service
tipbox onion publish --wait 60

step "apps"
systemctl enable --now tipbox-source.socket
if "$VENV/bin/python" -c 'from app.journalist import create_app' 2>/dev/null; then
    systemctl enable --now tipbox-journalist.socket
else
    warn "this version has no journalist app yet: its onion service is published, nothing answers"
fi
systemctl try-restart tipbox-source.service tipbox-journalist.service

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
