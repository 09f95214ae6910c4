#!/usr/bin/env bash
# Cache-hit throughput of the edge tier: cdn-node against nginx in the same two-tier topology.
#
#   bench/cache_hit.sh            (or: make bench-cache)
#
#   customer (wrk) --HTTPS keep-alive--> edge (cache) --mTLS, pooled--> regional (cache,
#   client certificate required) --HTTP--> test origin (build/origin)
#
# For each worker count (1, then 2) it starts a cdn-node regional + edge and an nginx regional +
# edge, all on 127.0.0.1 with their own ports and stores, checks that they behave alike (the second
# request is an edge hit; a client without a certificate is refused by each regional in the TLS
# handshake), then measures hot hits through the edge for a 1 KiB and a 100 KiB object with
# `wrk --latency -t2 -c50 -d10s`, cdn-node and nginx back to back, 3 repetitions each.
# Per run: req/s, p50, p99 (wrk), the edge's CPU time per request (utime+stime from /proc/PID/stat,
# nginx: master + workers) and its memory after the run (VmRSS, VmHWM; summed over nginx's processes).
# It prints the medians and writes them as markdown to build/bench-cache.md.
#
# Run as root it installs what is missing from Debian (wrk; nginx-light or nginx) without starting
# any service; nginx runs only as its own `nginx -p TMP` instances with pid file and logs in TMP.
# Without nginx it measures cdn-node alone and says so. Every process it starts is stopped on exit.
#
# Environment (defaults in brackets): BENCH_DURATION seconds per run [10], BENCH_REPS [3],
# BENCH_WORKERS [1 2], BENCH_THREADS [2], BENCH_CONNS [50], BENCH_SIZES bytes [1024 102400],
# BENCH_NGINX_REUSEPORT=1 adds `reuseport` to nginx's listeners (cdn-node always has one
# SO_REUSEPORT socket per worker) [off: nginx's default], BENCH_KEEP=1 keeps the temporary folder,
# BENCH_QUIET_WAIT seconds the bench may wait in all for other work on the machine to calm down
# before a pair of runs [120], BENCH_PERF=SECONDS adds, after the measured runs of each case, one
# extra run per system with `perf record -g` on the edge (report in build/bench-cache-perf/).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-10}
REPS=${BENCH_REPS:-3}
WORKERS_LIST=${BENCH_WORKERS:-1 2}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-50}
SIZES=${BENCH_SIZES:-1024 102400}
WARMUP=2
OUT_MD=$SRC/build/bench-cache.md
EDGE_HOST=cdn.test
REGIONAL_HOST=regional.cdn.test
QUERY='?hdr=Cache-Control:max-age%3D3600'

say() { echo "bench-cache: $*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}

# --- processes and cleanup ----------------------------------------------------------------------
declare -A PID=() # name -> pid of every long-running process started here
T=""
POLICY_RC_TMP=""  # a policy-rc.d we created for the duration of an apt-get install

alive() {
    local st
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ -n "$st" ] && [ "$st" != Z ]
}

