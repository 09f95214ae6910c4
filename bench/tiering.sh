#!/usr/bin/env bash
# Edge miss -> regional hit throughput over mTLS (docs/TIERING.md), three edges against one regional:
#
#   wrk --HTTPS keep-alive--> edge (no cache) --mTLS--> cdn-node regional (cache hit) [--> origin once]
#
#   pooled   cdn-node edge, upstream group with keepalive: true (pooled connections, resumed sessions)
#   per-req  cdn-node edge, the same group with keepalive: false: a new mTLS connection per request
#            (resumed: the fair "no pool" case, since both sides keep TLS session resumption on)
#   nginx    nginx edge, `upstream { keepalive 64; }` + proxy_ssl_session_reuse (bench/nginx/edge_tier.conf.in)
#
# All three edges run at once with 1 worker each, behind the same regional (1 worker), on 127.0.0.1;
# runs alternate between them, BENCH_REPS times (3) for BENCH_DURATION seconds (8) each, with
# `wrk -t1 -c BENCH_CONNS(16)` on a 1 KiB object. Per run: req/s, p50, p99, the edge's CPU per
# request (utime+stime from /proc), and for cdn-node the upstream connections it opened and their
# handshakes, full or resumed (/stats).
# Prints the medians and writes them to build/bench-tiering.md. Needs wrk and nginx (without nginx it
# measures the two cdn-node edges). Every process it starts is stopped on exit.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${BENCH_DURATION:-8}
REPS=${BENCH_REPS:-3}
CONNS=${BENCH_CONNS:-16}
OBJ='/bytes/1024?hdr=Cache-Control:max-age%3D3600'
OUT_MD=$SRC/build/bench-tiering.md
say() { echo "bench-tiering: $*" >&2; }
die() {
    say "FAIL: $*"
    exit 1
}

declare -A PID=()
T=""
alive() { kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)" != Z ]; }
stop_all() {
    local n p i
    for n in "${!PID[@]}"; do kill -TERM "${PID[$n]}" 2>/dev/null || true; done
    for n in "${!PID[@]}"; do
        p=${PID[$n]}
        for ((i = 0; i < 50; i++)); do
            alive "$p" || break
            sleep 0.1
        done
        alive "$p" && kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null || true
        unset "PID[$n]"
    done
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    stop_all
    if [ -n "$T" ] && [ -d "$T" ]; then
        if [ "${BENCH_KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then say "temporary folder kept: $T"; else rm -rf "$T"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v wrk >/dev/null 2>&1 || die "wrk is not installed (apt-get install wrk)"
NGINX=$(command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)
[ -n "$NGINX" ] || say "SKIP nginx: not installed; measuring the cdn-node edges alone"

make -C "$SRC" --no-print-directory deps build/cdn-node build/origin >&2
T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-bench-tiering.XXXXXX")
chmod 755 "$T"
mkdir -p "$T/bin" "$SRC/build"
cp "$SRC/build/cdn-node" "$SRC/build/origin" "$T/bin/"
sh "$SRC/scripts/pki.sh" "$T/pki" 2>/dev/null || die "scripts/pki.sh failed"

wait_ports() {
    local i
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$1.ports" ] && return 0
        alive "${PID[$1]}" || die "$1 exited during start-up: $(tail -n 5 "$T/$1.err")"
        sleep 0.1
    done
    die "$1 wrote no ports file within 10 s"
}
port_of() { awk -v l="$2" '$1 == l { print $2; exit }' "$T/$1.ports"; }
# node NAME ROLE: cdn-node with $T/NAME.yaml
node() {
    "$T/bin/cdn-node" run --role "$2" --config "$T/$1.yaml" --ports-file "$T/$1.ports" >"$T/$1.out" 2>"$T/$1.err" &
    PID[$1]=$!
    wait_ports "$1"
}

"$T/bin/origin" --address 127.0.0.1 --port 0 --ports-file "$T/origin.ports" >"$T/origin.out" 2>"$T/origin.err" &
PID[origin]=$!
wait_ports origin
cat >"$T/regional.yaml" <<YAML
role: regional
workers: 1
listeners:
  - {name: https, address: 127.0.0.1, port: 0, tls: true, certificate: pki/regional.crt, key: pki/regional.key,
     client_auth: require, ca_file: pki/ca.crt}
remap:
  - "map https://regional.cdn.test/ http://127.0.0.1:$(port_of origin http)/"
cache: {path: cache-regional, size: 64MiB}
log: {level: warn}
YAML
node regional regional
RP=$(port_of regional https)
# edge NAME KEEPALIVE
edge() {
    cat >"$T/$1.yaml" <<YAML
role: edge
workers: 1
listeners:
  - {name: https, address: 127.0.0.1, port: 0, tls: true, certificate: pki/edge.crt, key: pki/edge.key}
admin: {port: 0}
upstream: {client_certificate: pki/edge-client.crt, client_key: pki/edge-client.key, ca_file: pki/ca.crt}
upstream_groups:
  - name: regionals
    keepalive: $2
    parents: [{address: "127.0.0.1:$RP", name: r1}]
remap:
  - "map https://cdn.test/ https://regional.cdn.test/ @group=regionals"
log: {level: warn}
YAML
    node "$1" edge
}
edge pooled true
edge per-req false
SYSTEMS="pooled per-req"
declare -A EPORT=([pooled]=$(port_of pooled https) [per-req]=$(port_of per-req https))
if [ -n "$NGINX" ]; then
    p=$T/nginx
    mkdir -p "$p/tmp"
    # nginx cannot report a port 0 bind: take one the kernel just gave out (bound, then released)
    np=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sed -e "s|@PREFIX@|$p|g" -e "s|@PORT@|$np|g" -e "s|@PKI@|$T/pki|g" -e "s|@REGIONAL_PORT@|$RP|g" \
        "$SRC/bench/nginx/edge_tier.conf.in" >"$p/nginx.conf"
    "$NGINX" -t -q -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/nginx.err" 2>&1 || die "nginx -t: $(cat "$T/nginx.err")"
    "$NGINX" -p "$p" -c "$p/nginx.conf" -e "$p/error.log" >"$T/nginx.out" 2>>"$T/nginx.err" &
    PID[nginx]=$!
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$np") 2>/dev/null && break
        alive "${PID[nginx]}" || die "nginx exited during start-up: $(tail -n 3 "$T/nginx.err")"
        sleep 0.1
    done
    EPORT[nginx]=$np
    SYSTEMS="$SYSTEMS nginx"
fi

edge_pids() { if [ "$1" = nginx ]; then echo "${PID[nginx]}" $(pgrep -P "${PID[nginx]}" || true); else echo "${PID[$1]}"; fi; }
cpu_ticks() {
    local p s=0 v
    for p in "$@"; do
        v=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        s=$((s + ${v:-0}))
    done
    echo "$s"
}
# hs SYSTEM: "opened full resumed" upstream connection and handshake counters of a cdn-node edge
hs() {
    [ "$1" = nginx ] && { echo 0 0 0; return; }
    curl -sS "http://127.0.0.1:$(port_of "$1" admin)/stats" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["upstream_conns_opened"], d["upstream_tls_full"], d["upstream_tls_resumed"])'
}
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; u = v; sub(/^[0-9.]+/, "", u); if (u == "us") n /= 1000; else if (u == "s") n *= 1000; printf "%.3f", n }'; }
run_wrk() { wrk --latency -t1 -c"$CONNS" -d"$2"s -H "Host: cdn.test" "https://127.0.0.1:${EPORT[$1]}$OBJ" >"$3" 2>&1; }

