#!/bin/sh
# Build the Debian packages (pgbouncer-consul, pgbouncer-helper) into OUTDIR:
# fetch the pinned upstream tarballs into the cache make uses (the only step
# that needs the network), then run dpkg-buildpackage -b offline on a clean
# copy of this tree (its tracked and new files, no build products).
# --version V adds a changelog entry V first (the upgrade tests rebuild so).
# Usage: build-deb.sh [--version V] [OUTDIR]   (default OUTDIR: ./build-deb)
# Build dependencies: apt-get build-dep ./  (as root, in this tree)
set -eu

die() { echo "build-deb: $*" >&2; exit 1; }
top=$(cd "$(dirname "$0")/.." && pwd)
version=
if [ "${1:-}" = --version ]; then
	version=${2:?--version needs a value}
	shift 2
fi
out=${1:-$top/build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -z "${PGBC_CACHE:-}" ]; then
	if [ "$(id -u)" = 0 ]; then
		PGBC_CACHE=/var/cache/pgbouncer-consul
	else
		PGBC_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/pgbouncer-consul
	fi
fi
export PGBC_CACHE
sh "$top/scripts/fetch-upstream.sh" "$PGBC_CACHE" || die "cannot fetch the pinned upstream source"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pgbc-deb.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
src=$tmp/pgbouncer-consul
mkdir "$src"
(cd "$top" && git ls-files -z --cached --others --exclude-standard |
	xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
	tar --null -T - -cf -) | tar -xf - -C "$src" || die "cannot copy the tree"
if [ -n "$version" ]; then
	{
		printf 'pgbouncer-consul (%s) bookworm; urgency=medium\n\n  * Rebuild as %s.\n\n' "$version" "$version"
		printf ' -- %s  %s\n\n' "$(sed -n 's/^ -- \(.*>\)  .*/\1/p;q' "$src/debian/changelog" | head -n 1)" "$(date -R)"
		cat "$src/debian/changelog"
	} >"$src/debian/changelog.new"
	mv "$src/debian/changelog.new" "$src/debian/changelog"
fi
(cd "$src" && dpkg-buildpackage -us -uc -b -j2) >"$out/build.log" 2>&1 ||
	{ tail -n 40 "$out/build.log" >&2; die "dpkg-buildpackage failed, see $out/build.log"; }
cp "$tmp"/*.deb "$tmp"/*.changes "$tmp"/*.buildinfo "$out"/
ls "$out"/*.deb
