#!/usr/bin/env bash
# The HTTP cache of both tiers: collapsed forwarding (many clients asking for one cold object at once
# cause one request to the origin, and every client gets the whole body) and PURGE (PURGE /URL on a
# tier's admin listener drops the object stored there; the next request fetches it again).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

NODE_YAML='admin: {port: 0}'
# shellcheck disable=SC2119 # no extra cache settings
cache_tiers
MA='hdr=Cache-Control:max-age%3D60'

# parallel N URL: N clients at once through the edge; bodies in $T/par-I, heads in $T/parh-I
parallel() {
    local n=$1 url=$2 i pids=()
    rm -f "$T"/par-* "$T"/parh-*
    for ((i = 1; i <= n; i++)); do
        ecurl -o "$T/par-$i" -D "$T/parh-$i" "$EDGE$url" &
        pids+=($!)
    done
    for i in "${pids[@]}"; do
        wait "$i" || fail "one of $n parallel requests for $url failed (curl exit $?)"
    done
}

# --- 100 clients, one cold key behind a slow origin: one request upstream ---------------------------------
U="/slow/1000?$MA"
parallel 100 "$U"
for ((i = 1; i <= 100; i++)); do
    assert_eq "$(cat "$T/par-$i")" "slow" "body of parallel request $i"
    assert_contains "$(head -n1 "$T/parh-$i")" " 200" "status of parallel request $i"
done
assert_eq "$(grep -c "^GET $U\$" "$T/origin.log")" 1 "requests at the origin for 100 parallel requests"
assert_eq "$(access_count regional 1)" 1 "requests at the regional for 100 parallel requests"
collapsed=$(cat "$T"/parh-* | tr -d '\r' | grep -ciE '^cache-status: .*cdn-node-edge; (hit|fwd=[a-z-]+;.*collapsed)' || true)
assert_eq "$collapsed" 99 "responses marked as collapsed or hit at the edge"

# --- 50 clients, one cold multi-chunk object: one request upstream, every body whole ------------------------
U="/bytes/3000000?$MA"
parallel 50 "$U"
want=$(pattern_sha256 3000000)
for ((i = 1; i <= 50; i++)); do
    assert_eq "$(sha256_of "$T/par-$i")" "$want" "body of parallel request $i for $U"
done
assert_eq "$(grep -c "^GET $U\$" "$T/origin.log")" 1 "requests at the origin for 50 parallel requests of $U"

# --- PURGE on the admin listener drops a stored object, tier by tier ------------------------------------
# purge NAME URL: PURGE /URL on NAME's admin listener; prints the status
purge() {
    curl -sS -X PURGE -o "$T/purge.out" -w '%{http_code}' "http://127.0.0.1:$(port_of "$1" admin)/$2" ||
        fail "PURGE $2 on $1: curl exit $?"
}
fetch "/p?$MA"
settle
fetch "/p?$MA"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=[0-9]+" "Cache-Status before the PURGE"
o=$(origin_count) r=$(access_count regional)
assert_eq "$(purge edge "https://$EDGE_HOST/p?$MA")" 200 "status of PURGE of a stored object at the edge"
assert_contains "$(cat "$T/purge.out")" '"purged": 1' "answer of PURGE at the edge"
settle
assert_eq "$(purge edge "https://$EDGE_HOST/p?$MA")" 404 "status of PURGE of an object no longer stored"
fetch "/p?$MA"
assert_eq "$CODE" 200 "status of GET after the edge's PURGE"
assert_eq "$(cat "$T/body")" "origin: /p?$MA" "body of GET after the edge's PURGE"
assert_match "$CS" "cdn-node-regional; hit; ttl=[0-9]+, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=[0-9]+" \
    "Cache-Status of GET after the edge's PURGE (the regional still has it)"
assert_eq "$(origin_count)" "$o" "requests at the origin after the edge's PURGE"
assert_eq "$(access_count regional $((r + 1)))" $((r + 1)) "requests at the regional after the edge's PURGE"
settle
assert_eq "$(purge regional "https://$REGIONAL_HOST/p?$MA")" 200 "status of PURGE at the regional"
assert_eq "$(purge edge "https://$EDGE_HOST/p?$MA")" 200 "status of PURGE at the edge, again"
settle
fetch "/p?$MA"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=[0-9]+, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=[0-9]+" \
    "Cache-Status of GET after PURGE at both tiers"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after PURGE at both tiers"

stop_all
