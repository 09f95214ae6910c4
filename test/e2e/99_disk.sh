#!/usr/bin/env bash
# The disk under the cache fails. First it fills up (a 3 MiB tmpfs under a store configured for 64 MiB),
# then the store's file turns read-only under a running node. Each time serving goes on, every response
# arrives whole, the failed writes are counted (cache_store_errors), what was stored before is served
# whole, and nothing half-written is served. Needs root (to mount a tmpfs, and for chattr +i); the
# parts that cannot run here are skipped, and the test says so.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

mnt=$T/disk
mkdir -p "$mnt"
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=3m tmpfs "$mnt" 2>/dev/null; then
    echo "skipped: cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)"
    exit 0
fi
E2E_ON_EXIT='umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true'
export E2E_ON_EXIT

pki
start_origin
regional_config "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
REGIONAL_PORT=$(port_of regional https)
edge_config "$T/edge.yaml" "$REGIONAL_PORT"
cat >>"$T/edge.yaml" <<YAML
cache:
  path: $mnt/cache-edge
  size: 64MiB
  max_object_size: 1MiB
admin:
  port: 0
YAML
start_node edge edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of edge https)
ap=$(port_of edge admin)
st() { curl -sS "http://127.0.0.1:$ap/stats" | python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# fill the disk: 30 objects of 300 KB = 9 MB through a 3 MiB filesystem
for i in $(seq 1 30); do
    fetch "/bytes/300000?hdr=Cache-Control:max-age%3D600&f=$i"
    assert_eq "$CODE" 200 "object $i on a full disk"
    assert_eq "$(stat -c %s "$T/body")" 300000 "size of object $i on a full disk"
    cmp -s "$T/body" <(yes "$PATTERN" | tr -d '\n' | head -c 300000) || fail "body of object $i differs"
done
for ((i = 0; i < 30; i++)); do
    [ "$(st 'd["cache_store_errors"]')" -gt 0 ] && break
    sleep 0.1
done
[ "$(st 'd["cache_store_errors"]')" -gt 0 ] || fail "no store error counted while the disk was full"
# what was stored is served whole
for i in $(seq 1 30); do
    fetch "/bytes/300000?hdr=Cache-Control:max-age%3D600&f=$i"
    assert_eq "$(stat -c %s "$T/body")" 300000 "size of object $i again"
done

fetch "/hello"
assert_eq "$CODE" 200 "a small object on the full disk"
echo "store errors counted on the full disk: $(st 'd["cache_store_errors"]')"
stop edge

# the store's file turns read-only under a running node (chattr +i: writes through the descriptors
# the store holds fail with EPERM, as on a filesystem remounted read-only after errors)
if ! command -v chattr >/dev/null; then
    echo "skipped the read-only part: no chattr"
    stop_all
    exit 0
fi
sed -i "s|^  path: $mnt/cache-edge|  path: cache-ro|" "$T/edge.yaml"
start_node ro edge "$T/edge.yaml"
EDGE=https://127.0.0.1:$(port_of ro https)
ap=$(port_of ro admin)
fetch "/bytes/5000?hdr=Cache-Control:max-age%3D600&ro=before"
for ((i = 0; i < 30; i++)); do # stored before the disk turns read-only
    fetch "/bytes/5000?hdr=Cache-Control:max-age%3D600&ro=before"
    [[ "$LAST_CS" == *hit* ]] && break
    sleep 0.1
done
[[ "$LAST_CS" == *hit* ]] || fail "no hit before the read-only part: $CS"
if ! chattr +i "$T/cache-ro/data.mdb" 2>/dev/null; then
    echo "skipped the read-only part: chattr +i is not supported here"
    stop_all
    exit 0
fi
E2E_ON_EXIT="chattr -i '$T/cache-ro/data.mdb' 2>/dev/null; $E2E_ON_EXIT"
errs=$(st 'd["cache_store_errors"]')
for i in $(seq 1 10); do
    fetch "/bytes/100000?hdr=Cache-Control:max-age%3D600&ro=$i"
    assert_eq "$CODE" 200 "object $i on a read-only store"
    assert_eq "$(stat -c %s "$T/body")" 100000 "size of object $i on a read-only store"
done
fetch "/bytes/5000?hdr=Cache-Control:max-age%3D600&ro=before"
[[ "$LAST_CS" == *hit* ]] || fail "what was stored is not served from the read-only store: $CS"
for ((i = 0; i < 30; i++)); do
    [ "$(st 'd["cache_store_errors"]')" -gt "$errs" ] && break
    sleep 0.1
done
[ "$(st 'd["cache_store_errors"]')" -gt "$errs" ] || fail "no store error counted on the read-only store"
chattr -i "$T/cache-ro/data.mdb"
echo "store errors counted on the read-only store: $(($(st 'd["cache_store_errors"]') - errs))"
stop_all
