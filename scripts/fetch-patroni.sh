#!/bin/sh
# Download a Patroni 4 for the lab (a pin in tests/lab: patroni4.pin,
# Debian trixie's 4.0.7, the default; patroni41.pin, sid's 4.1.5; each
# names patroni and python3-ydiff, the one dependency bookworm lacks)
# through apt with a private sources list, so the system's apt
# configuration and its installed Patroni 3.0.2 are not touched; check both
# .debs against the pinned SHA-256; unpack them into
# CACHE_DIR/patroni-VERSION, readable by the postgres user that runs
# Patroni, and check that its patroni runs and says VERSION.  apt verifies
# the downloads against the suite's signed Release; the pinned sums also
# pin the exact builds.  A second run with the unpacked prefix in place
# does nothing.
# Usage: fetch-patroni.sh CACHE_DIR [PIN]
# (PIN, else PGBC_PATRONI_PIN, names another pin than patroni4.pin;
# PGBC_DEBIAN_MIRROR and PGBC_DEBIAN_SUITE another apt source, for tests)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pin=${2:-${PGBC_PATRONI_PIN:-$here/../tests/lab/patroni4.pin}}
die() { echo "fetch-patroni: $*" >&2; exit 1; }
[ -f "$pin" ] || die "no pin file $pin"
. "$pin"
apt_manual="download patroni $PATRONI_DEB_VERSION and python3-ydiff $YDIFF_DEB_VERSION from Debian $DEBIAN_SUITE by hand and dpkg -x both into CACHE_DIR/patroni-$PATRONI_VERSION"
. "$here/debian-source.sh"

cache=${1:?usage: fetch-patroni.sh CACHE_DIR [PIN]}
umask 022
mkdir -p "$cache" || die "cannot create the cache directory $cache"
cache=$(cd "$cache" && pwd)
prefix=$cache/patroni-$PATRONI_VERSION
stamp=$prefix/.pgbc-pin
want="$PATRONI_DEB_VERSION $PATRONI_SHA256 $YDIFF_DEB_VERSION $YDIFF_SHA256"

# run_patroni ARGS...: the unpacked patroni, as Patroni runs in the lab
# (as postgres when we are root: it must be able to read the prefix)
run_patroni() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- env PYTHONPATH="$prefix/usr/lib/python3/dist-packages" \
			/usr/bin/python3 "$prefix/usr/bin/patroni" "$@"
	else
		PYTHONPATH="$prefix/usr/lib/python3/dist-packages" \
			/usr/bin/python3 "$prefix/usr/bin/patroni" "$@"
	fi
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$prefix/usr/bin/patroni" ]; then
	echo "fetch-patroni: using the cached Patroni $PATRONI_VERSION in $prefix"
	exit 0
fi

# deb_file PACKAGE VERSION: the name apt-get download gives it
deb_file() {
	echo "$cache/${1}_${2#*:}_all.deb"
}

# fetch PACKAGE VERSION SHA256: the pinned .deb in the cache, downloaded
# when it is missing or not the pinned one
fetch() {
	f=$(deb_file "$1" "$2")
	if [ -f "$f" ] && [ "$(sha256_of "$f")" = "$3" ]; then
		return
	fi
	rm -f "$f"
	if [ -z "${apt_opts:-}" ]; then
		apt_setup "$cache" deb
	fi
	offered=$(deb_versions "$1")
	echo "$offered" | grep -qxF "$2" ||
		die "Debian $debian_suite at $debian_mirror does not offer $1 $2 (it offers: $(echo $offered)); pin another version in $pin"
	echo "fetch-patroni: downloading $1 $2 from Debian $debian_suite"
	got=$(deb_download "$1" "$2" "$cache")
	[ "$got" = "$f" ] || { mv "$got" "$f" || die "cannot move $got to $f"; }
	sum=$(sha256_of "$f")
	if [ "$sum" != "$3" ]; then
		mv "$f" "$f.bad"
		die "$(basename "$f") downloaded from Debian $debian_suite has SHA-256 $sum, $pin says $3 (kept as $f.bad)"
	fi
}

command -v dpkg >/dev/null || die "dpkg not found"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 missing (apt-get install python3)"
fetch patroni "$PATRONI_DEB_VERSION" "$PATRONI_SHA256"
fetch python3-ydiff "$YDIFF_DEB_VERSION" "$YDIFF_SHA256"

# unpack beside the prefix, then put it in place: an interrupted run
# leaves no half prefix that the stamp would vouch for
tmp=$prefix.new
rm -rf "$tmp"
mkdir -p "$tmp"
for f in "$(deb_file patroni "$PATRONI_DEB_VERSION")" "$(deb_file python3-ydiff "$YDIFF_DEB_VERSION")"; do
	dpkg -x "$f" "$tmp" || die "dpkg -x $f $tmp failed"
done
[ -f "$tmp/usr/bin/patroni" ] || die "$(deb_file patroni "$PATRONI_DEB_VERSION") has no usr/bin/patroni"
chmod -R a+rX "$tmp" || die "cannot make $tmp readable"
rm -rf "$prefix"
mv "$tmp" "$prefix" || die "cannot move $tmp to $prefix"

# the postgres user must reach the prefix through every parent directory
if [ "$(id -u)" = 0 ] && id postgres >/dev/null 2>&1; then
	runuser -u postgres -- test -r "$prefix/usr/bin/patroni" ||
		die "the postgres user cannot read $prefix/usr/bin/patroni: make its parent directories world-searchable (chmod o+x)"
fi
out=$(run_patroni --version 2>&1) ||
	die "$prefix/usr/bin/patroni --version failed (is python3-consul, python3-psycopg2... installed? scripts/install-deps.sh): $out"
[ "$out" = "patroni $PATRONI_VERSION" ] ||
	die "$prefix/usr/bin/patroni --version says \"$out\", not \"patroni $PATRONI_VERSION\""
echo "$want" >"$stamp"
echo "fetch-patroni: Patroni $PATRONI_VERSION unpacked into $prefix"
