#!/bin/bash
# Runs every test of pgbouncer-consul on this machine: installs the Debian
# packages it lacks (as root), fetches and verifies the pinned upstream,
# builds, then runs unit tests, fuzzers, the fork's tests, the attack tests
# of our security fixes, PgBouncer's own suite (unpatched, fork, fork +
# plugin), the Debian packages installed in a throwaway bookworm root, and
# the integration tests against a real Consul and Patroni lab (the plugin's
# and the helper's against Patroni 3.0.2 and 4.x); then builds
# the tree again with ASan + UBSan (build-san/) and runs the unit tests, the
# fork's tests and the plugin's and helper's lab tests on it.  A skipped
# test, and any sanitizer report, fails its stage.  Every server it starts
# is stopped by PID.
# Usage: ./test.sh [--quick]   (--quick skips PgBouncer's own suite)
set -euo pipefail

top=$(cd "$(dirname "$0")" && pwd)
cd "$top"
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

export PGBC_CACHE=${PGBC_CACHE:-$([ "$(id -u)" = 0 ] && echo /var/cache/pgbouncer-consul || echo "$HOME/.cache/pgbouncer-consul")}
results=$top/test-results
rm -rf "$results"
mkdir -p "$results"
# tests/summary.py counts only results newer than this
touch "$results/.started"
failures=()

say() { printf '\n=== %s\n' "$*"; }
stage() {
	# stage NAME COMMAND...: run one stage, remember a failure, go on
	local name=$1
	shift
	say "$name"
	local t0=$SECONDS
	if "$@"; then
		echo "--- $name: ok ($((SECONDS - t0)) s)"
	else
		echo "--- $name: FAILED ($((SECONDS - t0)) s)"
		failures+=("$name")
	fi
}

# --- Debian packages ----------------------------------------------------
scripts/install-deps.sh "$results"
# the lab's second and third Patroni (PGBC_PATRONI=4, 4.1): trixie's and
# sid's, pinned, unpacked into the cache beside bookworm's installed 3.0.2;
# cached after the first run
scripts/fetch-patroni.sh "$PGBC_CACHE"
scripts/fetch-patroni.sh "$PGBC_CACHE" tests/lab/patroni41.pin
patroni3=$(dpkg-query -W -f='${Version}' patroni | sed 's/-[^-]*$//')
patroni4=$(sed -n 's/^PATRONI_VERSION=//p' tests/lab/patroni4.pin)
patroni41=$(sed -n 's/^PATRONI_VERSION=//p' tests/lab/patroni41.pin)
# every lab stage runs on bookworm's Patroni unless it says otherwise
export PGBC_PATRONI=3

# --- build ----------------------------------------------------------------
say "building (fetch + verify upstream, patch, configure, make)"
t0=$SECONDS
if [ ! -f Makefile ] || [ configure.ac -nt configure ] || [ Makefile.am -nt Makefile.in ]; then
	autoreconf -fi >"$results/autoreconf.log" 2>&1 || { cat "$results/autoreconf.log"; exit 1; }
	./configure >"$results/configure.log" 2>&1 || { tail -n 30 "$results/configure.log"; exit 1; }
fi
make -j2 >"$results/make.log" 2>&1 || { tail -n 40 "$results/make.log"; exit 1; }
# the unpatched build of the same sources, and both with AddressSanitizer,
# for the attack tests and PgBouncer's own suite
make -j2 upstream-plain upstream-asan >"$results/make-variants.log" 2>&1 ||
	{ tail -n 40 "$results/make-variants.log"; exit 1; }
echo "build: $((SECONDS - t0)) s; $(upstream/pgbouncer/pgbouncer --version | head -n 1)"

# --- tests ------------------------------------------------------------------
# a skipped test fails its stage (tests/conftest.py): an all-skipped stage
# must not print "ok".  PgBouncer's own suite (tests/upstream) runs outside
# tests/, keeps its 7 legitimate skips (sudo, IPv6) and is judged by
# comparing builds.
export PGBC_NO_SKIP=1
pytest() {
	# pytest NAME DIR [ARGS...]: Debian's interpreter sees Debian's modules
	local name=$1 dir=$2
	shift 2
	/usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE --junitxml="$results/$name.junit.xml" "$dir" "$@"
}

