#!/bin/sh
# Unpack the pinned upstream source into a build directory: check both
# SHA-256 sums, unpack the orig tarball, apply the Debian tarball's CVE
# backports (not its Debian-only patches), then our security fixes
# (patches/security/) and our patches/ series.
# Usage: prepare-upstream.sh SOURCE_DIR DEST_DIR [--no-series]
# (PGBC_PATCHES_DIR names another patches/ directory, for tests)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
patches=${PGBC_PATCHES_DIR:-$here/../patches}
. "$patches/upstream.pin"

src=${1:?usage: prepare-upstream.sh SOURCE_DIR DEST_DIR [--no-series]}
dest=${2:?usage: prepare-upstream.sh SOURCE_DIR DEST_DIR [--no-series]}
series=yes
[ "${3:-}" = "--no-series" ] && series=no

die() { echo "prepare-upstream: $*" >&2; exit 1; }

check() {
	[ -f "$src/$1" ] || die "missing $src/$1 (run scripts/fetch-upstream.sh or pass --with-pgbouncer-source=DIR)"
	got=$(sha256sum "$src/$1" | cut -d' ' -f1)
	[ "$got" = "$2" ] || die "wrong SHA-256 for $src/$1: got $got, expected $2"
}
check "$ORIG_TARBALL" "$ORIG_SHA256"
check "$DEBIAN_TARBALL" "$DEBIAN_SHA256"

tmp="$dest.tmp"
rm -rf "$tmp" "$dest"
mkdir -p "$tmp/debian-tarball"
tar -xzf "$src/$ORIG_TARBALL" -C "$tmp" || die "cannot unpack $ORIG_TARBALL"
tar -xJf "$src/$DEBIAN_TARBALL" -C "$tmp/debian-tarball" || die "cannot unpack $DEBIAN_TARBALL"
tree="$tmp/pgbouncer-$UPSTREAM_VERSION"
[ -d "$tree" ] || die "$ORIG_TARBALL has no pgbouncer-$UPSTREAM_VERSION/"

apply() {
	patch -d "$tree" -p1 --batch --forward --quiet < "$1" >"$tmp/patch.log" 2>&1 ||
		{ cat "$tmp/patch.log" >&2; die "patch $(basename "$1") does not apply to pgbouncer $UPSTREAM_VERSION"; }
}

debpatches="$tmp/debian-tarball/debian/patches"
[ -f "$debpatches/series" ] || die "$DEBIAN_TARBALL has no debian/patches/series"
n=0
for p in $(grep '^CVE-' "$debpatches/series"); do
	apply "$debpatches/$p"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no CVE-*.patch listed in $DEBIAN_TARBALL's debian/patches/series"
echo "prepare-upstream: applied $n CVE backports from $DEBIAN_TARBALL"

if [ "$series" = yes ]; then
	# our own security fixes first (they go away at a rebase onto the
	# release that carries them), then the plugin interface series
	s=0
	for p in "$patches"/security/[0-9][0-9][0-9][0-9]-*.patch; do
		[ -f "$p" ] || break
		apply "$p"
		s=$((s + 1))
	done
	echo "prepare-upstream: applied $s security fixes from patches/security/"
	m=0
	for p in "$patches"/[0-9][0-9][0-9][0-9]-*.patch; do
		[ -f "$p" ] || die "no patches in $patches"
		apply "$p"
		m=$((m + 1))
	done
	echo "prepare-upstream: applied $m patches from patches/"
fi

mv "$tree" "$dest"
rm -rf "$tmp"
