#!/bin/sh
# cdn-node under valgrind memcheck, for `make valgrind` (test/e2e/run.sh runs it as CDN_NODE). Any
# memory error or definite/indirect leak makes the process exit 99, which the e2e helpers report as
# a failure; the report itself goes to stderr ($T/NAME.err). The child the store forks to check its
# file at start is checked too (memory only other threads point to must be reachable from a global).
here=$(cd "$(dirname "$0")/.." && pwd)
exec valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --track-origins=no --num-callers=30 \
    "$here/build/cdn-node" "$@"