for sys in $SYSTEMS; do # each edge fetches the object once (a regional hit from then on) and warms up
    code=$(curl -sS --cacert "$T/pki/ca.crt" -H "Host: cdn.test" -o /dev/null -w '%{http_code}' "https://127.0.0.1:${EPORT[$sys]}$OBJ")
    [ "$code" = 200 ] || die "$sys: GET through the edge: $code"
    run_wrk "$sys" 2 "$T/warm.txt"
done
HZ=$(getconf CLK_TCK)
: >"$T/results.tsv"
for ((rep = 1; rep <= REPS; rep++)); do
    for sys in $SYSTEMS; do
        out=$T/wrk-$sys-$rep.txt
        # shellcheck disable=SC2207
        pids=($(edge_pids "$sys"))
        c0=$(cpu_ticks "${pids[@]}")
        read -r o0 f0 r0 < <(hs "$sys")
        run_wrk "$sys" "$DURATION" "$out"
        c1=$(cpu_ticks "${pids[@]}")
        read -r o1 f1 r1 < <(hs "$sys")
        req=$(awk '/requests in/ { print $1; exit }' "$out")
        rps=$(awk '/^Requests\/sec:/ { print $2; exit }' "$out")
        bad=$(awk '/Non-2xx or 3xx responses:/ { n += $NF } END { print n + 0 }' "$out")
        [ "$bad" -eq 0 ] || die "$sys: $bad non-2xx responses: $(cat "$out")"
        p50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
        p99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
        cpu=$(awk -v d=$((c1 - c0)) -v hz="$HZ" -v n="$req" 'BEGIN { printf "%.1f", d / hz * 1e6 / n }')
        conns="$((o1 - o0)) ($((f1 - f0)) full, $((r1 - r0)) resumed)"
        [ "$sys" = nginx ] && conns=-
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$sys" "$rep" "$rps" "$p50" "$p99" "$cpu" "$((o1 - o0))" >>"$T/results.tsv"
        say "$(printf '%-8s rep %s: %10s req/s  p50 %7s ms  p99 %7s ms  %6s us edge CPU/req  upstream conns opened: %s' \
            "$sys" "$rep" "$rps" "$p50" "$p99" "$cpu" "$conns")"
    done
done
median() {
    awk -F'\t' -v c="$1" -v s="$2" '$1 == s { print $c }' "$T/results.tsv" | sort -g |
        awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
{
    echo "| edge | req/s | p50 ms | p99 ms | edge CPU us/req | upstream conns opened per run |"
    echo "|---|---:|---:|---:|---:|---:|"
    for sys in $SYSTEMS; do
        c=$(median 7 "$sys")
        [ "$sys" = nginx ] && c="n/a"
        echo "| $sys | $(median 3 "$sys") | $(median 4 "$sys") | $(median 5 "$sys") | $(median 6 "$sys") | $c |"
    done
    echo
    echo "wrk -t1 -c$CONNS -d${DURATION}s, $REPS runs each (medians), 1 KiB regional hit, 1 worker per node, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
} | tee "$OUT_MD"
