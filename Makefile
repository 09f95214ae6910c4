# cdn-node build. `make` builds build/cdn-node; `make check` runs every test (release + ASan/UBSan);
# `make run` starts a two-tier setup on loopback. See README.md.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
PKGS    := libuv openssl yaml-0.1 lmdb

CSTD    := -std=c17 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
           -Wwrite-strings -Wformat=2 -Wundef -Wvla -Wno-unused-parameter
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
BASE_CFLAGS = $(CSTD) $(WARN) -I. -g -fno-omit-frame-pointer -MMD -MP $(PKG_CFLAGS)
SAN     ?= address,undefined
SANFLAGS := -fsanitize=$(SAN) -fno-sanitize-recover=undefined

REL_CFLAGS := -O2 $(BASE_CFLAGS)
SAN_CFLAGS := -O1 $(BASE_CFLAGS) $(SANFLAGS)

VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CORE_SRCS := $(wildcard lib/*.c) $(wildcard cache/*.c) $(wildcard roles/*.c)
CMD_SRCS  := $(wildcard cmd/*.c)
UNIT_SRCS := $(wildcard test/unit/*.c)
FUZZ_SRCS := $(wildcard test/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst test/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))

# $(call objs,variant,sources)
objs = $(patsubst %.c,build/$(1)/obj/%.o,$(2))

REL_CORE := $(call objs,rel,$(CORE_SRCS))
SAN_CORE := $(call objs,san,$(CORE_SRCS))

.PHONY: all deps check run install clean unit e2e fuzz-replay asan layering format format-check fuzz fuzz-short valgrind soak bench

all: deps build/cdn-node build/origin

deps:
	@sh scripts/deps.sh

build/rel/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(REL_CFLAGS) -DCDN_VERSION='"$(VERSION)"' -c $< -o $@

build/san/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(SAN_CFLAGS) -DCDN_VERSION='"$(VERSION)"' -c $< -o $@

build/cdn-node: $(REL_CORE) $(call objs,rel,$(CMD_SRCS))
	$(CC) -o $@ $^ $(PKG_LIBS)

build/san/cdn-node: $(SAN_CORE) $(call objs,san,$(CMD_SRCS))
	$(CC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS)

build/origin: build/rel/obj/test/origin/origin.o $(REL_CORE)
	$(CC) -o $@ $^ $(PKG_LIBS)

build/test-unit: $(call objs,rel,$(UNIT_SRCS)) $(REL_CORE)
	$(CC) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

build/san/test-unit: $(call objs,san,$(UNIT_SRCS)) $(SAN_CORE)
	$(CC) $(SANFLAGS) -o $@ $^ $(CHECK_LIBS) $(PKG_LIBS)

# Fuzz targets built with gcc and a replay main (test/fuzz/replay.c) that runs every corpus file.
build/san/fuzz-%: build/san/obj/test/fuzz/fuzz_%.o build/san/obj/test/fuzz/replay.o $(SAN_CORE)
	$(CC) $(SANFLAGS) -o $@ $^ $(PKG_LIBS)

unit: deps build/test-unit build/san/test-unit
	CK_DEFAULT_TIMEOUT=30 ./build/test-unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 CK_DEFAULT_TIMEOUT=60 ./build/san/test-unit

fuzz-replay: deps $(patsubst %,build/san/fuzz-%,$(FUZZ_NAMES))
	@for n in $(FUZZ_NAMES); do \
	  echo "fuzz replay: $$n"; \
	  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 ./build/san/fuzz-$$n test/fuzz/corpus/$$n || exit 1; \
	done

# libFuzzer builds (clang + libclang-rt-14-dev); FUZZ_SECONDS per target over a copy of the corpus.
FUZZ_SECONDS ?= 60
# The core goes into an archive, so that a target links only the modules it uses.
FUZZ_FLAGS := $(CSTD) -I. -g -O1 -fsanitize=fuzzer-no-link,address,undefined
build/fuzz/libcore.a: $(CORE_SRCS) $(wildcard lib/*.h cache/*.h)
	@command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang libclang-rt-14-dev)"; exit 1; }
	@rm -rf build/fuzz/obj && mkdir -p build/fuzz/obj
	@for f in $(CORE_SRCS); do clang $(FUZZ_FLAGS) -c $$f -o build/fuzz/obj/$$(echo $$f | tr / _).o || exit 1; done
	@rm -f $@ && ar rcs $@ build/fuzz/obj/*.o
fuzz: build/fuzz/libcore.a
	@for n in $(FUZZ_NAMES); do \
	  clang $(CSTD) -I. -g -O1 -fsanitize=fuzzer,address,undefined -o build/fuzz/fuzz-$$n test/fuzz/fuzz_$$n.c \
	    build/fuzz/libcore.a $(PKG_LIBS) || exit 1; \
	  rm -rf build/fuzz/corpus-$$n && cp -r test/fuzz/corpus/$$n build/fuzz/corpus-$$n; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
	  ./build/fuzz/fuzz-$$n -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 build/fuzz/corpus-$$n \
	    >build/fuzz/fuzz-$$n.log 2>&1 || { tail -n 40 build/fuzz/fuzz-$$n.log; exit 1; }; \
	  grep -E "^Done|^#[0-9]+.*DONE" build/fuzz/fuzz-$$n.log | tail -n 1; \
	done

# make check runs every fuzzer briefly when clang is there (FUZZ_CHECK_SECONDS each; 0 = skip).
FUZZ_CHECK_SECONDS ?= 5
fuzz-short:
	@if [ "$(FUZZ_CHECK_SECONDS)" != 0 ] && command -v clang >/dev/null && echo 'int main(void){return 0;}' | \
	    clang -fsanitize=fuzzer-no-link -x c - -o /dev/null 2>/dev/null; then \
	  $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_CHECK_SECONDS); \
	else echo "fuzz-short: skipped (no clang with libFuzzer; apt-get install clang libclang-rt-14-dev)"; fi

asan: deps build/san/cdn-node build/san/test-unit

e2e: deps build/san/cdn-node build/origin
	CDN_NODE=$(CURDIR)/build/san/cdn-node ORIGIN=$(CURDIR)/build/origin sh test/e2e/run.sh

# The e2e suite with cdn-node under valgrind memcheck (slow: not part of make check). VALGRIND_TESTS
# picks tests by name words like test/e2e/run.sh does (empty = all).
VALGRIND_TESTS ?=
valgrind: deps build/cdn-node build/origin
	@command -v valgrind >/dev/null || { echo "make valgrind needs valgrind (apt-get install valgrind)"; exit 1; }
	CDN_NODE=$(CURDIR)/scripts/valgrind-node.sh ORIGIN=$(CURDIR)/build/origin E2E_TIMEOUT=600 E2E_SLOW=4 \
	  sh test/e2e/run.sh $(VALGRIND_TESTS)

# Load and slow clients: 10 000 idle TLS connections (bytes each), slowloris, a slow reader.
soak: all
	bash bench/soak.sh

# Dependencies point downward only (docs/ARCHITECTURE.md); parsers stay free of I/O.
layering:
	@! grep -nE '#include "(roles|cmd)/' lib/*.[ch] cache/*.[ch] 2>/dev/null || { echo "layering: lib/ or cache/ includes roles/ or cmd/"; exit 1; }
	@! grep -nE '#include [<"](uv\.h|openssl/)' lib/http1.c lib/remap.c cache/policy.c cache/entry.c cache/key.c 2>/dev/null || { echo "layering: a pure module includes I/O headers"; exit 1; }
	@! grep -nE '#include "lib/(proxy|server|conn|pool|admin)' cache/*.[ch] 2>/dev/null || { echo "layering: cache/ uses the request path"; exit 1; }
	@echo "layering: ok"

check: all asan layering format-check unit fuzz-replay fuzz-short e2e
	@echo "make check: all suites passed"

run: all
	@sh scripts/run-dev.sh

# The systemd unit always goes to PREFIX/share/cdn-node/systemd/ (with ExecStart pointing at
# PREFIX/bin); set SYSTEMDUNITDIR (e.g. /usr/lib/systemd/system, or /etc/systemd/system for a
# /usr/local install) to install it where systemd looks as well. See docs/OPERATIONS.md.
SYSTEMDUNITDIR ?=
install: build/cdn-node
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/cdn-node/etc $(DESTDIR)$(PREFIX)/share/doc/cdn-node \
	  $(DESTDIR)$(PREFIX)/share/cdn-node/systemd $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 build/cdn-node $(DESTDIR)$(PREFIX)/bin/cdn-node
	install -m 0644 etc/*.yaml $(DESTDIR)$(PREFIX)/share/cdn-node/etc/
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/cdn-node/
	install -m 0644 dist/cdn-node.1 $(DESTDIR)$(PREFIX)/share/man/man1/cdn-node.1
	sed 's|/usr/bin/cdn-node|$(PREFIX)/bin/cdn-node|g' dist/cdn-node@.service \
	  >$(DESTDIR)$(PREFIX)/share/cdn-node/systemd/cdn-node@.service
	chmod 0644 $(DESTDIR)$(PREFIX)/share/cdn-node/systemd/cdn-node@.service
	if [ -n "$(SYSTEMDUNITDIR)" ]; then \
	  install -d $(DESTDIR)$(SYSTEMDUNITDIR) && \
	  install -m 0644 $(DESTDIR)$(PREFIX)/share/cdn-node/systemd/cdn-node@.service $(DESTDIR)$(SYSTEMDUNITDIR)/; \
	fi

FMT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FMT_FILES)
format-check:
	@command -v clang-format >/dev/null || { echo "format-check: clang-format not installed, skipped"; exit 0; }
	clang-format --dry-run -Werror $(FMT_FILES)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
.SECONDARY:

# make bench: cdn-node vs nginx vs Apache Traffic Server 9.2 in the same two-tier mTLS topology, plus a
# static-TLS limit server (bench/run.sh; cases a-g of issue 8, about 13-14 minutes on 2 cores). Installs wrk,
# nginx and trafficserver when run as root (no service is started). Knobs: BENCH_DURATION, BENCH_REPS,
# BENCH_WORKERS, BENCH_SYSTEMS, BENCH_CASES, ... (see the script's header). Results in bench/results/ and
# README.md. The older single benchmarks stay as bench-evict, bench-cache and bench-tunnel.
bench: all
	bash bench/run.sh

# SIEVE vs LRU hit ratios on Zipf traces (bench/evict_bench.c, results in bench/README.md). Not timed.
.PHONY: bench-evict
bench-evict: build/evict-bench
	./build/evict-bench
build/evict-bench: build/rel/obj/bench/evict_bench.o build/rel/obj/cache/evict.o build/rel/obj/lib/util.o
	$(CC) -o $@ $^ $(PKG_LIBS) -lm

# Edge cache hits, cdn-node vs nginx in the same two-tier mTLS topology (bench/cache_hit.sh): wrk over
# HTTPS keep-alive, 1 KiB and 100 KiB, 1 and 2 workers; about 5 minutes. Installs wrk and nginx when
# run as root. Table on stdout and in build/bench-cache.md; see bench/README.md.
.PHONY: bench-cache
bench-cache:
	bash bench/cache_hit.sh

# Edge miss -> regional hit over mTLS: pooled vs a connection per request vs nginx (bench/tiering.sh).
.PHONY: bench-tiering
bench-tiering: build/cdn-node
	bash bench/tiering.sh

# CONNECT tunnel relay throughput, 100 MiB through edge -> regional -> TLS service vs direct (bench/tunnel.sh).
.PHONY: bench-tunnel
bench-tunnel: build/cdn-node
	bash bench/tunnel.sh
