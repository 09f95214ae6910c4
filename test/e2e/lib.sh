# Helpers for the end-to-end tests; sourced by every test/e2e/NN_*.sh (bash).
#
# A test runs in its own folder $T (made by run.sh; a standalone run makes one). It starts the processes
# it needs on 127.0.0.1 port 0 and learns the real ports from the ports files they write, so tests never
# race for ports. Order: start_origin, then the regional (its config needs ORIGIN_PORT), then the edge.
# Every process started here is stopped on exit, whatever the exit path: TERM, KILL after 5 s.
# stop_all also fails the test if a process died of a signal other than TERM, exited with an error,
# or left a sanitizer report in its stderr.
#
# Addressing: a node listens on port 0, so a remap rule cannot name its port. The rules therefore
# name hosts: customers send "Host: cdn.test" to the edge, which maps https://cdn.test/ to
# https://regional.cdn.test/ and connects to the regional through upstream.address; the regional maps
# https://regional.cdn.test/ to http://127.0.0.1:ORIGIN_PORT/. The regional's certificate carries
# DNS:regional.cdn.test, which is the name the edge verifies.
#
# Variables: T (test folder), E2E_SRC (source tree), CDN_NODE, ORIGIN (binaries), PKI (after pki),
# ORIGIN_PORT (after start_origin).

E2E_SRC=${E2E_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
CDN_NODE=${CDN_NODE:-$E2E_SRC/build/cdn-node}
ORIGIN=${ORIGIN:-$E2E_SRC/build/origin}
if [ -z "${T:-}" ]; then
    T=$(mktemp -d "${TMPDIR:-/tmp}/cdn-e2e.XXXXXX")
    echo "test folder: $T" >&2
fi
export T E2E_SRC CDN_NODE ORIGIN

PATTERN=0123456789abcdefghijklmnopqrstuvwxyz
EDGE_HOST=cdn.test
REGIONAL_HOST=regional.cdn.test

declare -A _PID=() # NAME -> pid of every process started by start_origin/start_node

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# assert_eq ACTUAL EXPECTED [WHAT]
assert_eq() {
    [ "$1" = "$2" ] || fail "${3:-value}: expected '$2', got '$1'"
}

# assert_contains TEXT NEEDLE [WHAT]   (fixed string)
assert_contains() {
    case "$1" in
    *"$2"*) ;;
    *) fail "${3:-output} does not contain '$2'; it was: $(printf '%s' "$1" | head -c 2000)" ;;
    esac
}

# assert_not_contains TEXT NEEDLE [WHAT]   (fixed string)
assert_not_contains() {
    case "$1" in
    *"$2"*) fail "${3:-output} contains '$2'; it was: $(printf '%s' "$1" | head -c 2000)" ;;
    *) ;;
    esac
}

# pattern_sha256 N: sha256 of the origin's first N pattern bytes, computed here and not by the origin
pattern_sha256() {
    yes "$PATTERN" | tr -d '\n' | head -c "$1" | sha256sum | cut -d' ' -f1
}

sha256_of() {
    sha256sum "$1" | cut -d' ' -f1
}

# pki: the certificates of scripts/pki.sh --test in $T/pki (PKI). Made once per run.sh run in
# E2E_PKI_CACHE and copied, since key generation is the slow part.
pki() {
    if [ -n "${E2E_PKI_CACHE:-}" ]; then
        sh "$E2E_SRC/scripts/pki.sh" --test "$E2E_PKI_CACHE" >/dev/null 2>&1 || fail "scripts/pki.sh failed"
        cp -pr "$E2E_PKI_CACHE" "$T/pki"
    else
        sh "$E2E_SRC/scripts/pki.sh" --test "$T/pki" >/dev/null 2>&1 || fail "scripts/pki.sh failed"
    fi
    PKI=$T/pki
}

# alive PID: running; a zombie counts as dead
_alive() {
    kill -0 "$1" 2>/dev/null || return 1
    local st
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$st" != Z ]
}

# _wait_ready NAME: the ports file $T/NAME.ports appears within 10 s, or fail (at once if NAME died)
_wait_ready() {
    local name=$1 pid=${_PID[$1]} i
    for ((i = 0; i < 100; i++)); do
        [ -s "$T/$name.ports" ] && return 0
        if ! _alive "$pid"; then
            local st=0
            wait "$pid" || st=$?
            unset "_PID[$name]"
            fail "$name exited with status $st before it was ready; $T/$name.err ends with:
$(tail -n 20 "$T/$name.err" 2>/dev/null)"
        fi
        sleep 0.1
    done
    fail "$name wrote no ports file within 10 s; $T/$name.err ends with:
$(tail -n 20 "$T/$name.err" 2>/dev/null)"
}

