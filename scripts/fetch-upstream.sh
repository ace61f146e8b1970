#!/bin/sh
# Download the pinned upstream source (patches/upstream.pin) into a cache
# directory through apt's source download, with a private sources list so
# the system's apt configuration is not touched.  Cached files are reused.
# Debian's mirrors keep only the current revision of a source package: the
# orig tarball (the same in every revision of one upstream version) is taken
# from whichever revision the suite offers, the debian tarball only from the
# pinned one; when that is gone, this says to run scripts/update-pin.sh.
# Usage: fetch-upstream.sh CACHE_DIR
# (PGBC_PIN_FILE names another pin, PGBC_DEBIAN_MIRROR and PGBC_DEBIAN_SUITE
# another apt source, for tests)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
pin=${PGBC_PIN_FILE:-${PGBC_PATCHES_DIR:-$here/../patches}/upstream.pin}
[ -f "$pin" ] || { echo "fetch-upstream: no pin file $pin" >&2; exit 1; }
. "$pin"

die() { echo "fetch-upstream: $*" >&2; exit 1; }
. "$here/debian-source.sh"

cache=${1:?usage: fetch-upstream.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

sum_ok() {
	[ -f "$cache/$1" ] && [ "$(sha256_of "$cache/$1")" = "$2" ]
}

have_orig=no have_debian=no
sum_ok "$ORIG_TARBALL" "$ORIG_SHA256" && have_orig=yes
sum_ok "$DEBIAN_TARBALL" "$DEBIAN_SHA256" && have_debian=yes
if [ $have_orig = yes ] && [ $have_debian = yes ]; then
	echo "fetch-upstream: using cached $ORIG_TARBALL and $DEBIAN_TARBALL in $cache"
	exit 0
fi

apt_setup "$cache"
offered=$(apt_versions)
[ -n "$offered" ] ||
	die "Debian $debian_suite at $debian_mirror offers no source package $DEBIAN_SOURCE"

# check_download FILE SHA256 VERSION: FILE, just downloaded with VERSION,
# must be the pinned one
check_download() {
	got=$(sha256_of "$cache/$1")
	[ "$got" = "$2" ] ||
		die "$1 downloaded with $DEBIAN_SOURCE $3 has SHA-256 $got, the pin says $2"
}

if echo "$offered" | grep -qxF "$DEBIAN_VERSION"; then
	echo "fetch-upstream: downloading $DEBIAN_SOURCE $DEBIAN_VERSION from Debian $debian_suite"
	apt_download "$DEBIAN_VERSION"
	check_download "$ORIG_TARBALL" "$ORIG_SHA256" "$DEBIAN_VERSION"
	check_download "$DEBIAN_TARBALL" "$DEBIAN_SHA256" "$DEBIAN_VERSION"
	echo "fetch-upstream: downloaded into $cache"
	exit 0
fi

# the pinned revision is gone: the newest revision of the same upstream
# version still carries the orig tarball
now=$(newest_version $offered)
same=
for v in $offered; do
	[ "$(upstream_of "$v")" = "$UPSTREAM_VERSION" ] && same="$same $v"
done
same=$(newest_version $same)
gone="$DEBIAN_SOURCE $DEBIAN_VERSION is gone from Debian $debian_suite, which now offers $now"
[ -n "$same" ] ||
	die "$gone, another upstream version than $UPSTREAM_VERSION: scripts/update-pin.sh cannot follow it; rebase the series onto it (README.md, \"Rebasing the series onto a new upstream\")"

orig_where="in the cache"
if [ $have_orig = no ]; then
	echo "fetch-upstream: $DEBIAN_SOURCE $DEBIAN_VERSION is gone from Debian $debian_suite; taking $ORIG_TARBALL from $same"
	apt_download "$same"
	[ -f "$cache/$ORIG_TARBALL" ] || die "$gone, whose files have no $ORIG_TARBALL"
	got=$(sha256_of "$cache/$ORIG_TARBALL")
	[ "$got" = "$ORIG_SHA256" ] ||
		die "$gone, whose $ORIG_TARBALL has SHA-256 $got, not the pinned $ORIG_SHA256: the orig changed within upstream $UPSTREAM_VERSION; compare it with the upstream release before pinning anything"
	orig_where="in $same"
fi
[ $have_debian = yes ] ||
	die "$gone: found $ORIG_TARBALL $orig_where (SHA-256 as pinned), but $DEBIAN_TARBALL only comes with $DEBIAN_VERSION; run scripts/update-pin.sh to move the pin to $same, review its report and git diff, then rebuild"
echo "fetch-upstream: $DEBIAN_SOURCE $DEBIAN_VERSION is gone from Debian $debian_suite, but $ORIG_TARBALL from $same and the cached $DEBIAN_TARBALL are the pinned files, in $cache"
