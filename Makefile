# Pulse: one Makefile.  PGXS builds the extension; plain rules drive the
# throwaway services (`make run`), the test suites (`make test`) and the
# benchmarks (`make bench`).  See README.md.

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGXS      := /usr/lib/postgresql/15/lib/pgxs/src/makefiles/pgxs.mk

# ---------------------------------------------------------------------------
# The extension (PGXS)
# ---------------------------------------------------------------------------
MODULE_big = pulse
OBJS = \
	extension/pulse.o \
	extension/guc.o \
	extension/support.o \
	extension/worker_shmem.o \
	extension/fingerprint.o \
	extension/fp_walk.o \
	extension/fp_utility.o \
	extension/normalize.o \
	extension/fp_build.o \
	extension/fp_tokens.o \
	extension/cursor_codec.o \
	extension/cursor.o \
	extension/page.o \
	extension/page_query.o \
	extension/page_nullable.o \
	extension/page_sql.o \
	extension/page_cache.o \
	extension/page_args.o \
	extension/page_result.o \
	extension/explain_page.o \
	extension/worker.o \
	extension/aggregate_common.o \
	extension/aggregate_catalog.o \
	extension/aggregate_analyze.o \
	extension/aggregate_capture.o \
	extension/aggregate_apply.o \
	extension/aggregate_delta.o \
	extension/aggregate_refresh.o \
	extension/aggregate.o \
	extension/jobs.o \
	extension/jobs_run.o \
	extension/tag_pending.o \
	extension/tags.o \
	extension/keyed_tags.o
EXTENSION = pulse
DATA = extension/pulse--1.0.sql extension/pulse--1.0--1.1.sql extension/pulse--1.1--1.2.sql
PG_CPPFLAGS = -I$(srcdir)/extension
SHLIB_LINK = -lcrypto

# pg_regress: sql/<feature>.sql <-> expected/<feature>.out
REGRESS = upgrade fingerprint normalize cursor page page_shapes page_writes explain_page errors tags keyed_tags endpoints openapi_catalog jobs aggregates
override CONTRIB_TESTDB = pulse_regress
REGRESS_OPTS = --inputdir=. --load-extension=pulse

ifneq ($(wildcard $(PGXS)),)
include $(PGXS)
else
# Before `scripts/deps.sh` has run there is no PGXS: only the driver targets
# below work, and they install it first.
all:
	@echo "PostgreSQL 15 server headers are missing: run 'make run' or 'scripts/deps.sh'" >&2; exit 1
endif

# ---------------------------------------------------------------------------
# The two commands, and friends
# ---------------------------------------------------------------------------
RUN_DIR  ?= /tmp/pulse-run
RUN_PORT ?= 54329

.PHONY: deps run stop test unit fuzz build-ext

deps:
	@scripts/deps.sh

# Build the extension (quietly unless it fails).  `make run`, `make test`
# and the benchmarks install it into private copies of the PostgreSQL tree
# (scripts/pgroot.sh); `make install` (PGXS) installs it system-wide.
build-ext: deps
	@mkdir -p build
	@$(MAKE) --no-print-directory all >build/build.log 2>&1 || { cat build/build.log; exit 1; }
	@echo "build: pulse.so built (log: build/build.log)"

run: build-ext
	@RUN_DIR=$(RUN_DIR) RUN_PORT=$(RUN_PORT) METRICS=$(METRICS) REPLICAS=$(REPLICAS) scripts/run.sh

stop:
	@RUN_DIR=$(RUN_DIR) scripts/run.sh stop

test: build-ext
	@scripts/test.sh

# Pure-C unit tests of the cursor codec (no server needed).
unit:
	@mkdir -p build
	$(CC) -std=c11 -O1 -g -Wall -Wextra -Werror -fsanitize=address,undefined \
		-Iextension extension/cursor_codec.c extension/test/cursor_codec_test.c \
		-lcrypto -o build/cursor_codec_test
	build/cursor_codec_test

# libFuzzer target for the cursor decoder; FUZZ_SECONDS bounds the run.
FUZZ_SECONDS ?= 20
fuzz:
	@mkdir -p build/fuzz-corpus
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iextension \
		extension/cursor_codec.c extension/test/cursor_fuzz.c -lcrypto \
		-o build/cursor_fuzz
	build/cursor_fuzz -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		-print_final_stats=1 build/fuzz-corpus extension/test/fuzz-seeds

# Keyset pagination (pulse.page) vs LIMIT/OFFSET at depth, with pgbench on a
# throwaway cluster; writes bench/results/<date>-page-depth.md.  Parameters
# (ROWS, DURATION, DEPTHS, REPEATS, ...) by environment: bench/page/README.md.
.PHONY: bench-page
bench-page: build-ext
	@bench/page/run.sh

# ---------------------------------------------------------------------------
# pulse-proxy (plain rules; -Wall -Wextra -Werror)
# ---------------------------------------------------------------------------
PROXY_PKGS    = libh2o-evloop libpq hiredis openssl zlib yaml-0.1 jansson libjwt libcurl
PROXY_CFLAGS  = -std=gnu11 -g -Wall -Wextra -Werror -Iproxy/include -DH2O_USE_LIBUV=0 \
	$(shell pkg-config --cflags $(PROXY_PKGS) 2>/dev/null)
