# Staying patched, and closed (sourced by install.sh and uninstall.sh after lib.sh): security
# updates every day, an optional nightly reboot, a default-deny inbound firewall, and the swap
# check.
#
# Settings, read from tipbox.env the way systemd reads it (the apps ignore them):
#   TIPBOX_REBOOT_AT=HH:MM         reboot every night at this hour (server time), as SecureDrop
#                                  does, so updated kernels and libraries are the ones running
#                                  (and memory is wiped); unset: no reboot.
#   TIPBOX_INBOUND_TCP="22"        inbound TCP ports the firewall lets in. Tipbox needs none
#                                  (tor only dials out); 22 is the administrator's SSH, and is
#                                  the default when the line is absent so that a deploy over SSH
#                                  never locks its own admin out. Empty: nothing comes in.
# shellcheck shell=bash disable=SC2034  # the variables are for the scripts that source this

APT_CONF="$ROOT/etc/apt/apt.conf.d/52tipbox-security-updates"
NFT_RULES="$ROOT/etc/nftables.d/tipbox.nft"
NFT_CONF="$ROOT/etc/nftables.conf"
REBOOT_UNITS=(tipbox-reboot.timer tipbox-reboot.service)
HARDEN_PACKAGES=(unattended-upgrades nftables)

# The value of NAME in tipbox.env (last one wins, quotes removed), or DEFAULT when it is absent.
setting() { # NAME DEFAULT
    local line value="$2"
    if [[ -f $ENV_FILE ]]; then
        while IFS= read -r line || [[ -n $line ]]; do
            line="${line#"${line%%[![:space:]]*}"}"
            [[ $line == "$1="* ]] || continue
            value="${line#*=}"
            if [[ ${#value} -gt 1 && ${value:0:1} == "${value: -1}" && ${value:0:1} == [\"\'] ]]; then
                value="${value:1:${#value}-2}"
            fi
        done <"$ENV_FILE"
    fi
    printf '%s' "$value"
}

# Whether the block device NAME (dm-0, sda2…) is encrypted: dm-crypt itself, or only ever built
# on dm-crypt (LVM on LUKS), or RAM (zram).
encrypted_device() { # NAME
    local name="$1" block="$ROOT/sys/block/$1" uuid slave found=
    [[ $name == zram* ]] && return 0
    uuid="$(cat "$block/dm/uuid" 2>/dev/null || true)"
    [[ $uuid == CRYPT-* ]] && return 0
    for slave in "$block"/slaves/*; do
        [[ -e $slave ]] || continue
        encrypted_device "$(basename "$slave")" || return 1
        found=1
    done
    [[ -n $found ]]
}

# The kernel name (dm-0, sda2) of the block device a swap area lives on.
swap_device() { # FILENAME TYPE
    local source="$1"
    if [[ $2 == file ]]; then
        source="$(df --output=source "$ROOT$1" 2>/dev/null | tail -n 1)"
        source="${source#"$ROOT"}"
    fi
    basename "$(readlink -f "$ROOT$source")"
}

# Swap holds whatever memory the kernel pushed out, plaintext included, for as long as the disk
# keeps it: refuse to install while any swap area is on an unencrypted disk.
check_swap() {
    local swaps="$ROOT/proc/swaps" filename type bad=()
    [[ -r $swaps ]] || return 0
    while read -r filename type _; do
        [[ $filename == Filename ]] && continue
        encrypted_device "$(swap_device "$filename" "$type")" || bad+=("$filename")
    done <"$swaps"
    ((${#bad[@]} == 0)) && return 0
    printf 'tipbox: error: swap is on and not encrypted: %s\n' "${bad[*]}" >&2
    printf 'tipbox: hint: turn it off (swapoff -a, and remove it from /etc/fstab), or encrypt it with a random key at each boot (crypttab: "cryptswap DEVICE /dev/urandom swap")\n' >&2
    exit 1
}

# Debian's unattended-upgrades, every day, security updates only.
enable_security_updates() {
    install -d -m 0755 "$(dirname "$APT_CONF")"
    cat >"$APT_CONF" <<'EOF'
// Written by Tipbox (make deploy; removed by make uninstall): security updates every day.
APT::Periodic::Update-Package-Lists "1";
APT::Periodic::Unattended-Upgrade "1";
APT::Periodic::AutocleanInterval "7";
Unattended-Upgrade::Origins-Pattern {
    "origin=Debian,codename=${distro_codename}-security,label=Debian-Security";
};
Unattended-Upgrade::Automatic-Reboot "false";
EOF
    chmod 0644 "$APT_CONF"
    systemctl enable --now apt-daily.timer apt-daily-upgrade.timer
}

# A nightly reboot at TIPBOX_REBOOT_AT, or none.
schedule_reboot() {
    local at
    at="$(setting TIPBOX_REBOOT_AT "")"
    if [[ -z $at ]]; then
        if [[ -e $UNIT_DIR/tipbox-reboot.timer ]]; then
            systemctl disable --now tipbox-reboot.timer || true
            rm -f "$UNIT_DIR/tipbox-reboot.timer" "$UNIT_DIR/tipbox-reboot.service"
            systemctl daemon-reload
        fi
        printf '    no nightly reboot (set TIPBOX_REBOOT_AT=HH:MM in %s for one)\n' "$ENV_FILE"
        return 0
    fi
    [[ $at =~ ^([01][0-9]|2[0-3]):[0-5][0-9]$ ]] || die "TIPBOX_REBOOT_AT=$at is not an hour such as 04:00"
    printf '[Unit]\nDescription=Tipbox: reboot every night so that updates take effect\n\n[Service]\nType=oneshot\nExecStart=/usr/bin/systemctl reboot\n' \
        >"$UNIT_DIR/tipbox-reboot.service"
    printf '[Unit]\nDescription=Tipbox: reboot every night at %s\n\n[Timer]\nOnCalendar=*-*-* %s:00\n\n[Install]\nWantedBy=timers.target\n' \
        "$at" "$at" >"$UNIT_DIR/tipbox-reboot.timer"
    chmod 0644 "$UNIT_DIR/tipbox-reboot.service" "$UNIT_DIR/tipbox-reboot.timer"
    systemctl daemon-reload
    systemctl enable --now tipbox-reboot.timer
    printf '    nightly reboot at %s\n' "$at"
}

# The rules: drop every new inbound connection except the admin's TCP ports; answer nothing.
# Outbound stays open (tor's relays, apt's mirrors, the digest's relay).
firewall_rules() { # PORTS
    local port ports=()
    for port in ${1//,/ }; do
        if ! [[ $port =~ ^[1-9][0-9]{0,4}$ ]] || ((port > 65535)); then
            die "TIPBOX_INBOUND_TCP: '$port' is not a TCP port number"
        fi
        ports+=("$port")
    done
    cat <<'EOF'
#!/usr/sbin/nft -f
# Written by Tipbox (make deploy; removed by make uninstall): no inbound connection but the
# ports in TIPBOX_INBOUND_TCP. Only this table is replaced; other tables are left alone.
table inet tipbox
delete table inet tipbox
table inet tipbox {
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept
        ct state established,related accept
        ct state invalid drop
        # IPv6 needs neighbour discovery and router adverts; DHCP answers reach the client.
        icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert } ip6 hoplimit 255 accept
        udp sport 67 udp dport 68 accept
        ip6 saddr fe80::/10 udp sport 547 udp dport 546 accept
EOF
    if ((${#ports[@]})); then
        local IFS=,
        printf '        tcp dport { %s } ct state new accept\n' "${ports[*]}"
    fi
    printf '    }\n}\n'
}

enable_firewall() {
    local ports
    ports="$(setting TIPBOX_INBOUND_TCP 22)"
    install -d -m 0755 "$(dirname "$NFT_RULES")"
    firewall_rules "$ports" >"$NFT_RULES.new"
    chmod 0644 "$NFT_RULES.new"
    mv "$NFT_RULES.new" "$NFT_RULES"
    set_block "$NFT_CONF" <<<"include \"$NFT_RULES\"" || true
    # Only on the real root: a test's throwaway root must not change this machine's firewall.
    if [[ -z $ROOT ]]; then
        nft -f "$NFT_RULES" || die "nft refused $NFT_RULES (its error is above)"
    fi
    systemctl enable nftables.service
    if [[ -n $ports ]]; then
        printf '    inbound: TCP %s only\n' "$ports"
    else
        printf '    inbound: nothing\n'
    fi
}

# make uninstall: Tipbox's rules, timers and apt settings go; the packages stay.
remove_hardening() {
    systemctl disable --now tipbox-reboot.timer || true
    rm -f "$UNIT_DIR/tipbox-reboot.timer" "$UNIT_DIR/tipbox-reboot.service" "$APT_CONF" "$NFT_RULES"
    if [[ -f $NFT_CONF ]]; then set_block "$NFT_CONF" </dev/null || true; fi
    if [[ -z $ROOT ]] && command -v nft >/dev/null; then
        nft delete table inet tipbox 2>/dev/null || true
    fi
}
