#!/usr/bin/env bash
# cdn-node against nginx and Apache Traffic Server in the same two-tier mTLS CDN (make bench).
#
#   customer (wrk) --HTTPS keep-alive--> edge (cache) --mTLS, pooled--> regional (cache, client
#   certificate required in the handshake) --HTTP keep-alive--> test origin (build/origin)
#
# For each worker count (1, then the machine's default, nproc) it brings up that topology for every
# system on 127.0.0.1 (each on its own ports, with its own stores, configs, pid files and logs in one
# temporary folder), checks each one (the second request for a cacheable object is an edge hit and
# the origin's request log does not grow; a client without a certificate is refused by the regional in
# the TLS handshake), then measures, each system back to back in every repetition:
#   (a) 1 KiB hot hit through the edge       wrk -t2 -c50, also against the static-TLS limit server
#   (b) 100 KiB hot hit through the edge     the same
#   (c) regional hit through an edge that does not cache that host (cdn-node: a second edge without a
#       cache; nginx: a server block with proxy_cache off; ATS: conf_remap proxy.config.http.cache.http=0)
#   (d) cold miss to the origin: one connection, a new URL per request (lua/cold.lua), p50/p99
#   (e) full mTLS handshakes per second on the regional (openssl s_time -new with the edge's client
#       certificate), also against the limit server's mTLS listener
#   (f) Zipf-distributed URLs over a set larger than the edge cache (lua/zipf.lua): edge hit ratio
#       from each system's response headers, and throughput; an LRU of the same size as reference
# and once, at the default worker count: (g) idle keep-alive TLS connections to the edge, RSS each.
# Figures per run: req/s, p50, p99 (wrk), server CPU µs per request (utime+stime of every server
# process of the system, from /proc/PID/stat), peak RSS (VmHWM summed over them); ratios cdn-node/other
# per repetition, medians. Table on stdout, in bench/results/<date>.md and in README.md.
#
# The limit server is nginx serving the same bytes as files over TLS: no proxy, no cache.
# Run as root it installs what is missing from Debian (wrk, nginx-light or nginx, trafficserver),
# with policy-rc.d so that no service starts; every server runs as a process of this script only.
# A system that is missing and cannot be installed is left out and the results say so.
#
# Environment (defaults in brackets): BENCH_DURATION seconds per run [4], BENCH_REPS [3],
# BENCH_WORKERS [1 and nproc], BENCH_THREADS [2], BENCH_CONNS [50], BENCH_SYSTEMS [cdn-node nginx ats],
# BENCH_CASES [a b c d e f g], BENCH_IDLE_CONNS [10000], BENCH_ZIPF "N ALPHA SIZE" [20000 1.0 16384],
# BENCH_ZIPF_WARMUP seconds [6], BENCH_EDGE_CACHE MiB [128], BENCH_KEEP=1 keeps the temporary folder,
# BENCH_OUT results file [bench/results/<UTC date>.md], BENCH_README=0 leaves README.md alone,
# BENCH_NOTE=TEXT is printed in bold at the top of the results (e.g. "measured while the machine was busy"),
# BENCH_PERF=SECONDS adds an unmeasured run per case and system with `perf record -g` on the system's
# server processes (reports in build/bench-perf/).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-4}
REPS=${BENCH_REPS:-3}
NCPU=$(nproc)
if [ "$NCPU" -gt 1 ]; then WORKERS_LIST=${BENCH_WORKERS:-1 $NCPU}; else WORKERS_LIST=${BENCH_WORKERS:-1}; fi
DEFAULT_WORKERS=${WORKERS_LIST##* }
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-50}
WANT_SYSTEMS=${BENCH_SYSTEMS:-cdn-node nginx ats}
CASES=${BENCH_CASES:-a b c d e f g}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
read -r ZIPF_N ZIPF_ALPHA ZIPF_SIZE <<<"${BENCH_ZIPF:-20000 1.0 16384}"
ZIPF_WARMUP=${BENCH_ZIPF_WARMUP:-6}
EDGE_CACHE_MB=${BENCH_EDGE_CACHE:-128}
REGIONAL_CACHE_MB=512
WARMUP=1
STAMP=$(date -u +%Y-%m-%d-%H%M)
OUT_MD=${BENCH_OUT:-$SRC/bench/results/$STAMP.md}
EDGE_HOST=cdn.test
NOCACHE_HOST=nocache.cdn.test
REGIONAL_HOST=regional.cdn.test
QUERY='?hdr=Cache-Control:max-age%3D3600'

say() { echo "bench: $*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}
has_case() { case " $CASES " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# --- processes and cleanup (as bench/cache_hit.sh) -----------------------------------------------
declare -A PID=() # name -> pid of every long-running process started here
T=""
POLICY_RC_TMP=""

alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ]
}

