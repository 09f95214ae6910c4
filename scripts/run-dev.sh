#!/bin/sh
# `make run`: a two-tier setup on loopback for trying cdn-node by hand.
#   origin   build/origin         http://127.0.0.1:8080
#   regional build/cdn-node       https://127.0.0.1:9443 (client certificate required)
#   edge     build/cdn-node       https://127.0.0.1:8443
# State lives in .run/ (gitignored): the development PKI (made once by scripts/pki.sh), copies of
# etc/edge.yaml and etc/regional.yaml (copied every time, so edits to etc/ take effect; their
# relative pki/... paths resolve against .run/), ports files and logs. Ctrl-C or SIGTERM stops all three.
set -u

cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
run=$root/.run
NODE=build/cdn-node
ORIGIN=build/origin

for b in "$NODE" "$ORIGIN"; do
    if [ ! -x "$b" ]; then
        echo "run-dev: $b is missing; build it with: make" >&2
        exit 1
    fi
done
for f in etc/edge.yaml etc/regional.yaml; do
    if [ ! -f "$f" ]; then
        echo "run-dev: $f is missing" >&2
        exit 1
    fi
done

mkdir -p "$run"
if [ ! -f "$run/pki/ca.crt" ]; then
    sh scripts/pki.sh "$run/pki" || exit 1
fi
cp etc/edge.yaml "$run/edge.yaml"
cp etc/regional.yaml "$run/regional.yaml"
rm -f "$run/origin.ports" "$run/regional.ports" "$run/edge.ports"

# Say which port is taken before starting anything (ss is in iproute2; skip the check without it).
if command -v ss >/dev/null 2>&1; then
    busy=""
    for p in 8080:origin 9443:regional 8443:edge 9901:edge-admin 9902:regional-admin; do
        if [ -n "$(ss -Hltn "sport = :${p%%:*}" 2>/dev/null)" ]; then
            busy="$busy ${p%%:*} (${p#*:})"
        fi
    done
    if [ -n "$busy" ]; then
        echo "run-dev: port(s) already in use:$busy; stop whatever listens there (ss -ltnp) and retry" >&2
        exit 1
    fi
fi

names=""
pids=""

stop_all() {
    for pid in $pids; do
        kill -TERM "$pid" 2>/dev/null
    done
    # KILL whatever is still there after 5 s.
    i=0
    while [ $i -lt 50 ]; do
        left=""
        for pid in $pids; do
            alive "$pid" && left=1
        done
        [ -z "$left" ] && break
        sleep 0.1
        i=$((i + 1))
    done
    for pid in $pids; do
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    pids=""
}

# start NAME CMD...: runs CMD in the background, stderr to .run/NAME.err
start() {
    n=$1
    shift
    "$@" 2>"$run/$n.err" &
    names="$names $n:$!"
    pids="$pids $!"
}

# alive PID: running (a zombie the shell has not reaped yet counts as dead)
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
    [ "$st" != Z ]
}

# dead: prints "NAME" of the first process that is no longer running
dead() {
    for e in $names; do
        if ! alive "${e#*:}"; then
            echo "${e%%:*}"
            return 0
        fi
    done
    return 1
}

# give_up NAME: reports why NAME stopped, stops the others, exits 1
give_up() {
    echo "run-dev: $1 exited during start-up; last lines of .run/$1.err:" >&2
    tail -n 20 "$run/$1.err" >&2
    stop_all
    exit 1
}

trap 'echo; echo "run-dev: stopping"; stop_all; exit 0' INT TERM

start origin "$ORIGIN" --port 8080 --ports-file "$run/origin.ports" --log "$run/origin.log"
start regional "$NODE" run --role regional --config "$run/regional.yaml" --ports-file "$run/regional.ports"
start edge "$NODE" run --role edge --config "$run/edge.yaml" --ports-file "$run/edge.ports"

# Ready once every ports file exists (10 s at most).
i=0
while :; do
    d=$(dead) && give_up "$d"
    [ -f "$run/origin.ports" ] && [ -f "$run/regional.ports" ] && [ -f "$run/edge.ports" ] && break
    if [ $i -ge 100 ]; then
        for n in origin regional edge; do
            [ -f "$run/$n.ports" ] || echo "run-dev: $n did not become ready in 10 s (see .run/$n.err)" >&2
        done
        stop_all
        exit 1
    fi
    sleep 0.1
    i=$((i + 1))
done

pki=$run/pki
cat <<EOF

cdn-node is running: origin http://127.0.0.1:8080, regional https://127.0.0.1:9443, edge https://127.0.0.1:8443
Logs: $run/{origin,regional,edge}.err, requests seen by the origin: $run/origin.log

1) Through the edge (edge -> regional over mTLS -> origin); shows "origin: /hello" (HTTP 200):
   curl --cacert $pki/ca.crt https://localhost:8443/hello

2) Straight to the regional without a client certificate; the TLS handshake fails
   (curl exits with 56 or 35, "alert certificate required"), no HTTP status at all:
   curl --cacert $pki/ca.crt https://localhost:9443/hello

3) The same with the edge's client certificate; shows "origin: /hello" (HTTP 200):
   curl --cacert $pki/ca.crt --cert $pki/edge-client.crt --key $pki/edge-client.key https://localhost:9443/hello

Both tiers cache: send 1) twice with a cacheable object and look at Cache-Status, e.g.
   curl -s -o /dev/null -D - --cacert $pki/ca.crt 'https://localhost:8443/hello?hdr=Cache-Control:max-age%3D60' | grep -i cache-status
Counters: curl http://127.0.0.1:9901/stats (edge), http://127.0.0.1:9902/metrics (regional, Prometheus).

Ctrl-C stops all three.
EOF

# Wait in short sleeps so the trap runs promptly; report a process that dies on its own.
while :; do
    if d=$(dead); then
        echo "run-dev: $d exited unexpectedly; last lines of .run/$d.err:" >&2
        tail -n 20 "$run/$d.err" >&2
        stop_all
        exit 1
    fi
    sleep 1 &
    wait $! 2>/dev/null
done
