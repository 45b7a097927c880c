# lib.sh: names, addresses and helpers shared by the bed's scripts. Sourced,
# never run. Every address lives in the benchmark range 198.18.0.0/15, on
# interfaces that these scripts create inside their own namespaces.

STATE=${OCNET_BED:-/tmp/ocnet-bed}
RUN=$STATE/run
LOGS=$STATE/logs
PKI=$STATE/pki
WWW=$STATE/www

NS_HEAD=ocn-head
NS_CLI=ocn-cli

# client <-> headend link (a /30)
LINK_CLI_DEV=ocn-c0
LINK_HEAD_DEV=ocn-h0
LINK_CLI_IP=198.18.20.2
LINK_HEAD_IP=198.18.20.1

# the corporate LAN behind the headend: one end of a veth pair whose peer
# idles in the same namespace (this kernel has no dummy driver)
LAN_DEV=ocn-lan0
LAN_PEER=ocn-lan1
LAN_NET=198.18.120.0/24
LAN_GW=198.18.120.1
LAN_WEB=198.18.120.10
LAN_DNS=198.18.120.53
CORP_DOMAIN=corp.example

VPN_POOL=198.19.20.0
VPN_DEV=ocnv
VPN_PORT=443
VPN_USER=alice
VPN_PASS=wonderland
VPN_BANNER="Welcome to the ocnet test bed"

BIG_MIB=${OCNET_BED_BIG_MIB:-200}
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
# starts with the file's base name (ocserv.pid -> ocserv-main), so that a pid
# reused by an unrelated process after a reboot is never taken for ours.
pidfile_alive() {
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$(basename "$1" .pid)"* ]]
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
