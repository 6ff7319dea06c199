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
	extension/fingerprint.o \
	extension/cursor_codec.o \
	extension/cursor.o \
	extension/page.o
EXTENSION = pulse
DATA = extension/pulse--1.0.sql
PG_CPPFLAGS = -I$(srcdir)/extension
SHLIB_LINK = -lcrypto

# pg_regress: sql/<feature>.sql <-> expected/<feature>.out
REGRESS = fingerprint normalize cursor page explain_page errors
CONTRIB_TESTDB = pulse_regress
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

.PHONY: deps run stop test unit fuzz install-ext

deps:
	@scripts/deps.sh

# Build, then install into the PostgreSQL 15 tree (as root, or through sudo).
install-ext: deps
	@$(MAKE) --no-print-directory all
	@if [ "$$(id -u)" -eq 0 ]; then $(MAKE) --no-print-directory install >/dev/null; \
	 else sudo $(MAKE) --no-print-directory install >/dev/null; fi
	@echo "build: pulse.so built and installed"

run: install-ext
	@RUN_DIR=$(RUN_DIR) RUN_PORT=$(RUN_PORT) scripts/run.sh

stop:
	@RUN_DIR=$(RUN_DIR) scripts/run.sh stop

test: install-ext
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
bench-page: install-ext
	@bench/page/run.sh