# stop NAME...: TERM, KILL after 10 s, reap
stop() {
    local n p i
    for n in "$@"; do
        p=${PID[$n]:-}
        if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    for n in "$@"; do
        p=${PID[$n]:-}
        [ -n "$p" ] || continue
        for ((i = 0; i < 100; i++)); do
            alive "$p" || break
            sleep 0.1
        done
        if alive "$p"; then
            say "$n (pid $p) did not exit within 10 s of SIGTERM; killing it"
            kill -KILL "$p" 2>/dev/null || true
        fi
        wait "$p" 2>/dev/null || true
        unset "PID[$n]"
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ ${#PID[@]} -eq 0 ] || stop "${!PID[@]}"
    [ -z "$POLICY_RC_TMP" ] || rm -f "$POLICY_RC_TMP"
    if [ -n "$T" ] && [ -d "$T" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
            say "temporary folder kept: $T"
        else
            rm -rf "$T"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- tools --------------------------------------------------------------------------------------
# apt_install PKG: one Debian package as root, never starting a service (policy-rc.d)
apt_install() {
    [ "$(id -u)" = 0 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# bench/run.sh: no service starts during its apt-get install\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_TMP=/usr/sbin/policy-rc.d
    fi
    local rc=0 logf
    logf=$(mktemp)
    say "installing $1 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >"$logf" 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$logf" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$1" >>"$logf" 2>&1
    } || rc=$?
    [ "$rc" -eq 0 ] || { say "apt-get install $1 failed:"; tail -n 5 "$logf" >&2; }
    rm -f "$logf"
    if [ -n "$POLICY_RC_TMP" ]; then
        rm -f "$POLICY_RC_TMP"
        POLICY_RC_TMP=""
    fi
    return "$rc"
}

find_exe() {
    local c
    for c in "$(command -v "$1" 2>/dev/null || true)" "/usr/sbin/$1" "/usr/bin/$1"; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}

command -v wrk >/dev/null 2>&1 || apt_install wrk || true
command -v wrk >/dev/null 2>&1 || die "wrk is not installed and could not be installed (run as root, or: apt-get install wrk)"
for t in curl openssl make python3; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
done

SYSTEMS="cdn-node"
LEFT_OUT=()
NGINX=""
case " $WANT_SYSTEMS " in *" nginx "*) want_nginx=1 ;; *) want_nginx=0 ;; esac
# nginx is also the limit server, so it is installed even when it is not compared
NGINX=$(find_exe nginx || true)
if [ -z "$NGINX" ]; then
    apt_install nginx-light || apt_install nginx || true
    NGINX=$(find_exe nginx || true)
fi
if [ -n "$NGINX" ] && [ "$want_nginx" = 1 ]; then SYSTEMS="$SYSTEMS nginx"; fi
[ -n "$NGINX" ] || LEFT_OUT+=("nginx and the limit server: nginx is not installed and could not be (apt-get install nginx-light)")
TS=""
case " $WANT_SYSTEMS " in
*" ats "*)
    TS=$(find_exe traffic_server || true)
    if [ -z "$TS" ]; then
        apt_install trafficserver || true
        TS=$(find_exe traffic_server || true)
    fi
    if [ -n "$TS" ] && [ -d /usr/lib/trafficserver/modules ]; then
        SYSTEMS="$SYSTEMS ats"
    else
        LEFT_OUT+=("ATS: trafficserver is not installed and could not be (apt-get install trafficserver)")
        TS=""
    fi
    ;;
esac
HAVE_LIMIT=0
[ -z "$NGINX" ] || HAVE_LIMIT=1

# Many idle connections (case g) need file descriptors in every server and in the opener.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# --- build, PKI, origin -------------------------------------------------------------------------
say "building build/cdn-node and build/origin"
make -C "$SRC" --no-print-directory deps build/cdn-node build/origin >&2

T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-bench.XXXXXX")
chmod 755 "$T"
mkdir -p "$T/bin"
cp "$SRC/build/cdn-node" "$SRC/build/origin" "$T/bin/"
CDN_NODE=$T/bin/cdn-node
ORIGIN=$T/bin/origin
PKI=$T/pki
sh "$SRC/scripts/pki.sh" --test "$PKI" >/dev/null 2>&1 || die "scripts/pki.sh failed"

wait_ports() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$1.ports" ] && return 0
        alive "${PID[$1]}" || die "$1 exited during start-up; $T/$1.err ends with:
$(tail -n 20 "$T/$1.err" 2>/dev/null)"
        sleep 0.1
    done
    die "$1 wrote no ports file within 10 s"
}

port_of() {
    awk -v l="$2" '$1 == l { print $2; exit }' "$T/$1.ports"
}