install_layout() {
	# what make install puts where (into a scratch DESTDIR)
	local d=$results/destdir p
	make install DESTDIR="$d" >"$results/install.log" 2>&1 || { tail -n 30 "$results/install.log"; return 1; }
	p=$(sed -n 's/^prefix = //p' Makefile)
	for f in sbin/pgbouncer bin/pgbouncer-helper include/pgbouncer-consul/pgb_plugin.h \
		lib/pgbouncer-consul/consul_redirect.so share/pgbouncer/mkauth.py \
		etc/pgbouncer/pgbouncer.ini etc/pgbouncer/userlist.txt etc/pgbouncer-consul/helper.ini \
		share/man/man1/pgbouncer.1 share/man/man5/pgbouncer.5 \
		share/man/man1/pgbouncer-helper.1 share/man/man5/consul_redirect.5 \
		share/doc/pgbouncer-consul/examples/pgbouncer.ini \
		share/doc/pgbouncer-consul/examples/helper.ini \
		lib/systemd/system/pgbouncer.service lib/systemd/system/pgbouncer.socket \
		lib/systemd/system/pgbouncer-helper-userlist-sync.service \
		lib/systemd/system/pgbouncer-helper-register.service \
		lib/systemd/system/pgbouncer-helper-backup@.service \
		lib/systemd/system/pgbouncer-helper-backup-full.timer \
		lib/systemd/system/pgbouncer-helper-backup-incr.timer; do
		[ -f "$d$p/$f" ] || { echo "make install did not install $p/$f"; return 1; }
	done
	# the units name the configured paths, not the package's
	grep -qx "ExecStart=$p/sbin/pgbouncer $p/etc/pgbouncer/pgbouncer.ini" \
		"$d$p/lib/systemd/system/pgbouncer.service" ||
		{ echo "pgbouncer.service does not start $p/sbin/pgbouncer"; return 1; }
	grep -q "^ExecStart=$p/bin/pgbouncer-helper -c $p/etc/pgbouncer-consul/helper.ini " \
		"$d$p/lib/systemd/system/pgbouncer-helper-register.service" ||
		{ echo "pgbouncer-helper-register.service does not start $p/bin/pgbouncer-helper"; return 1; }
	# the regenerated pgbouncer(5) documents the series' plugins key
	grep -q '^\.SS plugins' "$d$p/share/man/man5/pgbouncer.5" ||
		{ echo "pgbouncer(5) lacks the plugins key (not regenerated from the patched docs)"; return 1; }
	"$d$p/sbin/pgbouncer" --version | head -n 1
}
stage "make install layout" install_layout
unit_tests() {
	# make check leaves its logs beside the tests: remove the last run's, so
	# a test that no longer builds cannot be counted from them
	rm -f tests/unit/test_*.log tests/unit/test_*.trs test-suite.log
	make -j2 check
}
stage "unit tests (make check)" unit_tests
# builds the .debs twice (0.2-1 and a 0.2-2 for the upgrade), installs them
# over bookworm's pgbouncer in a cached mmdebstrap root, and once more on a
# fresh root configured by the README to follow a real Patroni cluster
# across a switchover: about 4 minutes
PGBC_RESULTS=$results stage "Debian packages: build, lintian, install/upgrade/remove, follow a Patroni cluster in a bookworm root (tests/package)" \
	pytest package "$top/tests/package"
