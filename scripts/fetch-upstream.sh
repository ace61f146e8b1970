#!/bin/sh
# Download the pinned upstream source (patches/upstream.pin) into a cache
# directory through apt's source download, with a private sources list so
# the system's apt configuration is not touched.  Cached files are reused.
# Usage: fetch-upstream.sh CACHE_DIR
set -eu

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../patches/upstream.pin"

cache=${1:?usage: fetch-upstream.sh CACHE_DIR}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

sum_ok() {
	[ -f "$cache/$1" ] && echo "$2  $cache/$1" | sha256sum -c --status -
}

if sum_ok "$ORIG_TARBALL" "$ORIG_SHA256" && sum_ok "$DEBIAN_TARBALL" "$DEBIAN_SHA256"; then
	echo "fetch-upstream: using cached $ORIG_TARBALL and $DEBIAN_TARBALL in $cache"
	exit 0
fi

command -v apt-get >/dev/null || { echo "fetch-upstream: apt-get not found; download $ORIG_TARBALL and $DEBIAN_TARBALL by hand and use ./configure --with-pgbouncer-source=DIR" >&2; exit 1; }

apt_dir="$cache/apt-$DEBIAN_SUITE"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || { echo "fetch-upstream: $keyring missing (apt-get install debian-archive-keyring)" >&2; exit 1; }
echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $DEBIAN_SUITE main" > "$apt_dir/sources.list"
opts="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache=$apt_dir -o APT::Sandbox::User=root"

echo "fetch-upstream: downloading $DEBIAN_SOURCE $DEBIAN_VERSION from Debian $DEBIAN_SUITE"
apt-get -q $opts update >"$apt_dir/update.log" 2>&1 || { echo "fetch-upstream: apt-get update for $DEBIAN_SUITE sources failed, see $apt_dir/update.log" >&2; exit 1; }
(cd "$cache" && apt-get -q $opts source --download-only "$DEBIAN_SOURCE=$DEBIAN_VERSION") >"$apt_dir/source.log" 2>&1 || { echo "fetch-upstream: apt-get source $DEBIAN_SOURCE=$DEBIAN_VERSION failed, see $apt_dir/source.log" >&2; exit 1; }

for f in "$ORIG_TARBALL" "$DEBIAN_TARBALL"; do
	[ -f "$cache/$f" ] || { echo "fetch-upstream: $f was not downloaded" >&2; exit 1; }
done
echo "fetch-upstream: downloaded into $cache"