# stop NAME...: TERM, KILL after 5 s, reap
stop() {
    local n p i
    for n in "$@"; do
        p=${PID[$n]:-}
        if [ -n "$p" ]; then kill -TERM "$p" 2>/dev/null || true; fi
    done
    for n in "$@"; do
        p=${PID[$n]:-}
        [ -n "$p" ] || continue
        for ((i = 0; i < 50; i++)); do
            alive "$p" || break
            sleep 0.1
        done
        if alive "$p"; then
            say "$n (pid $p) did not exit within 5 s of SIGTERM; killing it"
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
# apt_install PKG: installs one Debian package as root, never starting a service (policy-rc.d);
# an `apt-get update` only when the first try fails.
apt_install() {
    [ "$(id -u)" = 0 ] || return 1
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\n# bench/cache_hit.sh: no service starts during its apt-get install\nexit 101\n' \
            >/usr/sbin/policy-rc.d
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

find_nginx() {
    local c
    for c in "$(command -v nginx 2>/dev/null || true)" /usr/sbin/nginx; do
        [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
    done
    return 1
}

command -v wrk >/dev/null 2>&1 || apt_install wrk || true
command -v wrk >/dev/null 2>&1 || die "wrk is not installed and could not be installed (run as root, or: apt-get install wrk)"
for t in curl openssl make; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
done

NGINX=$(find_nginx || true)
if [ -z "$NGINX" ]; then
    apt_install nginx-light || apt_install nginx || true
    NGINX=$(find_nginx || true)
fi
SYSTEMS="cdn-node"
if [ -n "$NGINX" ]; then
    SYSTEMS="cdn-node nginx"
else
    say "SKIP nginx: it is not installed and could not be installed (run as root, or: apt-get install nginx-light); measuring cdn-node alone"
fi

# --- build, PKI, origin -------------------------------------------------------------------------
say "building build/cdn-node and build/origin"
make -C "$SRC" --no-print-directory deps build/cdn-node build/origin >&2

T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-bench-cache.XXXXXX")
chmod 755 "$T"
# Run copies: a `make` elsewhere in the tree during the bench must not swap the binary under a
# running node (perf would then see "cdn-node (deleted)" and no symbols).
mkdir -p "$T/bin"
cp "$SRC/build/cdn-node" "$SRC/build/origin" "$T/bin/"
CDN_NODE=$T/bin/cdn-node
ORIGIN=$T/bin/origin
PKI=$T/pki
sh "$SRC/scripts/pki.sh" "$PKI" 2>/dev/null || die "scripts/pki.sh failed"
mkdir -p "$SRC/build"

# wait_ports NAME: until $T/NAME.ports exists (10 s), failing if the process dies first
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

# port_of NAME LISTENER
port_of() {
    awk -v l="$2" '$1 == l { print $2; exit }' "$T/$1.ports"
}

# wait_listen PORT NAME: until 127.0.0.1:PORT accepts connections (10 s)
wait_listen() {
    local i
    for ((i = 0; i < 100; i++)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
            return 0
        fi
        alive "${PID[$2]}" || die "$2 exited during start-up; $T/$2/error.log ends with:
$(tail -n 20 "$T/$2/error.log" 2>/dev/null; tail -n 20 "$T/$2.err" 2>/dev/null)"
        sleep 0.1
    done
    die "$2 does not listen on 127.0.0.1:$1 after 10 s"
}

# free_port: a TCP port on 127.0.0.1 nobody listens on (for nginx, which cannot report port 0)
declare -A TAKEN=()
free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 30000))
        [ -z "${TAKEN[$p]:-}" ] || continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            TAKEN[$p]=1
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}

"$ORIGIN" --address 127.0.0.1 --port 0 --ports-file "$T/origin.ports" >"$T/origin.out" 2>"$T/origin.err" &
PID[origin]=$!
wait_ports origin
ORIGIN_PORT=$(port_of origin http)

# --- cdn-node -----------------------------------------------------------------------------------
# start_cdn WORKERS: regional + edge as in test/e2e (Host-named remap rules, upstream.address),
# both caching; sets CDN_EDGE_PORT, CDN_REGIONAL_PORT
start_cdn() {
    local w=$1 d=$T/cdn-w$1
    mkdir -p "$d"
    ln -sfn "$PKI" "$d/pki"
    cat >"$d/regional.yaml" <<EOF
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
  size: 256MiB
log:
  level: warn
EOF
    "$CDN_NODE" run --role regional --config "$d/regional.yaml" --ports-file "$T/cdn-regional.ports" \
        >"$T/cdn-regional.out" 2>"$T/cdn-regional.err" &
    PID[cdn-regional]=$!
    wait_ports cdn-regional
    CDN_REGIONAL_PORT=$(port_of cdn-regional https)
    cat >"$d/edge.yaml" <<EOF
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
upstream:
  address: 127.0.0.1:$CDN_REGIONAL_PORT
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
cache:
  path: cache-edge
  size: 256MiB
log:
  level: warn
EOF
    "$CDN_NODE" run --role edge --config "$d/edge.yaml" --ports-file "$T/cdn-edge.ports" \
        >"$T/cdn-edge.out" 2>"$T/cdn-edge.err" &
    PID[cdn-edge]=$!
    wait_ports cdn-edge
    CDN_EDGE_PORT=$(port_of cdn-edge https)
}

# --- nginx --------------------------------------------------------------------------------------
# nginx_conf TEMPLATE PREFIX PORT WORKERS: fills bench/nginx/TEMPLATE.conf.in into PREFIX/nginx.conf
nginx_conf() {
    local reuse=""
    [ "${BENCH_NGINX_REUSEPORT:-0}" = 1 ] && reuse=" reuseport"
    mkdir -p "$2/tmp" "$2/cache"
    sed -e "s|@PREFIX@|$2|g" -e "s|@PORT@|$3|g" -e "s|@WORKERS@|$4|g" -e "s|@PKI@|$PKI|g" \
        -e "s|@ORIGIN_PORT@|$ORIGIN_PORT|g" -e "s|@REGIONAL_PORT@|${NGX_REGIONAL_PORT:-}|g" \
        -e "s|@REUSEPORT@|$reuse|g" -e "s|@VERIFY_REQUIRE@|ssl_conf_command VerifyMode Require;|g" \
        "$SRC/bench/nginx/$1.conf.in" >"$2/nginx.conf"
}

# start_nginx_one NAME TEMPLATE PORT WORKERS: `nginx -p` in $T/NAME, in the foreground of its own
# background job (daemon off), so that its pid is the master's and nothing else is touched
start_nginx_one() {
    local name=$1 p=$T/$1
    nginx_conf "$2" "$p" "$3" "$4"
    "$NGINX" -t -q -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/$name.err" 2>&1 ||
        die "nginx -t refused $p/nginx.conf: $(cat "$T/$name.err")"
    "$NGINX" -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/$name.out" 2>>"$T/$name.err" &
    PID[$name]=$!
    wait_listen "$3" "$name"
}

start_nginx() {
    NGX_REGIONAL_PORT=$(free_port)
    start_nginx_one ngx-regional regional "$NGX_REGIONAL_PORT" "$1"
    NGX_EDGE_PORT=$(free_port)
    start_nginx_one ngx-edge edge "$NGX_EDGE_PORT" "$1"
}

# --- per-system helpers -------------------------------------------------------------------------
edge_port() { if [ "$1" = cdn-node ]; then echo "$CDN_EDGE_PORT"; else echo "$NGX_EDGE_PORT"; fi; }
regional_port() { if [ "$1" = cdn-node ]; then echo "$CDN_REGIONAL_PORT"; else echo "$NGX_REGIONAL_PORT"; fi; }

# edge_pids SYSTEM: the edge's processes (cdn-node: one, with its worker threads; nginx: master + workers)
edge_pids() {
    if [ "$1" = cdn-node ]; then
        echo "${PID[cdn-edge]}"
    else
        echo "${PID[ngx-edge]}"
        pgrep -P "${PID[ngx-edge]}" || true
    fi
}

# cpu_ticks PID...: utime + stime (fields 14 and 15 of /proc/PID/stat), summed
cpu_ticks() {
    local p s=0 v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# mem_kib FIELD PID...: a /proc/PID/status field (VmRSS, VmHWM) in KiB, summed
mem_kib() {
    local f=$1 p s=0 v
    shift
    for p in "$@"; do
        v=$(awk -v f="$f:" '$1 == f { print $2 }' "/proc/$p/status" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# pss_kib PID...: proportional set size (/proc/PID/smaps_rollup) in KiB, summed: unlike VmRSS, pages
# shared between nginx's master and workers count once
pss_kib() {
    local p s=0 v
    for p in "$@"; do
        v=$(awk '$1 == "Pss:" { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
        s=$((s + ${v:-0}))
    done
    echo "$s"
}

# --- correctness --------------------------------------------------------------------------------
# check_system SYSTEM: for each object, the second request through the edge is an edge hit with the
# whole body; the regional refuses a client without a certificate in the TLS handshake and serves
# one with the edge's client certificate.
check_system() {
    local sys=$1 ep rp size url code out rc cs
    ep=$(edge_port "$sys")
    rp=$(regional_port "$sys")
    for size in $SIZES; do
        url="https://127.0.0.1:$ep/bytes/$size$QUERY"
        code=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -o "$T/body" -w '%{http_code}' "$url") ||
            die "$sys: first GET of $size bytes through the edge failed"
        [ "$code" = 200 ] || die "$sys: first GET of $size bytes through the edge: status $code"
        sleep 0.3 # cdn-node commits fills asynchronously (test/e2e/lib.sh settle)
        code=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" -D "$T/head" -o "$T/body" \
            -w '%{http_code}' "$url") || die "$sys: second GET of $size bytes through the edge failed"
        [ "$code" = 200 ] || die "$sys: second GET of $size bytes: status $code"
        [ "$(wc -c <"$T/body")" -eq "$size" ] || die "$sys: second GET of $size bytes: body of $(wc -c <"$T/body") bytes"
        if [ "$sys" = cdn-node ]; then
            cs=$(tr -d '\r' <"$T/head" | awk 'tolower($0) ~ /^cache-status:/ { sub(/^[^:]*:[ \t]*/, ""); print }')
            case "$cs" in
            *"cdn-node-edge; hit"*) ;;
            *) die "cdn-node: second GET of $size bytes is not an edge hit; Cache-Status: $cs" ;;
            esac
        else
            cs=$(tr -d '\r' <"$T/head" | awk 'tolower($0) ~ /^x-cache:/ { sub(/^[^:]*:[ \t]*/, ""); print }')
            [ "$cs" = HIT ] || die "nginx: second GET of $size bytes is not an edge hit; X-Cache: $cs"
        fi
        say "$sys: second GET of $size bytes is an edge hit ($cs)"
    done
    rc=0
    out=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" -H "Host: $REGIONAL_HOST" -o /dev/null -w '%{http_code}' \
        "https://127.0.0.1:$rp/bytes/16" 2>"$T/curl.err") || rc=$?
    out="$(tr -d '\n' <"$T/curl.err") (status $out)"
    case "$rc" in
    35 | 56) ;;
    *) die "$sys: the regional without a client certificate: expected a failed TLS handshake (curl exit 35 or 56), got curl exit $rc: $out" ;;
    esac
    say "$sys: the regional refuses a client without a certificate in the TLS handshake (curl exit $rc: $out)"
    code=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key" \
        -H "Host: $REGIONAL_HOST" -o /dev/null -w '%{http_code}' "https://127.0.0.1:$rp/bytes/16") || code="curl exit $?"
    [ "$code" = 200 ] || die "$sys: the regional with the edge's client certificate: $code"
}