# wait_listen PORT NAME [LOG]: until 127.0.0.1:PORT accepts connections (20 s)
wait_listen() {
    local i
    for ((i = 0; i < 200; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        alive "${PID[$2]}" || die "$2 exited during start-up; its logs end with:
$(tail -n 20 "${3:-$T/$2/error.log}" 2>/dev/null; tail -n 20 "$T/$2.err" 2>/dev/null)"
        sleep 0.1
    done
    die "$2 does not listen on 127.0.0.1:$1 after 20 s"
}

# free_port: a port nobody listens on, below the ephemeral range (ports given to outgoing connections
# and to port-0 listeners come from that range, so a port from it can be taken before nginx binds it)
declare -A TAKEN=()
EPHEMERAL_LOW=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
[ "$EPHEMERAL_LOW" -gt 12000 ] || EPHEMERAL_LOW=32768
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((10000 + RANDOM % (EPHEMERAL_LOW - 10000)))
        [ -z "${TAKEN[$p]:-}" ] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            TAKEN[$p]=1
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

: >"$T/origin.log"
"$ORIGIN" --address 127.0.0.1 --port 0 --ports-file "$T/origin.ports" --log "$T/origin.log" \
    >"$T/origin.out" 2>"$T/origin.err" &
PID[origin]=$!
wait_ports origin
ORIGIN_PORT=$(port_of origin http)
origin_count() { wc -l <"$T/origin.log" | tr -d ' '; }

# --- cdn-node -----------------------------------------------------------------------------------
# cdn_node_start NAME ROLE: runs $D/NAME.yaml
cdn_node_start() {
    rm -f "$T/$1.ports"
    "$CDN_NODE" run --role "$2" --config "$D/$1.yaml" --ports-file "$T/$1.ports" >"$T/$1.out" 2>"$T/$1.err" &
    PID[$1]=$!
    wait_ports "$1"
}

# start_cdn WORKERS: regional (cache), edge (cache), edge-nc (no cache: case c), each with an admin
# listener; sets CDN_EDGE_PORT, CDN_NC_PORT, CDN_REGIONAL_PORT
start_cdn() {
    local w=$1 name
    D=$T/cdn-w$w
    mkdir -p "$D"
    ln -sfn "$PKI" "$D/pki"
    cat >"$D/cdn-regional.yaml" <<EOF
role: regional
workers: $w
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/regional.crt
    key: pki/regional.key
    client_auth: require
    ca_file: pki/ca.crt
remap:
  - "map https://$REGIONAL_HOST/ http://127.0.0.1:$ORIGIN_PORT/"
cache:
  path: cache-regional
  size: ${REGIONAL_CACHE_MB}MiB
admin:
  address: 127.0.0.1
  port: 0
log:
  level: warn
EOF
    cdn_node_start cdn-regional regional
    CDN_REGIONAL_PORT=$(port_of cdn-regional https)
    for name in cdn-edge cdn-edge-nc; do
        cat >"$D/$name.yaml" <<EOF
role: edge
workers: $w
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/edge.crt
    key: pki/edge.key
remap:
  - "map https://$EDGE_HOST/ https://$REGIONAL_HOST/"
  - "map https://$NOCACHE_HOST/ https://$REGIONAL_HOST/"
upstream:
  address: 127.0.0.1:$CDN_REGIONAL_PORT
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
timeouts:
  keepalive: 10m
admin:
  address: 127.0.0.1
  port: 0
log:
  level: warn
EOF
        if [ "$name" = cdn-edge ]; then
            printf 'cache:\n  path: cache-edge\n  size: %sMiB\n' "$EDGE_CACHE_MB" >>"$D/$name.yaml"
        fi
        cdn_node_start "$name" edge
    done
    CDN_EDGE_PORT=$(port_of cdn-edge https)
    CDN_NC_PORT=$(port_of cdn-edge-nc https)
}

# --- nginx --------------------------------------------------------------------------------------
# nginx_conf TEMPLATE PREFIX PORT WORKERS [MTLS_PORT]
nginx_conf() {
    mkdir -p "$2/tmp" "$2/cache"
    sed -e "s|@PREFIX@|$2|g" -e "s|@PORT@|$3|g" -e "s|@WORKERS@|$4|g" -e "s|@PKI@|$PKI|g" \
        -e "s|@MTLS_PORT@|${5:-}|g" -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@REGIONAL_PORT@|${NGX_REGIONAL_PORT:-}|g" \
        -e "s|@REUSEPORT@||g" -e "s|@VERIFY_REQUIRE@|ssl_conf_command VerifyMode Require;|g" \
        -e "s|@EDGE_CACHE@|${EDGE_CACHE_MB}m|g" -e "s|@REGIONAL_CACHE@|${REGIONAL_CACHE_MB}m|g" \
        "$SRC/bench/nginx/$1.conf.in" >"$2/nginx.conf"
}

# start_nginx_one NAME TEMPLATE PORT WORKERS [MTLS_PORT]: `nginx -p $T/NAME`, daemon off, so that
# the job's pid is the master's
start_nginx_one() {
    local name=$1 p=$T/$1
    nginx_conf "$2" "$p" "$3" "$4" "${5:-}"
    "$NGINX" -t -q -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/$name.err" 2>&1 ||
        die "nginx -t refused $p/nginx.conf: $(cat "$T/$name.err")"
    "$NGINX" -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/$name.out" 2>>"$T/$name.err" &
    PID[$name]=$!
    wait_listen "$3" "$name"
}

start_nginx() {
    NGX_REGIONAL_PORT=$(free_port)
    start_nginx_one ngx-regional run-regional "$NGX_REGIONAL_PORT" "$1"
    NGX_EDGE_PORT=$(free_port)
    start_nginx_one ngx-edge run-edge "$NGX_EDGE_PORT" "$1"
}

# start_limit WORKERS: the static-TLS server; files under docroot/bytes/ with the origin's bytes
start_limit() {
    local p=$T/limit size
    rm -rf "$p"
    mkdir -p "$p/docroot/bytes"
    for size in 1024 102400; do
        curl -sS -o "$p/docroot/bytes/$size" "http://127.0.0.1:$ORIGIN_PORT/bytes/$size" || die "origin: /bytes/$size"
    done
    LIMIT_PORT=$(free_port)
    LIMIT_MTLS_PORT=$(free_port)
    start_nginx_one limit limit "$LIMIT_PORT" "$1" "$LIMIT_MTLS_PORT"
}

# --- Apache Traffic Server ----------------------------------------------------------------------
# ats_conf NAME PORT WORKERS CACHE_MB: a private runroot in $T/NAME (runroot.yaml: configs, logs,
# runtime files and the cache in the folder; binaries and plugins from the Debian package)
ats_conf() {
    local r=$T/$1
    rm -rf "$r"
    mkdir -p "$r/etc" "$r/run" "$r/log" "$r/cache"
    cat >"$r/runroot.yaml" <<EOF
prefix: $r
exec_prefix: /usr
bindir: /usr/bin
sbindir: /usr/sbin
sysconfdir: $r/etc
datadir: $r/etc
includedir: /usr/include
libdir: /usr/lib/trafficserver
libexecdir: /usr/lib/trafficserver/modules
localstatedir: $r/run
runtimedir: $r/run
logdir: $r/log
cachedir: $r/cache
EOF
    [ ! -d /etc/trafficserver/body_factory ] || cp -r /etc/trafficserver/body_factory "$r/etc/"
    # ATS's defaults are kept except for what makes it the same as the others: listen on one
    # loopback TLS port, exactly WORKERS event threads, no access log, the Via codes (the Zipf case
    # reads the cache result from them), and the file-descriptor throttle for case (g).
    cat >"$r/etc/records.config" <<EOF
CONFIG proxy.config.admin.user_id STRING #-1
CONFIG proxy.config.exec_thread.autoconfig INT 0
CONFIG proxy.config.exec_thread.limit INT $3
CONFIG proxy.config.accept_threads INT 0
CONFIG proxy.config.task_threads INT 1
CONFIG proxy.config.cache.threads_per_disk INT 4
CONFIG proxy.config.http.server_ports STRING $2:ssl:ipv4:ip-in=127.0.0.1
CONFIG proxy.config.http.insert_response_via_str INT 2
CONFIG proxy.config.http.insert_request_via_str INT 1
CONFIG proxy.config.url_remap.remap_required INT 1
CONFIG proxy.config.reverse_proxy.enabled INT 1
CONFIG proxy.config.http.cache.http INT 1
CONFIG proxy.config.http.cache.required_headers INT 2
CONFIG proxy.config.ssl.server.cert.path STRING $PKI
CONFIG proxy.config.ssl.server.private_key.path STRING $PKI
CONFIG proxy.config.ssl.CA.cert.filename STRING $PKI/ca.crt
CONFIG proxy.config.log.logging_enabled INT 0
CONFIG proxy.config.diags.debug.enabled INT 0
CONFIG proxy.config.http.keep_alive_no_activity_timeout_in INT 600
CONFIG proxy.config.http.keep_alive_no_activity_timeout_out INT 600
CONFIG proxy.config.net.connections_throttle INT 30000
CONFIG proxy.config.net.max_connections_in INT 30000
CONFIG proxy.config.hostdb.host_file.path STRING $r/etc/hosts
CONFIG proxy.config.http.server_session_sharing.match STRING both
CONFIG proxy.config.http.server_session_sharing.pool STRING thread
EOF
    echo "127.0.0.1 $REGIONAL_HOST localhost" >"$r/etc/hosts"
    echo "$r/cache ${4}M" >"$r/etc/storage.config"
    : >"$r/etc/plugin.config"
    for f in volume.config hosting.config cache.config parent.config splitdns.config socks.config; do
        : >"$r/etc/$f"
    done
    cat >"$r/etc/ip_allow.yaml" <<'EOF'
ip_allow:
  - apply: in
    ip_addrs: 127.0.0.1
    action: allow
  - apply: out
    ip_addrs: 0/0
    action: allow
EOF
    echo "sni: []" >"$r/etc/sni.yaml"
    echo "logging: {}" >"$r/etc/logging.yaml"
    echo "strategies: []" >"$r/etc/strategies.yaml"
}

# start_ats_one NAME PORT
start_ats_one() {
    local r=$T/$1
    (cd "$r" && exec "$TS" --run-root="$r/runroot.yaml") >"$T/$1.out" 2>"$T/$1.err" &
    PID[$1]=$!
    wait_listen "$2" "$1" "$r/log/diags.log"
    grep -q 'cache enabled' "$r/log/diags.log" 2>/dev/null || sleep 1
    grep -q 'cache enabled' "$r/log/diags.log" || die "$1: ATS did not enable its cache: $(grep -iE 'warn|error' "$r/log/diags.log" | tail -n 5)"
}

start_ats() {
    local w=$1 r
    ATS_REGIONAL_PORT=$(free_port)
    ats_conf ats-regional "$ATS_REGIONAL_PORT" "$w" "$REGIONAL_CACHE_MB"
    r=$T/ats-regional
    # the regional: a client certificate signed by the CA is required in the handshake
    echo "CONFIG proxy.config.ssl.client.certification_level INT 2" >>"$r/etc/records.config"
    echo "dest_ip=* ssl_cert_name=regional.crt ssl_key_name=regional.key" >"$r/etc/ssl_multicert.config"
    # the edge sends Host with the port; a client may send it without
    printf 'map https://%s:%s/ http://127.0.0.1:%s/\nmap https://%s/ http://127.0.0.1:%s/\n' "$REGIONAL_HOST" \
        "$ATS_REGIONAL_PORT" "$ORIGIN_PORT" "$REGIONAL_HOST" "$ORIGIN_PORT" >"$r/etc/remap.config"
    start_ats_one ats-regional "$ATS_REGIONAL_PORT"

    ATS_EDGE_PORT=$(free_port)
    ats_conf ats-edge "$ATS_EDGE_PORT" "$w" "$EDGE_CACHE_MB"
    r=$T/ats-edge
    cat >>"$r/etc/records.config" <<EOF
CONFIG proxy.config.ssl.client.verify.server.policy STRING ENFORCED
CONFIG proxy.config.ssl.client.verify.server.properties STRING ALL
CONFIG proxy.config.ssl.client.CA.cert.filename STRING $PKI/ca.crt
EOF
    echo "dest_ip=* ssl_cert_name=edge.crt ssl_key_name=edge.key" >"$r/etc/ssl_multicert.config"
    cat >"$r/etc/remap.config" <<EOF
map https://$EDGE_HOST/ https://$REGIONAL_HOST:$ATS_REGIONAL_PORT/
map https://$NOCACHE_HOST/ https://$REGIONAL_HOST:$ATS_REGIONAL_PORT/ @plugin=conf_remap.so @pparam=proxy.config.http.cache.http=0
EOF
    cat >"$r/etc/sni.yaml" <<EOF
sni:
  - fqdn: $REGIONAL_HOST
    client_cert: $PKI/edge-client.crt
    client_key: $PKI/edge-client.key
    verify_server_policy: ENFORCED
    verify_server_properties: ALL
EOF
    start_ats_one ats-edge "$ATS_EDGE_PORT"
}

# --- per-system helpers -------------------------------------------------------------------------
edge_port() {
    case $1 in
    cdn-node) echo "$CDN_EDGE_PORT" ;;
    nginx) echo "$NGX_EDGE_PORT" ;;
    ats) echo "$ATS_EDGE_PORT" ;;
    limit) echo "$LIMIT_PORT" ;;
    esac
}
nocache_port() {
    case $1 in
    cdn-node) echo "$CDN_NC_PORT" ;;
    nginx) echo "$NGX_EDGE_PORT" ;;
    ats) echo "$ATS_EDGE_PORT" ;;
    esac
}
regional_port() {
    case $1 in
    cdn-node) echo "$CDN_REGIONAL_PORT" ;;
    nginx) echo "$NGX_REGIONAL_PORT" ;;
    ats) echo "$ATS_REGIONAL_PORT" ;;
    limit) echo "$LIMIT_MTLS_PORT" ;;
    esac
}