stage "upstream source checks (sums, patches)" pytest build "$top/tests/build"
stage "fuzz the parsers (libFuzzer, bounded)" tests/fuzz/run.sh "$results/fuzz" "${PGBC_FUZZ_SECONDS:-20}"
stage "fork and plugin interface (tests/fork)" pytest fork-tests "$top/tests/fork"
stage "attacks: unpatched build vs the fork (tests/security)" pytest security "$top/tests/security"
stage "lab: real Consul 1.8.7 and Patroni $patroni3 cluster" pytest lab "$top/tests/integration/test_lab.py"
# templates/multi-dc/: consul validate on every HCL file (placeholders
# filled), the files agreeing on datacenters, joins, ports and tags, and the
# prepared-query JSON of dc1 and dc2 against what pgbouncer-helper installs
# into a dev agent of that datacenter, then the agent templates run as one
# WAN-joined layout (global and dc1 servers and clients): about 7 s
stage "templates/multi-dc: consul validate, one layout, prepared queries as the helper makes them" \
	pytest templates "$top/tests/integration/test_templates.py"
# the helper's lab tests, like the plugin's below, once per Patroni (4.x
# names the leader's role primary, adds /cluster fields, keeps the leader
# key a loop longer on a switchover), one after the other: about 115 s
# (helper) + 15 s (hardened REST API and Consul: basic auth, client
# certificates) and 65 s / 80 s (upgrade/restore on 3 / 4) each
PGBC_PATRONI=3 stage "pgbouncer-helper against the lab (Patroni $patroni3)" \
	pytest helper "$top/tests/integration/test_helper.py" \
	"$top/tests/integration/test_helper_hardened.py"
PGBC_PATRONI=4 stage "pgbouncer-helper against the lab (Patroni $patroni4)" \
	pytest helper-patroni4 "$top/tests/integration/test_helper.py" \
	"$top/tests/integration/test_helper_hardened.py"
PGBC_PATRONI=3 stage "pgbouncer-helper upgrade 13 -> 15 and restore (Patroni $patroni3)" \
	pytest upgrade-restore "$top/tests/integration/test_upgrade_restore.py"
PGBC_PATRONI=4 stage "pgbouncer-helper upgrade 13 -> 15 and restore (Patroni $patroni4)" \
	pytest upgrade-restore-patroni4 "$top/tests/integration/test_upgrade_restore.py"
# sid's 4.1 (LAB.md: replicas' receive_lsn/replay_lsn) for the helper only:
# about 160 s and 90 s more
PGBC_PATRONI=4.1 stage "pgbouncer-helper against the lab (Patroni $patroni41)" \
	pytest helper-patroni41 "$top/tests/integration/test_helper.py" \
	"$top/tests/integration/test_helper_hardened.py"
PGBC_PATRONI=4.1 stage "pgbouncer-helper upgrade 13 -> 15 and restore (Patroni $patroni41)" \
	pytest upgrade-restore-patroni41 "$top/tests/integration/test_upgrade_restore.py"
# once per Patroni the plugin must follow (tests/integration/lab.py reads
# PGBC_PATRONI and checks the cluster runs that version), one after the
# other: their timings must not compete for the 2 cores
PGBC_PATRONI=3 stage "consul_redirect.so following the lab (Patroni $patroni3)" \
	pytest consul-redirect "$top/tests/integration/test_consul_redirect.py" "$top/tests/integration/test_patroni_states.py" "$top/tests/integration/test_consul_tls.py" "$top/tests/integration/test_consul_scale.py"
PGBC_PATRONI=4 stage "consul_redirect.so following the lab (Patroni $patroni4)" \
	pytest consul-redirect-patroni4 "$top/tests/integration/test_consul_redirect.py" "$top/tests/integration/test_patroni_states.py" "$top/tests/integration/test_consul_tls.py"
# a real Consul datacenter (3 server agents, client agents for Patroni and
# the fork) and its faults: 429/503 rate limiting through a fault proxy, the
# Raft leader killed with -9 during a switchover, the fork's agent stopped
# past Patroni's ttl; one module-scoped lab, bookworm's Patroni: about 95 s
PGBC_PATRONI=3 stage "consul_redirect.so in a 3-server Consul cluster, Consul faults (Patroni $patroni3)" \
	pytest consul-cluster "$top/tests/integration/test_consul_cluster.py"