# tls_of SYSTEM: protocol and cipher a customer negotiates with the edge
tls_of() {
    openssl s_client -brief -connect "127.0.0.1:$(edge_port "$1")" -servername "$EDGE_HOST" -CAfile "$PKI/ca.crt" \
        </dev/null 2>&1 | awk -F': *' '/^Protocol version/ { p = $2 } /^Ciphersuite/ { c = $2 } END { print p " " c }'
}

# --- measuring ----------------------------------------------------------------------------------
# busy_ticks: CPU ticks the whole machine spent in processes (user, nice, system, steal; not idle,
# iowait, irq, softirq) over all cores, from /proc/stat. Loopback TCP work done in softirq is left out:
# it is not charged to any process, the edge included.
busy_ticks() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $9; exit }' /proc/stat
}

# softirq_ticks: irq + softirq ticks over all cores
softirq_ticks() {
    awk '$1 == "cpu" { print $7 + $8; exit }' /proc/stat
}

# children_ticks FILE: user+sys of this shell's reaped children, from the output of `times` (which
# has to run in this shell, not in a $(...) subshell)
children_ticks() {
    awk -v hz="$HZ" 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); printf "%.0f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * hz }' "$1"
}

# to_ms VALUE: wrk's "812.00us" / "1.20ms" / "1.01s" / "2.00m" in milliseconds
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# run_wrk SYSTEM SIZE SECONDS OUT: one wrk run against the edge (in the background, so that a
# signal stops the bench at once)
run_wrk() {
    wrk --latency -t"$THREADS" -c"$CONNS" -d"$3"s -H "Host: $EDGE_HOST" \
        "https://127.0.0.1:$(edge_port "$1")/bytes/$2$QUERY" >"$4" 2>&1 &
    PID[wrk]=$!
    wait "${PID[wrk]}" || die "wrk failed: $(cat "$4")"
    unset "PID[wrk]"
}