# start_origin: the test origin on 127.0.0.1, a free port; sets ORIGIN_PORT. Requests go to $T/origin.log.
start_origin() {
    : >"$T/origin.log"
    "$ORIGIN" --address 127.0.0.1 --port 0 --ports-file "$T/origin.ports" --log "$T/origin.log" \
        >"$T/origin.out" 2>"$T/origin.err" &
    _PID[origin]=$!
    _wait_ready origin
    ORIGIN_PORT=$(port_of origin http)
}

# start_node NAME ROLE CONFIG [ARG...]: cdn-node run (with ARGs), stderr in $T/NAME.err, stdout in $T/NAME.out
start_node() {
    local name=$1 role=$2 config=$3
    shift 3
    rm -f "$T/$name.ports"
    "$CDN_NODE" run --role "$role" --config "$config" --ports-file "$T/$name.ports" "$@" \
        >"$T/$name.out" 2>"$T/$name.err" &
    _PID[$name]=$!
    _wait_ready "$name"
}

# pid_of NAME
pid_of() {
    [ -n "${_PID[$1]:-}" ] || fail "no process named $1"
    echo "${_PID[$1]}"
}

# port_of NAME LISTENER: the port LISTENER of NAME bound (from its ports file)
port_of() {
    local p
    p=$(awk -v l="$2" '$1 == l { print $2; exit }' "$T/$1.ports" 2>/dev/null)
    [ -n "$p" ] || fail "no listener '$2' in $T/$1.ports: $(cat "$T/$1.ports" 2>/dev/null)"
    echo "$p"
}

# origin_count: requests the origin has received so far
origin_count() {
    local n
    n=$(wc -l <"$T/origin.log")
    echo $((n))
}

# _stop_one NAME [signalled]: TERM (unless already sent), KILL after 5 s, reap; sets _PROBLEM
# (empty when all went well)
_stop_one() {
    local name=$1 pid=${_PID[$1]:-} i st=0
    _PROBLEM=""
    [ -n "$pid" ] || return 0
    [ -n "${2:-}" ] || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        _alive "$pid" || break
        sleep 0.1
    done
    if _alive "$pid"; then
        kill -KILL "$pid" 2>/dev/null || true
        _PROBLEM="$name did not exit within 5 s of SIGTERM (killed)"
    fi
    wait "$pid" 2>/dev/null || st=$?
    unset "_PID[$name]"
    if [ -z "$_PROBLEM" ] && [ "$st" -ne 0 ] && [ "$st" -ne 143 ]; then
        if [ "$st" -gt 128 ]; then
            _PROBLEM="$name died of signal $((st - 128))"
        else
            _PROBLEM="$name exited with status $st after SIGTERM"
        fi
    fi
    if grep -qE 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$T/$name.err" 2>/dev/null; then
        _PROBLEM="${_PROBLEM:+$_PROBLEM; }$name reported a sanitizer error:
$(grep -m1 -A 30 -E 'ERROR: AddressSanitizer|runtime error:|LeakSanitizer' "$T/$name.err")"
    fi
    return 0
}

# stop NAME: stops one process; fails on a bad exit or a sanitizer report (see stop_all)
stop() {
    _stop_one "$1"
    [ -z "$_PROBLEM" ] || fail "$_PROBLEM"
}

# stop_all: stops every process started here (all are signalled before any is waited for) and fails
# if one died of a signal other than TERM, exited non-zero, needed a KILL, or has a sanitizer report.
stop_all() {
    local name problems=""
    for name in "${!_PID[@]}"; do
        kill -TERM "${_PID[$name]}" 2>/dev/null || true
    done
    for name in "${!_PID[@]}"; do
        _stop_one "$name" signalled
        [ -z "$_PROBLEM" ] || problems="$problems
  $_PROBLEM"
    done
    [ -z "$problems" ] || fail "on stop:$problems"
}

_on_exit() {
    local rc=$? name
    trap - EXIT
    set +e
    for name in "${!_PID[@]}"; do
        kill -TERM "${_PID[$name]}" 2>/dev/null
    done
    for name in "${!_PID[@]}"; do
        _stop_one "$name" signalled
        if [ -n "$_PROBLEM" ]; then
            echo "FAIL: on stop: $_PROBLEM" >&2
            rc=1
        fi
    done
    [ -z "${E2E_ON_EXIT:-}" ] || eval "$E2E_ON_EXIT" # a test's own cleanup, after its processes
    exit "$rc"
}
trap _on_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# --- configs -----------------------------------------------------------------------------------
# Paths in the configs are relative (pki/...): the node resolves them against the config's folder, $T.