# procs_of NAME...: the processes of these started servers (nginx: master + workers + cache processes)
procs_of() {
    local n
    for n in "$@"; do
        [ -n "${PID[$n]:-}" ] || continue
        echo "${PID[$n]}"
        pgrep -P "${PID[$n]}" || true
    done
}

# server_pids SYSTEM: every server process of the system (all tiers); the origin is shared and left out
server_pids() {
    case $1 in
    cdn-node) procs_of cdn-edge cdn-edge-nc cdn-regional ;;
    nginx) procs_of ngx-edge ngx-regional ;;
    ats) procs_of ats-edge ats-regional ;;
    limit) procs_of limit ;;
    esac
}
edge_pids() {
    case $1 in
    cdn-node) procs_of cdn-edge ;;
    nginx) procs_of ngx-edge ;;
    ats) procs_of ats-edge ;;
    limit) procs_of limit ;;
    esac
}

cpu_ticks() {
    local p s=0 v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

mem_kib() {
    local f=$1 p s=0 v
    shift
    for p in "$@"; do
        v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# ecurl SYSTEM HOST PORT PATH ARGS...: a customer's curl to an edge
ecurl() {
    local host=$2 port=$3 path=$4
    shift 4
    curl -sS --http1.1 --max-time 10 --cacert "$PKI/ca.crt" -H "Host: $host" "$@" "https://127.0.0.1:$port$path"
}

# edge_hit SYSTEM HEADFILE: whether the response head says the edge answered from its cache
edge_hit() {
    local h
    h=$(tr -d '\r' <"$2")
    case $1 in
    cdn-node) grep -qi '^cache-status:.*cdn-node-edge; hit' <<<"$h" ;;
    nginx) grep -qi '^x-cache: HIT' <<<"$h" ;;
    # the last Via entry is the edge's; its cache-lookup code follows "[c": H fresh hit, R RAM-cache hit
    ats) case "$(grep -i '^via:' <<<"$h" | tail -n1 | sed -n 's/.*\[c\(.\).*/\1/p')" in H | R) ;; *) return 1 ;; esac ;;
    esac
}