# three Consul datacenters WAN-joined (global, dc1, dc2: one server each,
# client agents for the fork in dc1 and for each Patroni member in its site),
# Patroni's DCS in global, the helper registering the members in dc1 and dc2
# and reading global through dc1's agent (its own datacenter =);
# the fork on dc1's agent with datacenter = global: a switchover, no
# datacenter, the WAN link to global cut and healed, an unknown datacenter,
# bad names; through DNS (dig at dc1's agent): the prepared queries' members
# and TTLs, raddb-query failing over to dc2, raddb-writer after a switchover,
# libpq listing the query name before the writer's; one module-scoped lab,
# bookworm's Patroni: about 65 s (the DNS tests 20 s of it)
PGBC_PATRONI=3 stage "consul_redirect.so across datacenters (Patroni $patroni3)" \
	pytest consul-datacenters "$top/tests/integration/test_consul_datacenters.py"
# the primary cut off from Consul (split brain): each Patroni member reaches
# the agent through a TCP proxy of its own, the leader's is cut; synchronous
# mode on and off, and a partition healed within retry_timeout; ttl 10,
# bookworm's Patroni: about 60 s
PGBC_PATRONI=3 stage "consul_redirect.so with the primary cut off from Consul (Patroni $patroni3)" \
	pytest consul-partition "$top/tests/integration/test_consul_partition.py"