# regional_config FILE [CERT_NAME]: a regional in front of the origin, presenting pki/CERT_NAME.crt
# (default regional), requiring client certificates from the dev CA.
regional_config() {
    local cert=${2:-regional}
    cat >"$1" <<EOF
role: regional
workers: 2
listeners:
  - name: https
    address: 127.0.0.1
    port: 0
    tls: true
    certificate: pki/$cert.crt
    key: pki/$cert.key
    client_auth: require
    ca_file: pki/ca.crt
remap:
  - "map https://$REGIONAL_HOST/ http://127.0.0.1:$ORIGIN_PORT/"
EOF
}

# edge_config FILE REGIONAL_PORT: an edge in front of the regional listening on REGIONAL_PORT.
edge_config() {
    cat >"$1" <<EOF
role: edge
workers: 2
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
  address: 127.0.0.1:$2
  client_certificate: pki/edge-client.crt
  client_key: pki/edge-client.key
  ca_file: pki/ca.crt
EOF
}

# two_tiers: pki + origin + regional + edge with the default configs; sets EDGE (base URL)
two_tiers() {
    pki
    start_origin
    regional_config "$T/regional.yaml"
    start_node regional regional "$T/regional.yaml"
    local rp ep
    rp=$(port_of regional https)
    edge_config "$T/edge.yaml" "$rp"
    start_node edge edge "$T/edge.yaml"
    ep=$(port_of edge https)
    export EDGE=https://127.0.0.1:$ep
}

# ecurl ARGS...: curl as a customer of the edge (trusts the dev CA, Host: cdn.test)
ecurl() {
    curl -sS --cacert "$PKI/ca.crt" -H "Host: $EDGE_HOST" "$@"
}

# --- helpers added for the timeout, pipelining and install tests ---------------------------------

# start_dead_upstream NAME MODE: a stand-in for a broken upstream on 127.0.0.1, port in
# $T/NAME.ports as "tcp PORT" (port_of NAME tcp). MODE closed: the port is bound but never listens,
# so every connect is refused at once. MODE silent: it listens but never accepts nor answers, so a
# TCP connect succeeds and a TLS handshake never completes. Stopped like a node (TERM).
start_dead_upstream() {
    local name=$1 mode=$2
    rm -f "$T/$name.ports"
    python3 -c '
import socket, sys, time, os
mode, ports = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
if mode == "silent":
    s.listen(16)
elif mode != "closed":
    sys.exit("start_dead_upstream: unknown mode " + mode)
with open(ports + ".tmp", "w") as f:
    f.write("tcp %d\n" % s.getsockname()[1])
os.rename(ports + ".tmp", ports)
while True:
    time.sleep(3600)
' "$mode" "$T/$name.ports" >"$T/$name.out" 2>"$T/$name.err" &
    _PID[$name]=$!
    _wait_ready "$name"
}

# log_has NAME TEXT: NAME's stderr ($T/NAME.err) contains TEXT (fixed string)
log_has() {
    grep -qF -- "$2" "$T/$1.err" 2>/dev/null
}

# --- helpers added for the cache tests (9N_cache_*.sh) ------------------------------------------
# Both tiers cache (a cache: block each, stores in $T/cache-NAME) and write access logs
# ($T/NAME.access), so a test can tell which tier answered: origin_count for the origin,
# access_count regional for the regional, and the Cache-Status members (regional first, edge last).

# start_origin_docroot DIR: start_origin with --docroot DIR (GET/HEAD /files/NAME serves DIR/NAME).
# A known ORIGIN_PORT (set before) is reused, so that a restarted origin keeps the regional's rule valid.
start_origin_docroot() {
    : >>"$T/origin.log"
    rm -f "$T/origin.ports"
    "$ORIGIN" --address 127.0.0.1 --port "${ORIGIN_PORT:-0}" --ports-file "$T/origin.ports" --log "$T/origin.log" \
        --docroot "$1" >"$T/origin.out" 2>>"$T/origin.err" &
    _PID[origin]=$!
    _wait_ready origin
    ORIGIN_PORT=$(port_of origin http)
}

# cache_config FILE NAME [LINE...]: appends a cache: block to the config FILE: path cache-NAME (in $T),
# size 64MiB (unless a LINE sets size), then each LINE ("key: value") inside the block. Also an access
# log, $T/NAME.access, and NODE_YAML (top-level YAML, e.g. 'admin: {port: 0}') when it is set.
cache_config() {
    local f=$1 name=$2 l
    shift 2
    {
        echo "cache:"
        echo "  path: cache-$name"
        case " $* " in
        *" size:"*) ;;
        *) echo "  size: 64MiB" ;;
        esac
        for l in "$@"; do
            echo "  $l"
        done
        echo "log:"
        echo "  access: $name.access"
        [ -z "${NODE_YAML:-}" ] || printf '%s\n' "$NODE_YAML"
    } >>"$f"
}

