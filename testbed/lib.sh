# lib.sh: names, addresses and helpers shared by the bed's scripts. Sourced,
# never run. Every address lives in the benchmark range 198.18.0.0/15, on
# interfaces that these scripts create inside their own namespaces.

# OCNET_BED_ID picks an instance: empty (the default) is the shared bed with
# the names and addresses below; a number N from 1 to 99 gives a second,
# independent bed (namespaces ocnN-*, state /tmp/ocnet-bedN, link
# 198.18.(20+N).0/30, LAN 198.18.(120+N).0/24, pool 198.19.(20+N).0/24), so
# tests that break links or restart ocserv can leave the shared one alone.
BED_ID=${OCNET_BED_ID:-}
if [ -n "$BED_ID" ] && ! [[ "$BED_ID" =~ ^[1-9][0-9]?$ ]]; then
    printf 'bed: error: OCNET_BED_ID=%s: want a number from 1 to 99\n' "$BED_ID" >&2
    exit 2
fi
NET_ID=${BED_ID:-0}

# $OCNET_BED moves the default instance's state dir only: an exported one
# (eval "$(testbed/env)" in a shell) must not send another instance there.
if [ -n "$BED_ID" ]; then
    STATE=/tmp/ocnet-bed$BED_ID
else
    STATE=${OCNET_BED:-/tmp/ocnet-bed}
fi
RUN=$STATE/run
LOGS=$STATE/logs
PKI=$STATE/pki
WWW=$STATE/www
WWW_NET=$STATE/www-net

NS_HEAD=ocn$BED_ID-head
NS_CLI=ocn$BED_ID-cli

# client <-> headend link (a /30)
LINK_CLI_DEV=ocn$BED_ID-c0
LINK_HEAD_DEV=ocn$BED_ID-h0
LINK_CLI_IP=198.18.$((20 + NET_ID)).2
LINK_HEAD_IP=198.18.$((20 + NET_ID)).1

# "the internet": a third namespace linked to the client, whose web server
# sits outside the headend's split-include, so that a flow the policy sends
# direct has somewhere to go. Its link is the /30 after the headend link's.
NS_NET=ocn$BED_ID-net
NET_CLI_DEV=ocn$BED_ID-c1
NET_DEV=ocn$BED_ID-n0
NET_CLI_IP=198.18.$((20 + NET_ID)).5
NET_GW=198.18.$((20 + NET_ID)).6
NET_WEB=198.18.$((20 + NET_ID)).10
NET_NAME=www.internet.example

# the corporate LAN behind the headend: one end of a veth pair whose peer
# idles in the same namespace (this kernel has no dummy driver)
LAN_DEV=ocn$BED_ID-lan0
LAN_PEER=ocn$BED_ID-lan1
LAN_PREFIX=198.18.$((120 + NET_ID))
LAN_NET=$LAN_PREFIX.0/24
LAN_GW=$LAN_PREFIX.1
LAN_WEB=$LAN_PREFIX.10
LAN_DNS=$LAN_PREFIX.53
CORP_DOMAIN=corp.example

VPN_POOL=198.19.$((20 + NET_ID)).0
VPN_DEV=ocnv$BED_ID
VPN_PORT=443
VPN_USER=alice
VPN_PASS=wonderland
VPN_BANNER="Welcome to the ocnet test bed"

BIG_MIB=${OCNET_BED_BIG_MIB:-200}
# ocserv's dpd (X-CSTP-DPD and X-DTLS-DPD) in seconds; fault tests use less
# to keep fallback short.
DPD=${OCNET_BED_DPD:-30}
ISOLATE_WORKERS=${OCNET_ISOLATE_WORKERS:-true}
# Debian's default for ocserv: TLS 1.2 only.
TLS_PRIORITIES=${OCNET_TLS_PRIORITIES:-NORMAL:%SERVER_PRECEDENCE:%COMPAT:-VERS-SSL3.0:-VERS-TLS1.0:-VERS-TLS1.1:-VERS-TLS1.3}

say() { printf 'bed: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

require_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (try: sudo $0)"
}

netns_exists() { ip netns list | awk '{print $1}' | grep -qx "$1"; }

# pidfile_alive FILE: true when FILE names a running process whose command
# starts with the file's base name up to any "-" (ocserv.pid -> ocserv-main,
# nginx-net.pid -> nginx), so that a pid reused by an unrelated process after
# a reboot is never taken for ours.
pidfile_alive() {
    local pid base
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    base=$(basename "$1" .pid)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "${base%%-*}"* ]]
}

# end_pidfile FILE: TERM the process named in FILE, KILL it after 5 s.
end_pidfile() {
    local f=$1 pid i
    pidfile_alive "$f" || { rm -f "$f"; return 0; }
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping $(basename "$f" .pid) (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$f"
}