# machine_busy: percent of all cores busy in processes over the next half second (ours idle then)
machine_busy() {
    local b0
    b0=$(busy_ticks)
    sleep 0.5
    awk -v b=$(($(busy_ticks) - b0)) -v hz="$HZ" -v n="$NCPU" 'BEGIN { printf "%.0f", b / hz / 0.5 / n * 100 }'
}

# wait_quiet: before a pair of runs, waits while something else keeps the machine over 15% busy,
# within a budget of BENCH_QUIET_WAIT seconds for the whole bench (so it still ends in time)
wait_quiet() {
    local b waited=0
    while [ "$QUIET_LEFT" -gt 0 ]; do
        b=$(machine_busy)
        [ "$b" -gt 15 ] || break
        [ "$waited" -gt 0 ] || say "the machine is ${b}% busy with other work; waiting (up to ${QUIET_LEFT}s left for the whole bench)"
        sleep 1.5
        waited=$((waited + 2))
        QUIET_LEFT=$((QUIET_LEFT - 2))
    done
    [ "$waited" -eq 0 ] || say "waited ${waited}s (machine now ${b}% busy)"
}

# profile SYSTEM SIZE WORKERS: BENCH_PERF only, outside the measured runs: `perf record -g` of the
# edge during an extra wrk run; the top of `perf report` goes to build/bench-cache-perf/
profile() {
    local sys=$1 size=$2 w=$3 pids data txt
    # shellcheck disable=SC2207
    pids=($(edge_pids "$sys"))
    data=$T/perf-$sys-$size-w$w.data
    txt=$SRC/build/bench-cache-perf/$sys-$size-w$w.txt
    mkdir -p "$SRC/build/bench-cache-perf"
    (sleep 1 && exec perf record -q -F 999 -g -o "$data" -p "$(echo "${pids[*]}" | tr ' ' ,)" -- sleep "$BENCH_PERF") \
        >"$T/perf.out" 2>&1 &
    PID[perf]=$!
    run_wrk "$sys" "$size" $((BENCH_PERF + 2)) "$T/wrk-perf.txt"
    wait "${PID[perf]}" 2>/dev/null || true
    unset "PID[perf]"
    {
        echo "# perf record -F 999 -g of the $sys edge ($w workers) during wrk on the $size-byte hit"
        grep -E 'requests in|Requests/sec' "$T/wrk-perf.txt"
        echo "## by object"
        perf report -i "$data" --stdio --no-children -g none --sort dso --percent-limit 1 2>/dev/null | grep -E '^ +[0-9]'
        echo "## by symbol"
        perf report -i "$data" --stdio --no-children -g none --sort dso,symbol --percent-limit 0.5 2>/dev/null | grep -E '^ +[0-9]'
    } >"$txt"
    say "profile of the $sys edge: $txt"
}