# --- the same code with ASan + UBSan (./configure --enable-sanitizers) ------
# automake refuses a VPATH build from a source tree configured in place (as
# this one is, above), so the sanitized tree is a VPATH build from an export
# of the sources (tracked and untracked, not ignored) in build-san/src; the
# normal build is untouched.  Every sanitized process writes its reports to
# files under test-results/sanitizer/STAGE; a report fails the stage.  It is
# built with clang: GCC's libubsan, beside libasan, ignores log_path and
# writes its reports only to stderr, where a test would not see them.
san=$top/build-san
san_build() {
	rm -rf "$san"
	mkdir -p "$san/src" "$san/obj"
	(cd "$top" && git ls-files -co --exclude-standard -z | tar -c --null -T - -f -) | tar -x -C "$san/src" &&
		(cd "$san/src" && autoreconf -fi && cd "$san/obj" && ../src/configure --enable-sanitizers CC=clang &&
			make -j2 && make -j2 tests/plugin/test_plugin.la) >"$results/san-build.log" 2>&1 ||
		{ tail -n 40 "$results/san-build.log"; return 1; }
	"$san/obj/upstream/pgbouncer/pgbouncer" --version | head -n 1
}
san_run() {
	# san_run STAGE COMMAND...: with the sanitizers' reports going to files
	# (malloc_fill_byte=0: upstream expects zeroed slab memory, which
	# USUAL_FAKE_SLAB's plain malloc does not give)
	local logs=$results/sanitizer/$1 rc
	shift
	mkdir -p "$logs"
	chmod 1777 "$logs"   # the fork runs as postgres under root
	(
		export ASAN_OPTIONS="log_path=$logs/asan:malloc_fill_byte=0:max_malloc_fill_size=16777216:detect_leaks=1:halt_on_error=1"
		export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"
		export PGBC_SANITIZER_LOGS=$logs
		"$@"
	) && rc=0 || rc=$?
	if [ -n "$(ls -A "$logs")" ]; then
		echo "sanitizer reports in $logs:"
		head -n 60 "$logs"/*
		return 1
	fi
	return $rc
}
san_unit() {
	rm -f "$san"/obj/tests/unit/test_*.log "$san"/obj/tests/unit/test_*.trs
	san_run unit make -C "$san/obj" -j2 check
}
stage "sanitizers: build (fork, plugin, helper, tests with ASan + UBSan)" san_build
stage "sanitizers: unit tests (make check)" san_unit
san_fork() {
	export PGBC_FORK=$san/obj/upstream/pgbouncer/pgbouncer
	export PGBC_TEST_PLUGIN=$san/obj/tests/plugin/.libs/test_plugin.so
	pytest fork-tests-san "$top/tests/fork"
}
stage "sanitizers: fork and plugin interface (tests/fork)" san_run fork san_fork
san_lab() {
	# san_lab NAME TEST...: lab tests with the sanitized fork, plugin, helper
	local name=$1
	shift
	export PGBC_PGBOUNCER=$san/obj/upstream/pgbouncer/pgbouncer
	export PGBC_PLUGIN=$san/obj/plugin/.libs/consul_redirect.so
	export PGBC_HELPER=$san/obj/helper/pgbouncer-helper
	pytest "$name" "$@"
}
# all of the plugin's integration tests (about 150 s sanitized), on both
# Patroni versions (4.x writes records the plugin parses differently:
# primary, demoted, replication_state), and the helper's (about 135 s);
# the upgrade/restore tests (minutes of pg_upgrade and pgBackRest, little
# of our code) run on the normal build only
PGBC_PATRONI=3 stage "sanitizers: consul_redirect.so following the lab (Patroni $patroni3)" san_run lab san_lab consul-redirect-san \
	"$top/tests/integration/test_consul_redirect.py" "$top/tests/integration/test_patroni_states.py" "$top/tests/integration/test_consul_tls.py" "$top/tests/integration/test_consul_scale.py"
PGBC_PATRONI=4 stage "sanitizers: consul_redirect.so following the lab (Patroni $patroni4)" san_run lab-patroni4 san_lab consul-redirect-san-patroni4 \
	"$top/tests/integration/test_consul_redirect.py" "$top/tests/integration/test_patroni_states.py" "$top/tests/integration/test_consul_tls.py"
stage "sanitizers: pgbouncer-helper against the lab" san_run helper san_lab helper-san \
	"$top/tests/integration/test_helper.py" "$top/tests/integration/test_helper_hardened.py"

if [ "$quick" = no ]; then
	upstream_suite() {
		local u=$results/upstream plugin=tests/plugin/.libs/test_plugin.so lost
		mkdir -p "$u"
		tests/upstream/run.sh upstream/plain unpatched "$u" &&
		tests/upstream/run.sh upstream/pgbouncer fork "$u" &&
		tests/upstream/run.sh upstream/pgbouncer fork-with-plugin "$u" "$plugin" || return 1
		# what passed unpatched but failed on a fork build runs once more,
		# alone, on all three builds the same way (compare.py: lost when the
		# unpatched build passes it again and the fork does not)
		lost=$(/usr/bin/python3 tests/upstream/compare.py --lost "$u/unpatched.junit.xml" \
			"$u/fork.junit.xml" "$u/fork-with-plugin.junit.xml")
		if [ -z "$lost" ]; then
			/usr/bin/python3 tests/upstream/compare.py "$u/unpatched.junit.xml" \
				"$u/fork.junit.xml" "$u/fork-with-plugin.junit.xml"
			return
		fi
		tests/upstream/run.sh upstream/plain unpatched-again "$u" "" "$lost" &&
		tests/upstream/run.sh upstream/pgbouncer fork-again "$u" "" "$lost" &&
		tests/upstream/run.sh upstream/pgbouncer fork-with-plugin-again "$u" "$plugin" "$lost" || return 1
		/usr/bin/python3 tests/upstream/compare.py "$u/unpatched.junit.xml,$u/unpatched-again.junit.xml" \
			"$u/fork.junit.xml,$u/fork-again.junit.xml" \
			"$u/fork-with-plugin.junit.xml,$u/fork-with-plugin-again.junit.xml"
	}
	stage "PgBouncer's own suite: unpatched vs fork vs fork + plugin" upstream_suite
fi

# --- summary ----------------------------------------------------------------
say "summary"
[ ${#failures[@]} -eq 0 ] || printf 'FAILED stages: %s\n' "${failures[*]}"
# the closing line counts our own tests (unit + pytest); PgBouncer's own
# suite is reported and compared above
/usr/bin/python3 tests/summary.py "$results" . "$san/obj"
[ ${#failures[@]} -eq 0 ]
