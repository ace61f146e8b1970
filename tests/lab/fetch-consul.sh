#!/bin/bash
# Fetch Consul 1.8.7 (Debian bullseye package) into CACHE_DIR, without touching
# the system's apt sources, verify it, unpack it, and print the consul binary path.
#
#   tests/lab/fetch-consul.sh CACHE_DIR
#
# Idempotent: if CACHE_DIR already holds the verified, unpacked binary, nothing
# is downloaded.  Needs: apt-get, dpkg, sha256sum, debian-archive-keyring.
set -euo pipefail

CONSUL_DEB_VERSION='1.8.7+dfsg1-2+b3'
CONSUL_DEB_SHA256='e4e888bba104daba1d9161f49bfc52649a7e4efd45b1a7ead5bc54f2cb9c89d9'
SUITE=bullseye
MIRROR=http://deb.debian.org/debian
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

die() { echo "fetch-consul: ERROR: $*" >&2; exit 1; }
log() { echo "fetch-consul: $*" >&2; }

[ $# -eq 1 ] || die "usage: $0 CACHE_DIR"
CACHE=$1
mkdir -p "$CACHE" || die "cannot create cache dir $CACHE"
CACHE=$(cd "$CACHE" && pwd)
# Serialise concurrent runs on the same cache.
exec 9>"$CACHE/.fetch-consul.lock"
flock -w 600 9 || die "timed out waiting for the lock $CACHE/.fetch-consul.lock"
DIR=$CACHE/consul-$CONSUL_DEB_VERSION
ROOT=$DIR/root
BIN=$ROOT/usr/bin/consul
STAMP=$DIR/.verified
# apt-get download names the file <pkg>_<version>_<arch>.deb (no epoch here).
DEB=$DIR/consul_${CONSUL_DEB_VERSION}_amd64.deb

# Fast path: already fetched and verified.
if [ -x "$BIN" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$CONSUL_DEB_SHA256" ]; then
    echo "$BIN"
    exit 0
fi

arch=$(dpkg --print-architecture)
[ "$arch" = amd64 ] || die "only amd64 is pinned (this machine is $arch)"
command -v apt-get >/dev/null || die "apt-get not found"
if [ ! -r "$KEYRING" ]; then
    log "installing debian-archive-keyring"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debian-archive-keyring >&2 \
        || die "could not install debian-archive-keyring (run apt-get update first?)"
fi

verify() {
    local got
    got=$(sha256sum "$1" | cut -d' ' -f1)
    [ "$got" = "$CONSUL_DEB_SHA256" ]
}

mkdir -p "$DIR/lists/partial"
if [ ! -f "$DEB" ] || ! verify "$DEB"; then
    rm -f "$DIR"/consul_*.deb
    echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$DIR/sources.list"
    o=(-o "Dir::Etc::SourceList=$DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
       -o "Dir::State::Lists=$DIR/lists" -o "Dir::Cache=$DIR/apt-cache"
       -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root)
    mkdir -p "$DIR/apt-cache/archives/partial"
    log "apt-get update ($SUITE, private sources list in $DIR)"
    apt-get "${o[@]}" -q update >&2 || die "apt-get update of the private $SUITE list failed (network/mirror $MIRROR?)"
    log "downloading consul=$CONSUL_DEB_VERSION"
    (cd "$DIR" && apt-get "${o[@]}" -q download "consul=$CONSUL_DEB_VERSION" >&2) \
        || die "apt-get download consul=$CONSUL_DEB_VERSION failed"
    [ -f "$DEB" ] || die "expected $DEB after download; got: $(ls "$DIR"/*.deb 2>/dev/null)"
    if ! verify "$DEB"; then
        got=$(sha256sum "$DEB" | cut -d' ' -f1)
        mv "$DEB" "$DEB.bad"
        die "SHA-256 mismatch for $(basename "$DEB"): expected $CONSUL_DEB_SHA256, got $got (kept as $DEB.bad)"
    fi
fi

rm -rf "$ROOT"
dpkg -x "$DEB" "$ROOT" || die "dpkg -x $DEB failed"
[ -x "$BIN" ] || die "no executable usr/bin/consul inside $DEB"
"$BIN" version 2>/dev/null | grep -q 'Consul v1.8.7' || die "$BIN does not report Consul v1.8.7"
echo "$CONSUL_DEB_SHA256" > "$STAMP"
echo "$BIN"
