#!/usr/bin/env bash
# scripts/pgroot.sh DIR
#
# Makes DIR a private PostgreSQL 15 installation tree, a copy of Debian's
# (about 50 MB: bin, lib with pg_cron, share), installs the freshly built
# pulse extension into it with PGXS's DESTDIR, and prints its bin directory.
# PostgreSQL finds its share and lib directories relative to its binaries,
# so a cluster started from DIR's binaries loads this build of pulse and
# never the system's: tests and `make run` need no root to install and do
# not disturb a system-wide installation or each other.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:?usage: pgroot.sh DIR}
SYS_LIB=/usr/lib/postgresql/15
SYS_SHARE=/usr/share/postgresql/15

mkdir -p "$DIR/usr/lib/postgresql" "$DIR/usr/share/postgresql"
if [ ! -x "$DIR$SYS_LIB/bin/postgres" ] ||
	[ "$("$DIR$SYS_LIB/bin/postgres" --version)" != "$("$SYS_LIB/bin/postgres" --version)" ]; then
	rm -rf "${DIR:?}$SYS_LIB" "${DIR:?}$SYS_SHARE"
	cp -a "$SYS_LIB" "$DIR/usr/lib/postgresql/"
	cp -a "$SYS_SHARE" "$DIR/usr/share/postgresql/"
fi
make --no-print-directory install DESTDIR="$DIR" >>"${BUILD_LOG:-/dev/null}" 2>&1 || {
	echo "pgroot: make install DESTDIR=$DIR failed" >&2
	exit 1
}
chmod -R a+rX "$DIR"
echo "$DIR$SYS_LIB/bin"