# cache_regional [LINE...]: writes $T/regional.yaml (regional_config + cache_config regional LINE...)
# and starts it; sets REGIONAL_PORT.
cache_regional() {
    regional_config "$T/regional.yaml"
    cache_config "$T/regional.yaml" regional "$@"
    start_node regional regional "$T/regional.yaml"
    REGIONAL_PORT=$(port_of regional https)
}

# cache_edge NAME [LINE...]: writes $T/NAME.yaml (edge_config in front of REGIONAL_PORT + cache_config
# NAME LINE...) and starts it as NAME (run it again to restart NAME with the same store); sets EDGE.
cache_edge() {
    local name=$1
    shift
    edge_config "$T/$name.yaml" "$REGIONAL_PORT"
    cache_config "$T/$name.yaml" "$name" "$@"
    start_node "$name" edge "$T/$name.yaml"
    EDGE=https://127.0.0.1:$(port_of "$name" https)
}

# cache_tiers [LINE...]: like two_tiers, but the origin serves $T/docroot (DOCROOT) under /files/ and
# the regional and the edge both cache, with the same extra cache LINEs; sets EDGE, REGIONAL_PORT.
cache_tiers() {
    pki
    DOCROOT=$T/docroot
    mkdir -p "$DOCROOT"
    start_origin_docroot "$DOCROOT"
    cache_regional "$@"
    cache_edge edge "$@"
}

# access_count NAME [WANT]: requests NAME has logged in its access log so far. A node writes that log
# from a thread of its own, an instant after the response: this waits 0.1 s for lines still queued,
# and with WANT first up to 3 s for the count to reach WANT (so a check that expects more lines does
# not fail early, and one that expects none still sees a line that should not be there).
access_count() {
    local i
    for ((i = 0; i < 30 && ${2:-0} > 0; i++)); do
        [ "$(_access_lines "$1")" -lt "$2" ] || break
        sleep 0.1
    done
    sleep 0.1
    _access_lines "$1"
}

_access_lines() {
    local n=0
    [ -f "$T/$1.access" ] && n=$(wc -l <"$T/$1.access")
    echo $((n))
}

# fetch PATH [CURL_ARGS...]: a customer's request to $EDGE (override with FETCH_BASE): body in $T/body,
# response head in $T/head; sets CODE (status), CS (Cache-Status value; "" if none), AGE, LAST_CS
# (the last Cache-Status member: the edge's) and SECS (the request's wall time, e.g. 0.042).
# shellcheck disable=SC2034 # CODE, SECS, AGE and LAST_CS are for the caller
fetch() {
    local p=$1 out
    shift
    rm -f "$T/head" "$T/body" # curl leaves an old file as it was when no body comes
    out=$(ecurl -D "$T/head" -o "$T/body" -w '%{http_code} %{time_total}' "$@" "${FETCH_BASE:-$EDGE}$p") ||
        fail "GET $p: curl exit $?"
    [ -f "$T/body" ] || : >"$T/body"
    CODE=${out% *}
    SECS=${out#* }
    CS=$(header_of Cache-Status)
    AGE=$(header_of Age)
    LAST_CS=${CS##*, }
}

# header_of NAME: the value of the last NAME line in $T/head (the last response of the exchange),
# without CR; "" when absent.
header_of() {
    tr -d '\r' <"$T/head" | awk -v n="$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" '
        /^HTTP\// { v = "" }
        { i = index($0, ":"); if (i > 0 && tolower(substr($0, 1, i - 1)) == n) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v) } }
        END { print v }'
}

# assert_match TEXT ERE [WHAT]: TEXT matches the extended regular expression ERE (whole text)
assert_match() {
    printf '%s' "$1" | grep -qE -- "^($2)\$" || fail "${3:-value}: expected to match /^($2)\$/, got '$1'"
}

# settle: the store's writer commits fills, freshenings and removals asynchronously, an instant after
# the response; wait that instant before a request that expects to see them.
settle() {
    sleep "${CACHE_SETTLE:-0.2}"
}

# kill9 NAME: SIGKILL, reaped and forgotten (stop_all will not complain about the signal)
kill9() {
    local pid=${_PID[$1]:-}
    [ -n "$pid" ] || fail "no process named $1"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    unset "_PID[$1]"
}

# sleep_until_second_start: sleeps until just after the wall clock's next second, so that a short
# sequence of requests that follows sees at most one tick of the one-second clock caches use for ages
sleep_until_second_start() {
    local ns
    ns=$(date +%N)
    sleep "$(awk -v ns="$ns" 'BEGIN { printf "%.3f", (1000000000 - ns) / 1e9 + 0.02 }')"
}