# measure SYSTEM SIZE WORKERS REP: appends one line to $T/results.tsv
measure() {
    local sys=$1 size=$2 w=$3 rep=$4 out pids c0 c1 b0 b1 s0 s1 si t0 t1 wt req rps p50 p99 bad rss hwm pss cpu rest
    out=$T/wrk-$sys-$size-w$w-r$rep.txt
    # shellcheck disable=SC2207
    pids=($(edge_pids "$sys"))
    c0=$(cpu_ticks "${pids[@]}")
    b0=$(busy_ticks)
    s0=$(softirq_ticks)
    times >"$T/times0"
    t0=$(date +%s.%N)
    run_wrk "$sys" "$size" "$DURATION" "$out"
    c1=$(cpu_ticks "${pids[@]}")
    b1=$(busy_ticks)
    s1=$(softirq_ticks)
    times >"$T/times1"
    t1=$(date +%s.%N)
    rss=$(mem_kib VmRSS "${pids[@]}")
    hwm=$(mem_kib VmHWM "${pids[@]}")
    pss=$(pss_kib "${pids[@]}")
    req=$(awk '/requests in/ { print $1; exit }' "$out")
    rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
    bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 } END { print n + 0 }' "$out")
    if [ -z "$req" ] || [ "$req" -le 0 ]; then die "$sys: wrk made no request: $(cat "$out")"; fi
    [ "$bad" -eq 0 ] || say "WARNING: $sys $size bytes rep $rep: $bad errors or non-2xx responses (see $out)"
    cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
    # The rest of the machine: CPU time of processes other than the edge and wrk (the regional and
    # origin idle on hot hits, so this is whoever else uses the machine), in percent of all cores; a
    # high value means the run was disturbed. Softirq (loopback TCP) is shown apart, in the log.
    wt=$(($(children_ticks "$T/times1") - $(children_ticks "$T/times0")))
    rest=$(awk -v b=$((b1 - b0 - (c1 - c0) - wt)) -v hz="$HZ" -v n="$NCPU" -v t0="$t0" -v t1="$t1" \
        'BEGIN { v = b / hz / (t1 - t0) / n * 100; if (v < 0) v = 0; printf "%.1f", v }')
    si=$(awk -v b=$((s1 - s0)) -v hz="$HZ" -v n="$NCPU" -v t0="$t0" -v t1="$t1" \
        'BEGIN { printf "%.0f", b / hz / (t1 - t0) / n * 100 }')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$size" "$w" "$rep" "$rps" "$p50" "$p99" "$cpu" \
        "$rss" "$hwm" "$bad" "$rest" "$pss" >>"$T/results.tsv"
    say "$(printf '%-8s %7s B  workers %s  rep %s: %10s req/s  p50 %7s ms  p99 %7s ms  %7s us CPU/req  RSS %6s KiB  rest %4s%%  softirq %s%%' \
        "$sys" "$size" "$w" "$rep" "$rps" "$p50" "$p99" "$cpu" "$rss" "$rest" "$si")"
}

HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
# A quick look at whether something else is using the machine (benchmarks on 2 shared cores are fragile).
b0=$(busy_ticks)
sleep 1
IDLE_BUSY=$(awk -v b=$(($(busy_ticks) - b0)) -v hz="$HZ" -v n="$NCPU" 'BEGIN { printf "%.0f", b / hz / n * 100 }')
if [ "$IDLE_BUSY" -gt 10 ]; then
    say "WARNING: the machine is ${IDLE_BUSY}% busy before the bench starts (load: $(cut -d' ' -f1-3 /proc/loadavg)); results will be noisy"
fi
: >"$T/results.tsv"
declare -A TLS=()
QUIET_LEFT=${BENCH_QUIET_WAIT:-120}
START_EPOCH=$(date +%s)
for w in $WORKERS_LIST; do
    say "--- workers: $w ---"
    start_cdn "$w"
    [ -z "$NGINX" ] || start_nginx "$w"
    for sys in $SYSTEMS; do
        check_system "$sys"
        TLS[$sys]=$(tls_of "$sys")
    done
    for size in $SIZES; do
        for sys in $SYSTEMS; do
            run_wrk "$sys" "$size" "$WARMUP" "$T/warmup.txt"
        done
        for ((rep = 1; rep <= REPS; rep++)); do
            wait_quiet
            for sys in $SYSTEMS; do
                measure "$sys" "$size" "$w" "$rep"
            done
        done
        if [ -n "${BENCH_PERF:-}" ]; then
            for sys in $SYSTEMS; do
                profile "$sys" "$size" "$w"
            done
        fi
    done
    stop cdn-edge cdn-regional
    [ -z "$NGINX" ] || stop ngx-edge ngx-regional
done
stop origin
ELAPSED=$(($(date +%s) - START_EPOCH))

