#!/bin/bash
# The main job on a local lab: builds the tree if needed, starts a real Consul
# agent and a real 3-member Patroni cluster on loopback, puts the fork with
# consul_redirect.so in front, runs a writer through it across a switchover and
# prints what the writer saw and SHOW CONSUL before and after.  Run as root
# (Patroni, PostgreSQL and PgBouncer are started as the postgres user).
set -euo pipefail
cd "$(dirname "$0")"
export PGBC_CACHE=${PGBC_CACHE:-/var/cache/pgbouncer-consul}
log=$(mktemp -d /tmp/pgbc-demo-build-XXXXXX)
trap 'rm -rf "$log"' EXIT
scripts/install-deps.sh "$log"
if [ ! -f Makefile ]; then
	autoreconf -fi >"$log/autoreconf.log" 2>&1 || { cat "$log/autoreconf.log"; exit 1; }
	./configure >"$log/configure.log" 2>&1 || { tail -n 30 "$log/configure.log"; exit 1; }
fi
echo "== building the fork and the plugin"
make -j2 >"$log/make.log" 2>&1 || { tail -n 40 "$log/make.log"; exit 1; }
exec /usr/bin/python3 scripts/demo.py