PROXY_LDLIBS  = $(shell pkg-config --libs $(PROXY_PKGS) 2>/dev/null) -lpthread -lm
PROXY_SRCS    = $(wildcard proxy/src/*.c)
PROXY_HDRS    = $(wildcard proxy/include/*.h)
PROXY_LIBSRCS = $(filter-out proxy/src/main.c,$(PROXY_SRCS))
PROXY_TESTS   = $(patsubst proxy/test/%.c,build/proxy-test/%,$(wildcard proxy/test/*_test.c))
SANITIZE      = -fsanitize=address,undefined -fno-omit-frame-pointer

.PHONY: proxy proxy-asan proxy-unit proxy-e2e format format-check
proxy: build/pulse-proxy
proxy-asan: build/asan/pulse-proxy

build/pulse-proxy: $(PROXY_SRCS) $(PROXY_HDRS)
	@mkdir -p $(@D)
	$(CC) -O2 $(PROXY_CFLAGS) $(PROXY_SRCS) -o $@ $(PROXY_LDLIBS)

# The ASan/UBSan build is compiled once per source file: the proxy and every
# unit test link the same objects (compiling all sources into each of the
# tests cost minutes of every `make test`).
ASAN_OBJS     = $(patsubst proxy/src/%.c,build/asan/obj/%.o,$(PROXY_LIBSRCS))

build/asan/obj/%.o: proxy/src/%.c $(PROXY_HDRS)
	@mkdir -p $(@D)
	$(CC) -O1 $(SANITIZE) $(PROXY_CFLAGS) -c $< -o $@

build/asan/pulse-proxy: build/asan/obj/main.o $(ASAN_OBJS)
	$(CC) -O1 $(SANITIZE) $^ -o $@ $(PROXY_LDLIBS)

# Unit tests of the proxy's pure pieces, under ASan/UBSan: one binary per
# proxy/test/<name>_test.c, linked with every proxy object but main.o.
build/proxy-test/%: proxy/test/%.c $(ASAN_OBJS) $(PROXY_HDRS) proxy/test/test.h proxy/test/redis_server.h
	@mkdir -p $(@D)
	$(CC) -O1 $(SANITIZE) $(PROXY_CFLAGS) $< $(ASAN_OBJS) -o $@ $(PROXY_LDLIBS)

proxy-unit: $(PROXY_TESTS)
	@rc=0; for t in $(PROXY_TESTS); do echo "--- $$t"; $$t || rc=1; done; exit $$rc

# The unit test binaries, for scripts/test.sh to build them before suites run side by side.
.PHONY: print-proxy-tests
print-proxy-tests:
	@echo $(PROXY_TESTS)

# End-to-end tests against a throwaway PostgreSQL (PULSE_PROXY_BIN picks the
# binary; scripts/test.sh runs them for both builds).
proxy-e2e: build/pulse-proxy
	@bash proxy/test/e2e.sh

# clang-format (style in .clang-format) over the proxy's C files.
PROXY_FMT_FILES = $(PROXY_SRCS) $(PROXY_HDRS) $(wildcard proxy/test/*.c proxy/test/*.h)
format:
	clang-format -i $(PROXY_FMT_FILES)
format-check:
	@clang-format --dry-run --Werror $(PROXY_FMT_FILES) && echo "format-check: $(words $(PROXY_FMT_FILES)) files ok"

# ---------------------------------------------------------------------------
# Load tests: pulse-proxy side by side with the Flask and Express peers on
# the same dataset (bench/README.md).  Parameters by environment (ROWS,
# QUICK=1, DURATION, SERVERS, SOAK_SECONDS, ...); the report goes to
# bench/results/<UTC date>-<NAME>.md.  A proxy that does not build is
# reported as not measured.
# ---------------------------------------------------------------------------
.PHONY: bench bench-data bench-peers bench-scenario bench-clean
bench: build-ext
	-@$(MAKE) --no-print-directory proxy
	@bench/run.sh

bench-data: build-ext
	@bench/run.sh data

bench-peers: build-ext
	-@$(MAKE) --no-print-directory proxy
	@bench/run.sh peers

# make bench-scenario S="mix page agg cache spike soak"
bench-scenario: build-ext
	-@$(MAKE) --no-print-directory proxy
	@bench/run.sh scenario $(S)

bench-clean:
	@bench/run.sh clean

# pulse-proxy against h2o (static file) and pgbench -S on one machine
# (bench/proxy/README.md); report in bench/results/<UTC date>-proxy.md.
.PHONY: bench-proxy
bench-proxy: build-ext
	@$(MAKE) --no-print-directory proxy
	@bench/proxy/run.sh

# pulse-proxy's protections: overhead of rate limits + tracing (+ metrics) on
# cached hits, and a 5x spike with load shedding (bench/protect/README.md);
# report in bench/results/<UTC date>-protect.md (+ -spike.png).
.PHONY: bench-protect
bench-protect: build-ext
	@$(MAKE) --no-print-directory proxy
	@bench/protect/run.sh