# --- correctness --------------------------------------------------------------------------------
# check_system SYSTEM: the objects the hot-hit cases use are fetched twice through the edge; the
# second GET must be an edge hit by the system's own header and must not reach the origin (its request
# log does not grow); the same for the no-cache host, where the second GET must not reach the origin
# either (a regional hit); the regional refuses a client without a certificate in the TLS handshake
# and serves one with the edge's certificate.
check_system() {
    local sys=$1 ep np rp size path code n0 n1 rc out
    ep=$(edge_port "$sys")
    np=$(nocache_port "$sys")
    rp=$(regional_port "$sys")
    for size in 1024 102400; do
        path="/bytes/$size$QUERY"
        code=$(ecurl "$sys" "$EDGE_HOST" "$ep" "$path" -o "$T/body" -w '%{http_code}') || die "$sys: first GET of $size bytes failed"
        [ "$code" = 200 ] || die "$sys: first GET of $size bytes through the edge: status $code"
        sleep 0.3 # cdn-node commits fills asynchronously
        n0=$(origin_count)
        code=$(ecurl "$sys" "$EDGE_HOST" "$ep" "$path" -D "$T/head" -o "$T/body" -w '%{http_code}') || die "$sys: second GET failed"
        n1=$(origin_count)
        [ "$code" = 200 ] || die "$sys: second GET of $size bytes: status $code"
        [ "$(wc -c <"$T/body")" -eq "$size" ] || die "$sys: second GET of $size bytes: body of $(wc -c <"$T/body") bytes"
        [ "$n1" = "$n0" ] || die "$sys: the second GET of $size bytes reached the origin ($n0 -> $n1 requests)"
        edge_hit "$sys" "$T/head" || die "$sys: the second GET of $size bytes is not marked as an edge hit: $(tr -d '\r' <"$T/head" | grep -iE '^(cache-status|x-cache|via):')"
        say "$sys: the second GET of $size bytes is an edge hit (origin requests stay at $n1)"
    done
    path="/bytes/1024$QUERY"
    for i in 1 2; do
        n0=$(origin_count)
        code=$(ecurl "$sys" "$NOCACHE_HOST" "$np" "$path" -D "$T/head" -o "$T/body" -w '%{http_code}') || die "$sys: GET via the no-cache edge failed"
        n1=$(origin_count)
        [ "$code" = 200 ] || die "$sys: GET via the no-cache edge: status $code"
        [ "$n1" = "$n0" ] || die "$sys: GET via the no-cache edge reached the origin ($n0 -> $n1): not a regional hit"
        ! edge_hit "$sys" "$T/head" || die "$sys: GET via the no-cache edge was answered from the edge's cache"
    done
    say "$sys: GETs through the edge's no-cache host are regional hits"
    rc=0
    out=$(curl -sS --http1.1 --max-time 10 --cacert "$PKI/ca.crt" --resolve "$REGIONAL_HOST:$rp:127.0.0.1" -o /dev/null \
        -w '%{http_code}' "https://$REGIONAL_HOST:$rp/bytes/16" 2>"$T/curl.err") || rc=$?
    out="$(tr -d '\n' <"$T/curl.err") (status $out)"
    # 35: the handshake failed; 56: TLS 1.3 lets the client finish first, and the server's alert
    # (certificate required) ends the first read; 55: the same, but ATS reset the connection before
    # curl could send (no alert). None of them gets an HTTP status.
    case "$rc" in
    35 | 55 | 56) [ "${out##*(status }" = "000)" ] || die "$sys: the regional without a client certificate answered HTTP: $out" ;;
    *) die "$sys: the regional without a client certificate: expected a failed TLS handshake (curl exit 35, 55 or 56), got curl exit $rc: $out" ;;
    esac
    say "$sys: the regional refuses a client without a certificate in the TLS handshake (curl exit $rc: $out)"
    code=$(curl -sS --http1.1 --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key" \
        -H "Host: $REGIONAL_HOST" --resolve "$REGIONAL_HOST:$rp:127.0.0.1" -o /dev/null -w '%{http_code}' "https://$REGIONAL_HOST:$rp/bytes/16") || code="curl exit $?"
    [ "$code" = 200 ] || die "$sys: the regional with the edge's client certificate: $code"
}

