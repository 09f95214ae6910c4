#!/bin/sh
# Dependency step shared by `make`, `make run` and `make check`: checks the build and test
# dependencies and installs the Debian packages when it can (root, or passwordless sudo).
set -u
PKGS="libssl-dev libuv1-dev libyaml-dev liblmdb-dev check pkg-config curl openssl"
missing=""
if ! command -v pkg-config >/dev/null 2>&1; then
    missing="pkg-config"
else
    for m in openssl libuv yaml-0.1 lmdb check; do
        pkg-config --exists "$m" 2>/dev/null || missing="$missing $m"
    done
fi
for t in curl openssl cc make; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -z "$missing" ] && exit 0

echo "cdn-node: missing build dependencies:$missing" >&2
if [ "$(id -u)" = 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "cdn-node: install them with:" >&2
    echo "    sudo apt-get update && sudo apt-get install -y $PKGS gcc make" >&2
    exit 1
fi
echo "cdn-node: installing: $PKGS" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 &&
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $PKGS gcc make >&2 || {
    echo "cdn-node: apt-get failed; run: sudo apt-get install -y $PKGS gcc make" >&2
    exit 1
}
