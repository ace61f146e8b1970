#!/bin/sh
# Run PgBouncer's own test suite (pytest) against a built upstream tree, as
# an unprivileged user, optionally with a plugin loaded in every PgBouncer it
# starts.  Prints "upstream suite [LABEL]: N passed, N failed, N skipped" and
# leaves LABEL.junit.xml in OUT_DIR for tests/upstream/compare.py.  Exits 1
# when pytest did not produce a result (exit status other than 0 or 1).
# Usage: run.sh TREE LABEL OUT_DIR [PLUGIN_SO] [TEST_IDS]
# TEST_IDS: pytest node ids (test/test_x.py::test_y ...) instead of all.
set -eu

tree=$(cd "${1:?usage: run.sh TREE LABEL OUT_DIR [PLUGIN_SO]}" && pwd)
label=${2:?label}
out=${3:?out dir}
plugin=${4:-}
tests=${5:-test}
user=${PGBC_TEST_USER:-postgres}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/pgbc-upstream-XXXXXX)
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cp -a "$tree" "$work/tree"
if [ -n "$plugin" ]; then
	# the plugin's section goes before [pgbouncer], which tests append to
	cp "$plugin" "$work/plugin.so"
	sed -i "s|^\[pgbouncer\]\$|[testplugin]\ncontrol_dir = $work/control\n\n[pgbouncer]\nplugins = $work/plugin.so|" \
		"$work/tree/test/test.ini"
	grep -q "^plugins = $work/plugin.so" "$work/tree/test/test.ini" ||
		{ echo "run.sh: could not add the plugin to test/test.ini" >&2; exit 1; }
fi
if [ "$(id -u)" = 0 ]; then
	chown -R "$user" "$work"
	as_user="runuser -u $user --"
else
	as_user=
fi

paths=
for t in $tests; do
	paths="$paths '$work/tree/$t'"
done
echo "upstream suite [$label]: running PgBouncer's tests in $tree${plugin:+ with $(basename "$plugin") loaded}"
set +e
$as_user env PATH="$pg_bin:/usr/bin:/bin" HOME="$work" \
	sh -c "cd '$work/tree' && /usr/bin/python3 -m pytest -p no:cacheprovider -n 2 -q -rfE \
		--junitxml='$work/junit.xml' $paths" >"$out/$label.log" 2>&1
rc=$?
set -e
rm -f "$out/$label.junit.xml"
cp "$work/junit.xml" "$out/$label.junit.xml" 2>/dev/null || true
tail -n 15 "$out/$label.log"
summary=$(/usr/bin/python3 "$(dirname "$0")/compare.py" --summary "$out/$label.junit.xml") || summary="no results"
echo "upstream suite [$label]: $summary (pytest exit $rc, log $out/$label.log)"
# 0: all passed, 1: some tests failed (compare.py judges those against the
# unpatched build); anything else is a crash, an interrupt, a collection or
# usage error, or no tests at all: the run is not a result
case $rc in
0 | 1) ;;
*)
	echo "upstream suite [$label]: pytest exit $rc: not a test result" >&2
	exit 1
	;;
esac
[ -s "$out/$label.junit.xml" ] || { echo "upstream suite [$label]: no JUnit file" >&2; exit 1; }