check_limit() {
    local size code
    for size in 1024 102400; do
        code=$(ecurl limit "$EDGE_HOST" "$LIMIT_PORT" "/bytes/$size$QUERY" -o "$T/body" -w '%{http_code}') || die "limit: GET failed"
        [ "$code" = 200 ] && [ "$(wc -c <"$T/body")" -eq "$size" ] || die "limit: GET of $size bytes: status $code"
    done
    curl -sS --max-time 10 --cacert "$PKI/ca.crt" -o /dev/null "https://127.0.0.1:$LIMIT_MTLS_PORT/bytes/1024" 2>/dev/null &&
        die "limit: its mTLS listener accepted a client without a certificate"
    say "limit: serves both files; its mTLS listener refuses a client without a certificate"
}

tls_of() {
    openssl s_client -brief -connect "127.0.0.1:$(edge_port "$1")" -servername "$EDGE_HOST" -CAfile "$PKI/ca.crt" \
        </dev/null 2>&1 | awk -F': *' '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 } END { print p " " c }'
}

# --- measuring ----------------------------------------------------------------------------------
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# bg OUT CMD...: runs CMD in the background (a signal stops the bench at once), output to OUT
bg() {
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    PID[client]=$!
    wait "${PID[client]}" || { unset "PID[client]"; return 1; }
    unset "PID[client]"
}

# url_of SYSTEM CASE: host port path of a wrk case
url_of() {
    case $2 in
    a) echo "$EDGE_HOST $(edge_port "$1") /bytes/1024$QUERY" ;;
    b) echo "$EDGE_HOST $(edge_port "$1") /bytes/102400$QUERY" ;;
    c) echo "$NOCACHE_HOST $(nocache_port "$1") /bytes/1024$QUERY" ;;
    d | f) echo "$EDGE_HOST $(edge_port "$1") /" ;;
    esac
}

# client SYSTEM CASE SECONDS OUT [SEED]: the load of one case
client() {
    local sys=$1 c=$2 secs=$3 out=$4 seed=${5:-1} host port path rp
    read -r host port path <<<"$(url_of "$sys" "$c")"
    case $c in
    a | b | c)
        bg "$out" wrk --latency -t"$THREADS" -c"$CONNS" -d"$secs"s -H "Host: $host" "https://127.0.0.1:$port$path" ;;
    d)
        bg "$out" wrk --latency -t1 -c1 -d"$secs"s -H "Host: $host" -s "$SRC/bench/lua/cold.lua" \
            "https://127.0.0.1:$port/" -- "$sys-$STAMP-$RANDOM$RANDOM" 1024 ;;
    e)
        rp=$(regional_port "$sys")
        bg "$out" openssl s_time -new -connect "127.0.0.1:$rp" -time "$secs" -cert "$PKI/edge-client.crt" \
            -key "$PKI/edge-client.key" -CAfile "$PKI/ca.crt" ;;
    f)
        bg "$out" wrk --latency -t"$THREADS" -c"$CONNS" -d"$secs"s -H "Host: $host" -s "$SRC/bench/lua/zipf.lua" \
            "https://127.0.0.1:$port/" -- "$ZIPF_N" "$ZIPF_ALPHA" "$ZIPF_SIZE" "$seed" ;;
    esac
}

# measure SYSTEM CASE WORKERS REP: one measured run; appends a line to $T/results.tsv
# columns: system case workers rep rps p50 p99 cpu_us hwm_kib requests hits errors anon_kib
measure() {
    local sys=$1 c=$2 w=$3 rep=$4 out pids c0 c1 t0 t1 req rps p50 p99 cpu hwm anon hits="" bad=0
    out=$T/out-$sys-$c-w$w-r$rep.txt
    # shellcheck disable=SC2207
    pids=($(server_pids "$sys"))
    c0=$(cpu_ticks "${pids[@]}")
    t0=$(date +%s.%N)
    client "$sys" "$c" "$DURATION" "$out" "$((rep + 100))" || die "$sys case $c: the client failed: $(tail -n 5 "$out")"
    t1=$(date +%s.%N)
    c1=$(cpu_ticks "${pids[@]}")
    hwm=$(mem_kib VmHWM "${pids[@]}")
    # RssAnon leaves out file-backed pages: cdn-node's LMDB store is a shared file mapping, so the
    # cached objects it touched count in its VmRSS/VmHWM, while nginx's and ATS's cache files are
    # read() through the page cache and never do
    anon=$(mem_kib RssAnon "${pids[@]}")
    if [ "$c" = e ]; then
        # "N connections in T real seconds, ...": T is whole seconds (time(2)), too coarse for a rate
        # over a few seconds, so the rate uses the client's run time measured here
        req=$(awk '/connections in .* real seconds/ { print $1; exit }' "$out")
        rps=$(awk -v n="${req:-0}" -v t0="$t0" -v t1="$t1" 'BEGIN { printf "%.1f", n / (t1 - t0) }')
        p50="" p99=""
    else
        req=$(awk '/requests in/ { print $1; exit }' "$out")
        rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
        p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
        bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    fi
    [ "$c" != f ] || hits=$(awk '/^zipf: responses/ { printf "%.4f", $5 / ($3 ? $3 : 1) }' "$out")
    if [ -z "$req" ] || [ "$req" -le 0 ]; then die "$sys case $c: no request was made: $(tail -n 5 "$out")"; fi
    [ "$bad" -eq 0 ] || say "WARNING: $sys case $c rep $rep: $bad errors or non-2xx responses (see $out)"
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$c" "$w" "$rep" "$rps" "$p50" "$p99" "$cpu" \
        "$hwm" "$req" "$hits" "$bad" "$anon" >>"$T/results.tsv"
    say "$(printf '%-8s case %s workers %s rep %s: %10s req/s  p50 %7s ms  p99 %7s ms  %8s us CPU/req  HWM %7s KiB%s' \
        "$sys" "$c" "$w" "$rep" "$rps" "${p50:--}" "${p99:--}" "$cpu" "$hwm" "${hits:+  hit ratio $hits}")"
}

