#!/usr/bin/env bash
# Installs the Debian packages Pulse needs, and only those that are missing.
# Idempotent: when everything is present it prints one line and touches
# nothing.  Runs apt-get as root, or through sudo for an ordinary user.
set -euo pipefail

# Build and runtime dependencies.  The load tools (wrk, h2load, pgbench) and
# the fuzzing toolchain are here too so that `make test` and `make bench`
# work from a clean machine, and so are the benchmark's peers (Flask under
# Gunicorn; Node.js, whose npm installs bench/peers/express's packages; nginx
# and Varnish, the HTTP caches of bench/peers/nginx and bench/peers/varnish;
# Chromium, the headless browser of the CORS, /docs and live-endpoint tests)
# and bench/proxy's static-file baseline, the h2o server.  The benchmark runs
# nginx and varnishd itself, from its own directory; where Debian starts
# their system services on install (not in containers with a policy-rc.d),
# they are not used and may be disabled.
PACKAGES=(
	build-essential
	pkg-config
	postgresql-15
	postgresql-client-15
	postgresql-server-dev-15
	postgresql-15-cron
	postgresql-contrib
	libpq-dev
	redis-server
	libhiredis-dev
	libh2o-evloop-dev
	libssl-dev
	zlib1g-dev
	libyaml-dev
	libjansson-dev
	libjwt-dev
	libcurl4-openssl-dev
	clang
	libclang-rt-14-dev
	wrk
	nghttp2-client
	h2o
	nginx
	varnish
	gnuplot-nox
	util-linux
	python3-flask
	python3-psycopg2
	python3-jwt
	gunicorn
	nodejs
	chromium
	prometheus
)

missing=()
for p in "${PACKAGES[@]}"; do
	status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
	[ "$status" = "installed" ] || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
	echo "deps: all ${#PACKAGES[@]} Debian packages present"
	exit 0
fi

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || { echo "deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
	SUDO=sudo
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

# Debian's postgresql-common may create and start a default cluster on port
# 5432; Pulse never uses it and runs its own throwaway clusters instead.
