#!/usr/bin/env bash
# make install: with DESTDIR and PREFIX=/usr it puts the binary (which runs), the sample configs and
# the docs under DESTDIR/usr and nothing elsewhere; the installed binary checks an installed sample
# config. check-config's --role flag wins over the role in the file, in both directions.
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# --- make install ---
# The release binary is what gets installed. When it is already built (make check builds it before
# the e2e suite), -o keeps make from rebuilding it here: a test must not compile into the tree that
# other runs are using. Otherwise make builds it as `make install` would.
root=$T/root
mk_old=()
[ ! -x "$E2E_SRC/build/cdn-node" ] || mk_old=(-o build/cdn-node)
rc=0
# MAKEFLAGS from an outer make (make e2e) would only add noise here
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -C "$E2E_SRC" "${mk_old[@]}" install DESTDIR="$root" PREFIX=/usr \
    >"$T/install.out" 2>&1 || rc=$?
assert_eq "$rc" 0 "make install exit status ($(tail -n 5 "$T/install.out"))"

bin=$root/usr/bin/cdn-node
{ [ -f "$bin" ] && [ -x "$bin" ]; } || fail "make install did not install an executable usr/bin/cdn-node: $(find "$root" | head -20)"
assert_eq "$(stat -c %a "$bin")" 755 "mode of usr/bin/cdn-node"
rc=0
v=$("$bin" --version 2>&1) || rc=$?
assert_eq "$rc" 0 "installed cdn-node --version exit status"
assert_eq "$v" "cdn-node $(cat "$E2E_SRC/VERSION")" "installed cdn-node --version"
rc=0
h=$("$bin" --help 2>&1) || rc=$?
assert_eq "$rc" 0 "installed cdn-node --help exit status"
assert_contains "$h" "check-config" "installed cdn-node --help"

# the sample configs and the docs, identical to the tree's, mode 644
for f in etc/edge.yaml etc/regional.yaml; do
    inst=$root/usr/share/cdn-node/etc/$(basename "$f")
    [ -f "$inst" ] || fail "make install did not install $f as usr/share/cdn-node/etc/$(basename "$f")"
    cmp -s "$inst" "$E2E_SRC/$f" || fail "installed $(basename "$f") differs from $f"
    assert_eq "$(stat -c %a "$inst")" 644 "mode of the installed $f"
done
for f in README.md docs/*.md; do
    [ -f "$E2E_SRC/$f" ] || continue
    inst=$root/usr/share/doc/cdn-node/$(basename "$f")
    [ -f "$inst" ] || fail "make install did not install $f as usr/share/doc/cdn-node/$(basename "$f")"
    cmp -s "$inst" "$E2E_SRC/$f" || fail "installed $(basename "$f") differs from $f"
done
for f in CONFIG.md ARCHITECTURE.md README.md; do
    [ -f "$root/usr/share/doc/cdn-node/$f" ] || fail "no usr/share/doc/cdn-node/$f"
done

# everything went under DESTDIR/usr (PREFIX honoured, no /usr/local, nothing outside it)
assert_eq "$(cd "$root" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')" "./usr " "top level of DESTDIR"
assert_eq "$(cd "$root/usr" && find . -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')" "./bin ./share " \
    "top level of DESTDIR/usr"

# the installed binary validates an installed sample config (with the dev PKI next to it)
pki
cp "$root/usr/share/cdn-node/etc/edge.yaml" "$T/edge.yaml"
rc=0
"$bin" check-config --config "$T/edge.yaml" >"$T/out" 2>"$T/err" || rc=$?
assert_eq "$rc" 0 "installed check-config of the installed edge.yaml ($(cat "$T/err"))"
assert_contains "$(cat "$T/out")" "role edge" "installed check-config output"

# --- check-config: --role wins over the file's role ---
# check NAME ROLE_ARG...: runs check-config on $T/NAME.yaml; sets RC, OUT, ERR
check() {
    local name=$1
    shift
    RC=0
    "$CDN_NODE" check-config --config "$T/$name.yaml" "$@" >"$T/out" 2>"$T/err" || RC=$?
    OUT=$(cat "$T/out")
    ERR=$(cat "$T/err")
}

# plain_config FILE ROLE: one plain (tls: false) listener on line 4; an edge may have one, a
# regional may not
plain_config() {
    cat >"$1" <<YAML
role: $2
workers: 1
listeners:
  - name: plain
    address: 127.0.0.1
    port: 0
    tls: false
YAML
}

# role: edge in the file, --role regional: the regional rule refuses the plain listener
plain_config "$T/as-edge.yaml" edge
check as-edge
assert_eq "$RC" 0 "check-config of a role: edge file with a plain listener ($ERR)"
assert_contains "$OUT" "role edge" "check-config output without --role"
check as-edge --role regional
assert_eq "$RC" 1 "check-config --role regional of a role: edge file with a plain listener"
assert_contains "$ERR" "must use tls" "check-config --role regional stderr"
assert_contains "$ERR" "$T/as-edge.yaml:4:5:" "check-config --role regional stderr (position of the listener)"
assert_not_contains "$OUT" ": ok" "check-config --role regional stdout"
check as-edge --role edge
assert_eq "$RC" 0 "check-config --role edge of a role: edge file ($ERR)"

# role: regional in the file, --role edge: accepted as an edge
plain_config "$T/as-regional.yaml" regional
check as-regional
assert_eq "$RC" 1 "check-config of a role: regional file with a plain listener"
assert_contains "$ERR" "must use tls" "check-config stderr without --role"
check as-regional --role edge
assert_eq "$RC" 0 "check-config --role edge of a role: regional file with a plain listener ($ERR)"
assert_contains "$OUT" "role edge" "check-config --role edge stdout"
assert_not_contains "$ERR" "must use tls" "check-config --role edge stderr"

# a file without a role takes it from the flag alone; a bad --role value is refused
grep -v '^role:' "$T/as-edge.yaml" >"$T/norole.yaml"
check norole --role regional
assert_eq "$RC" 1 "check-config --role regional of a file without a role"
assert_contains "$ERR" "must use tls" "check-config --role regional stderr (no role in the file)"
check norole --role edge
assert_eq "$RC" 0 "check-config --role edge of a file without a role ($ERR)"
check as-edge --role origin
[ "$RC" -ne 0 ] || fail "check-config --role origin exited 0"
assert_contains "$ERR" "expected edge or regional" "check-config --role origin stderr"
