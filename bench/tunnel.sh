#!/usr/bin/env bash
# CONNECT tunnel relay throughput: a 100 MiB transfer from a TLS service through
# edge -> (mTLS) -> regional -> service, against the same transfer straight from the service.
#
#   bench/tunnel.sh            (or: make bench-tunnel)
#
#   direct:  curl --------------------------------------------------------TLS--> openssl s_server -WWW
#   tunnel:  curl -p -x --TCP--> edge --mTLS--> regional --TCP------------TLS--> (the same service)
#
# The client's TLS runs end to end in both cases (the nodes only relay bytes), so the ratio is the
# cost of the two relays and the extra mTLS hop. Uses the release build (make all) and the test PKI
# (scripts/pki.sh --test). BENCH_REPS runs of each [5], alternating, medians printed; BENCH_SIZE
# bytes [104857600]; BENCH_WORKERS per node [1]. Every process it starts is stopped on exit.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NODE=${CDN_NODE:-$SRC/build/cdn-node}
REPS=${BENCH_REPS:-5}
SIZE=${BENCH_SIZE:-104857600}
WORKERS=${BENCH_WORKERS:-1}
[ -x "$NODE" ] || {
    echo "bench-tunnel: $NODE is not built (make all)" >&2
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-bench-tunnel.XXXXXX")
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${BENCH_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

wait_file() { # FILE PATTERN
    local i
    for ((i = 0; i < 100; i++)); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "bench-tunnel: nothing like '$2' in $1: $(cat "$1" 2>/dev/null)" >&2
    exit 1
}

sh "$SRC/scripts/pki.sh" --test "$T/pki" >/dev/null 2>&1
mkdir -p "$T/www"
head -c "$SIZE" /dev/urandom >"$T/www/big"
want=$(sha256sum "$T/www/big" | cut -d' ' -f1)

(cd "$T/www" && exec openssl s_server -accept 127.0.0.1:0 -cert "$T/pki/edge.crt" -key "$T/pki/edge.key" \
    -WWW >"$T/service.out" 2>&1) &
PIDS+=($!)
wait_file "$T/service.out" '^ACCEPT'
SP=$(sed -n 's/^ACCEPT .*:\([0-9]*\)$/\1/p' "$T/service.out")

cat >"$T/regional.yaml" <<EOF2
role: regional
workers: $WORKERS
listeners:
  - {name: https, address: 127.0.0.1, port: 0, tls: true, certificate: pki/regional.crt,
     key: pki/regional.key, client_auth: require, ca_file: pki/ca.crt}
tunnel: {listeners: [https], connect_ports: [$SP]}
EOF2
"$NODE" run --config "$T/regional.yaml" --ports-file "$T/regional.ports" 2>"$T/regional.err" &
PIDS+=($!)
wait_file "$T/regional.ports" https
RP=$(awk '$1 == "https" { print $2 }' "$T/regional.ports")

cat >"$T/edge.yaml" <<EOF2
role: edge
workers: $WORKERS
listeners:
  - {name: proxy, address: 127.0.0.1, port: 0}
upstream: {client_certificate: pki/edge-client.crt, client_key: pki/edge-client.key, ca_file: pki/ca.crt}
tunnel:
  listeners: [proxy]
  routes: [{match: 'localhost:[0-9]+', peer: '127.0.0.1:$RP'}]
EOF2
"$NODE" run --config "$T/edge.yaml" --ports-file "$T/edge.ports" 2>"$T/edge.err" &
PIDS+=($!)
wait_file "$T/edge.ports" proxy
PP=$(awk '$1 == "proxy" { print $2 }' "$T/edge.ports")

# one transfer; prints its bytes/s (curl's average download speed) after checking the content
run() { # direct|tunnel
    local proxy=() out="$T/got"
    [ "$1" = tunnel ] && proxy=(-p -x "http://127.0.0.1:$PP")
    local speed
    speed=$(curl -sS "${proxy[@]}" --cacert "$T/pki/ca.crt" -o "$out" -w '%{speed_download}' \
        "https://localhost:$SP/big")
    [ "$(sha256sum "$out" | cut -d' ' -f1)" = "$want" ] || {
        echo "bench-tunnel: $1 transfer corrupted" >&2
        exit 1
    }
    rm -f "$out"
    echo "${speed%.*}"
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

run direct >/dev/null # warm-up (page cache, TLS session code paths)
run tunnel >/dev/null
: >"$T/direct"
: >"$T/tunnel"
for ((i = 0; i < REPS; i++)); do
    run direct >>"$T/direct"
    run tunnel >>"$T/tunnel"
done
d=$(median <"$T/direct")
t=$(median <"$T/tunnel")
mib=$((SIZE / 1048576))
echo "tunnel relay, $mib MiB, $REPS runs each (medians), $WORKERS worker(s) per node, $(nproc) cores:"
awk -v d="$d" -v t="$t" -v m="$mib" 'BEGIN {
    printf "  direct  curl -> s_server                               %7.1f MiB/s  (%.2f s)\n", d / 1048576, m * 1048576 / d
    printf "  tunnel  curl -> edge -> mTLS -> regional -> s_server   %7.1f MiB/s  (%.2f s)\n", t / 1048576, m * 1048576 / t
    printf "  ratio tunnel/direct: %.2f\n", t / d
}'
