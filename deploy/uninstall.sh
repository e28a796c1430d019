#!/usr/bin/env bash
# `make uninstall`: remove Tipbox from this server. Keeps the data, the configuration and the
# onion keys (so a later `make deploy` comes back at the same addresses) unless PURGE=1.
source "$(dirname "$0")/lib.sh"
need_root uninstall
PURGE="${PURGE:-}"

step "stopping the apps"
systemctl disable --now "${UNITS[@]}" "${DIGEST_UNITS[@]}" || true
for unit in "${UNITS[@]}" "${DIGEST_UNITS[@]}"; do
    rm -rf "${UNIT_DIR:?}/$unit" "${UNIT_DIR:?}/$unit.d"
done
systemctl daemon-reload

step "onion services"
if [[ -x $VENV/bin/tipbox ]] && tipbox onion remove ${PURGE:+--purge}; then
    :
else
    warn "could not tell tor; removing its configuration file only: reload tor (systemctl reload tor)"
    rm -f "$TORRC_DIR/tipbox.conf"
fi
if set_block "$APPARMOR_LOCAL" </dev/null && apparmor_active; then
    apparmor_parser --replace /etc/apparmor.d/system_tor
fi

step "code"
rm -rf "$APP_DIR"
if [[ -L $BIN_LINK ]]; then rm -f "$BIN_LINK"; fi

if [[ $PURGE == 1 ]]; then
    step "data, configuration, onion keys and user (PURGE=1)"
    rm -rf "$DATA" "$ETC" "$TOR_DIR/tipbox-source" "$TOR_DIR/tipbox-journalist"
    if user_exists "$APP_USER"; then userdel ${ROOT:+--prefix "$ROOT"} "$APP_USER"; fi
    printf 'Tipbox is gone, with its data and its onion addresses.\n'
else
    printf 'Tipbox is removed. Kept: %s, %s and the onion keys in %s/tipbox-*\n' "$DATA" "$ETC" "$TOR_DIR"
    printf '(make uninstall PURGE=1 deletes them; the addresses are then lost for good)\n'
fi