# idle_conns SYSTEM: case (g), opens IDLE_CONNS keep-alive TLS connections to the edge, each after one
# request (a cached 16-byte object); the edge's anonymous RSS (RssAnon: heap and stacks, without file
# mappings such as cdn-node's LMDB store, whose pages the earlier cases touched) before and with them
# gives the bytes per connection
idle_conns() {
    local sys=$1 ep pids before after held
    ep=$(edge_port "$sys")
    # shellcheck disable=SC2207
    pids=($(edge_pids "$sys"))
    ecurl "$sys" "$EDGE_HOST" "$ep" "/bytes/16$QUERY" -o /dev/null
    ecurl "$sys" "$EDGE_HOST" "$ep" "/bytes/16$QUERY" -o /dev/null
    sleep 4 # as for the figure with the connections: the server's own idle trimming has run (cdn-node
    # frees idle buffers after 1-2 s, then malloc_trim), so what case (f) left behind is not counted
    before=$(mem_kib RssAnon "${pids[@]}")
    rm -f "$T/idle.ready" "$T/idle.stop" "$T/idle.out"
    python3 - "$ep" "$PKI/ca.crt" "$IDLE_CONNS" "$T/idle.ready" "$T/idle.stop" "$T/idle.out" "/bytes/16$QUERY" <<'PY' >"$T/idle-$sys.log" 2>&1 &
import asyncio, ssl, sys, os
port, ca, n, ready, stop, out, path = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
ctx = ssl.create_default_context(cafile=ca); ctx.check_hostname = False
async def one(conns):
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="cdn.test")
    w.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: cdn.test\r\n\r\n")
    head = await r.readuntil(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    await r.readexactly(n)
    conns.append((r, w))
async def main():
    conns, sem, failed = [], asyncio.Semaphore(200), [0]
    async def guarded():
        async with sem:
            try:
                await one(conns)
            except Exception:
                failed[0] += 1
    await asyncio.gather(*(guarded() for _ in range(n)))
    open(ready, "w").write("%d %d\n" % (len(conns), failed[0]))
    while not os.path.exists(stop):
        await asyncio.sleep(0.2)
    alive = 0
    for r, w in conns:
        try:
            await asyncio.wait_for(r.read(1), 0.001)
        except asyncio.TimeoutError:
            alive += 1
    open(out, "w").write("%d\n" % alive)
asyncio.run(main())
PY
    PID[idle]=$!
    for ((i = 0; i < 600; i++)); do
        [ -s "$T/idle.ready" ] && break
        alive "${PID[idle]}" || break
        sleep 0.5
    done
    [ -s "$T/idle.ready" ] || die "$sys: the idle connections were not opened: $(tail -n 5 "$T/idle-$sys.log")"
    sleep 3 # cdn-node trims idle connections' buffers after 1-2 s
    after=$(mem_kib RssAnon "${pids[@]}")
    touch "$T/idle.stop"
    wait "${PID[idle]}" || true
    unset "PID[idle]"
    held=$(cat "$T/idle.out" 2>/dev/null || echo 0)
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$IDLE_CONNS" "$held" "$before" "$after" \
        "$(awk -v a="$after" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.2f", (a - b) / n }')" >>"$T/idle.tsv"
    say "$sys: $held of $IDLE_CONNS idle connections held; edge anon RSS $before -> $after KiB"
}

# profile SYSTEM CASE WORKERS: BENCH_PERF only, after the measured runs of a case: one more run with
# `perf record -g` on every server process of the system (unmeasured); the top of `perf report` (by
# process and symbol, without children) goes to build/bench-perf/SYSTEM-CASE-wW.txt
profile() {
    local sys=$1 c=$2 w=$3 pids data txt
    command -v perf >/dev/null 2>&1 || { say "BENCH_PERF: perf is not installed"; return 0; }
    # shellcheck disable=SC2207
    pids=($(server_pids "$sys"))
    data=$T/perf-$sys-$c-w$w.data
    txt=$SRC/build/bench-perf/$sys-$c-w$w.txt
    mkdir -p "$SRC/build/bench-perf"
    (sleep 0.5 && exec perf record -q -F 999 -g -o "$data" -p "$(echo "${pids[*]}" | tr ' ' ,)" -- sleep "$BENCH_PERF") \
        >"$T/perf.out" 2>&1 &
    PID[perf]=$!
    client "$sys" "$c" $((BENCH_PERF + 1)) "$T/perf-client.txt" 7 || true
    wait "${PID[perf]}" 2>/dev/null || true
    unset "PID[perf]"
    {
        echo "# perf record -F 999 -g of every $sys server process ($w workers) during case $c"
        grep -E 'requests in|Requests/sec|connections in' "$T/perf-client.txt" || true
        echo "## by process"
        perf report -i "$data" --stdio --no-children -g none --sort comm,pid --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]'
        echo "## by symbol"
        perf report -i "$data" --stdio --no-children -g none --sort pid,dso,symbol --percent-limit 0.7 2>/dev/null | grep -E '^ +[0-9]'
    } >"$txt"
    say "profile of $sys, case $c: $txt"
}