# --- summary ------------------------------------------------------------------------------------
# median COLUMN SYSTEM SIZE WORKERS: the median of a results.tsv column over the repetitions
median() {
    awk -F'\t' -v c="$1" -v s="$2" -v z="$3" -v w="$4" '$1 == s && $2 == z && $3 == w { print $c }' "$T/results.tsv" |
        sort -g | awk '{ a[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

size_name() {
    if [ $(($1 % 1024)) -eq 0 ]; then echo "$(($1 / 1024)) KiB hit"; else echo "$1 B hit"; fi
}

ROWS=()
for w in $WORKERS_LIST; do
    for size in $SIZES; do
        ng_rps="" ng_cpu=""
        if [ -n "$NGINX" ]; then
            ng_rps=$(median 5 nginx "$size" "$w")
            ng_cpu=$(median 8 nginx "$size" "$w")
        fi
        for sys in $SYSTEMS; do
            rps=$(median 5 "$sys" "$size" "$w")
            p50=$(median 6 "$sys" "$size" "$w")
            p99=$(median 7 "$sys" "$size" "$w")
            cpu=$(median 8 "$sys" "$size" "$w")
            rss=$(median 9 "$sys" "$size" "$w")
            hwm=$(median 10 "$sys" "$size" "$w")
            pss=$(median 13 "$sys" "$size" "$w")
            rest=$(awk -F'\t' -v s="$sys" -v z="$size" -v w="$w" '$1 == s && $2 == z && $3 == w && $12 > m { m = $12 } END { printf "%.0f", m }' "$T/results.tsv")
            r_rps="-" r_cpu="-"
            if [ "$sys" = cdn-node ] && [ -n "$ng_rps" ]; then
                r_rps=$(awk -v a="$rps" -v b="$ng_rps" 'BEGIN { printf "%.2f", a / b }')
                r_cpu=$(awk -v a="$cpu" -v b="$ng_cpu" 'BEGIN { printf "%.2f", a / b }')
            fi
            ROWS+=("$(printf '%s\t%s\t%s\t%.0f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s' "$sys" "$(size_name "$size")" "$w" \
                "$rps" "$p50" "$p99" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" \
                "$(awk -v k="$hwm" 'BEGIN { print k / 1024 }')" "$(awk -v k="$pss" 'BEGIN { print k / 1024 }')" \
                "$r_rps" "$r_cpu" "$rest")")
        done
    done
done

HEAD=$'system\tcase\tworkers\treq/s\tp50 ms\tp99 ms\tCPU us/req\tRSS MiB\tHWM MiB\tPSS MiB\treq/s cdn/nginx\tCPU/req cdn/nginx\trest %'
echo
{
    echo "$HEAD"
    printf '%s\n' "${ROWS[@]}"
} | awk -F'\t' '{ printf "%-9s %-12s %7s %9s %8s %8s %11s %8s %8s %8s %15s %18s %7s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }'
echo

NGINX_VERSION=""
GIT_REV=$(git -C "$SRC" describe --always --dirty 2>/dev/null || true)
[ -z "$GIT_REV" ] || GIT_REV=" (git $GIT_REV)"
[ -z "$NGINX" ] || NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')
{
    echo "# bench-cache: edge cache hits, cdn-node vs nginx"
    echo
    echo "Command: \`make bench-cache\` (bench/cache_hit.sh). Date: $(date -u '+%Y-%m-%d %H:%M UTC'). Machine: $(nproc) cores,"
    echo "$(uname -sr), $(openssl version | cut -d' ' -f1-2), $("$CDN_NODE" --version 2>/dev/null | head -n1)$GIT_REV${NGINX_VERSION:+, $NGINX_VERSION}."
    echo "Load: \`wrk --latency -t$THREADS -c$CONNS -d${DURATION}s\` over HTTPS keep-alive on 127.0.0.1, $REPS repetitions per"
    echo "system back to back, medians. CPU = edge utime+stime per request (nginx: master + workers);"
    echo "RSS/HWM = VmRSS/VmHWM of the edge after the run (nginx: summed over its processes, so pages shared by"
    echo "master and workers count twice); PSS = proportional set size (smaps_rollup), which counts them once."
    echo "rest % = the highest share of all cores, over the repetitions, used by processes other than the edge and wrk"
    echo "(the other tiers are idle on hot hits, so: other users of the machine); a disturbance gauge."
    echo "Machine busy before the run: ${IDLE_BUSY}% of all cores."
    for sys in $SYSTEMS; do
        echo "TLS to the $sys edge: ${TLS[$sys]:-?}."
    done
    [ -n "$NGINX" ] || echo "nginx was not available: cdn-node alone."
    [ "${BENCH_NGINX_REUSEPORT:-0}" != 1 ] || echo "nginx listeners with \`reuseport\`."
    echo
    echo "| system | case | workers | req/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | HWM MiB | PSS MiB | req/s cdn-node/nginx | CPU/req cdn-node/nginx | rest % |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    printf '%s\n' "${ROWS[@]}" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 }'
} >"$OUT_MD"
say "results in $OUT_MD (measuring took ${ELAPSED}s)"