HZ=$(getconf CLK_TCK)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$T/results.tsv"
: >"$T/idle.tsv"
: >"$T/zipf.tsv"
: >"$T/notes.txt"
declare -A TLS=()
START_EPOCH=$(date +%s)
for w in $WORKERS_LIST; do
    say "--- workers: $w ---"
    start_cdn "$w"
    case " $SYSTEMS " in *" nginx "*) start_nginx "$w" ;; esac
    [ "$HAVE_LIMIT" = 0 ] || start_limit "$w"
    case " $SYSTEMS " in *" ats "*) start_ats "$w" ;; esac
    for sys in $SYSTEMS; do
        check_system "$sys"
        TLS[$sys]=$(tls_of "$sys")
    done
    [ "$HAVE_LIMIT" = 0 ] || { check_limit; TLS[limit]=$(tls_of limit); }
    for c in a b c d e f; do
        has_case "$c" || continue
        list=$SYSTEMS
        case $c in a | b | e) [ "$HAVE_LIMIT" = 0 ] || list="$list limit" ;; esac
        for sys in $list; do
            case $c in
            a | b | c) client "$sys" "$c" "$WARMUP" "$T/warmup.txt" || die "$sys: warm-up failed" ;;
            f)
                # the edge caches of the Zipf case start from the same state: a warm-up with another seed
                client "$sys" f "$ZIPF_WARMUP" "$T/zipf-warmup-$sys-w$w.txt" 1 || die "$sys: Zipf warm-up failed"
                printf '%s\t%s\t%s\n' "$sys" "$w" "$(awk '/^zipf: responses/ { print $3 }' "$T/zipf-warmup-$sys-w$w.txt")" >>"$T/zipf.tsv"
                ;;
            esac
        done
        for ((rep = 1; rep <= REPS; rep++)); do
            for sys in $list; do
                measure "$sys" "$c" "$w" "$rep"
            done
        done
        if [ -n "${BENCH_PERF:-}" ]; then
            for sys in $list; do
                profile "$sys" "$c" "$w"
            done
        fi
    done
    if has_case g && [ "$w" = "$DEFAULT_WORKERS" ]; then
        for sys in $SYSTEMS; do
            idle_conns "$sys"
        done
    fi
    # cdn-node's own cache counters after all cases (docs/STATS.md), for the results file
    for n in cdn-edge cdn-regional; do
        curl -sS --max-time 5 "http://127.0.0.1:$(port_of "$n" admin)/stats" 2>/dev/null |
            python3 -c 'import json, sys; d = json.load(sys.stdin); print(", ".join("%s %s" % (k, d[k]) for k in sorted(d) if k.startswith("cache_")))' \
                >"$T/stats-$n-w$w.txt" 2>/dev/null || true
        echo "cdnstats=$n, $w workers, after all cases: $(cat "$T/stats-$n-w$w.txt")" >>"$T/notes.txt"
    done
    stop cdn-edge cdn-edge-nc cdn-regional
    for n in ngx-edge ngx-regional limit ats-edge ats-regional; do
        [ -z "${PID[$n]:-}" ] || stop "$n"
    done
done
stop origin
ELAPSED=$(($(date +%s) - START_EPOCH))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# --- summary ------------------------------------------------------------------------------------
GIT_REV=$(git -C "$SRC" describe --always --dirty 2>/dev/null || true)
NGINX_VERSION=""
[ -z "$NGINX" ] || NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
ATS_VERSION=""
[ -z "$TS" ] || ATS_VERSION=$("$TS" --version 2>&1 | grep -o 'Apache Traffic Server - traffic_server - [0-9.]*' | head -n1 | awk '{ print "ATS " $NF }')
mkdir -p "$(dirname "$OUT_MD")"
{
    echo "machine=$NCPU cores, $(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr)"
    echo "versions=$("$CDN_NODE" --version 2>/dev/null | head -n1)${GIT_REV:+ (git $GIT_REV)}; ${NGINX_VERSION:-no nginx}; ${ATS_VERSION:-no ATS}; $(openssl version | cut -d' ' -f1-2); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load=$LOAD_START at the start, $LOAD_END at the end (1/5/15-min load averages)"
    echo "elapsed=$ELAPSED"
    echo "duration=$DURATION"
    echo "reps=$REPS"
    echo "threads=$THREADS"
    echo "conns=$CONNS"
    echo "zipf=$ZIPF_N $ZIPF_ALPHA $ZIPF_SIZE $ZIPF_WARMUP"
    echo "edge_cache_mb=$EDGE_CACHE_MB"
    echo "idle_workers=$NCPU"
    for s in $SYSTEMS limit; do echo "tls_$s=${TLS[$s]:-}"; done
    for l in "${LEFT_OUT[@]}"; do echo "left_out=$l"; done
    [ -z "${BENCH_NOTE:-}" ] || echo "note=$BENCH_NOTE"
    cat "$T/notes.txt"
} >"$T/meta.txt"
python3 "$SRC/bench/summary.py" "$T/meta.txt" "$T/results.tsv" "$T/idle.tsv" "$T/zipf.tsv" "$OUT_MD"
cat "$OUT_MD"
if [ "${BENCH_README:-1}" = 1 ]; then
    python3 "$SRC/bench/summary.py" --readme "$OUT_MD" "$SRC/README.md"
    say "README.md's benchmark section now shows $OUT_MD"
fi
say "results in $OUT_MD (measuring took ${ELAPSED}s)"
