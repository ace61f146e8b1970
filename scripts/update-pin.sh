#!/bin/sh
# Move patches/upstream.pin to the Debian revision of the same upstream
# version that the pin's suite offers now: Debian's mirrors keep only the
# current revision, so a new security upload (1.24.1-1+deb13uN+1) makes the
# pinned debian tarball vanish and fetch-upstream.sh send you here.
# It downloads that revision, keeps the pinned orig sum (and stops if the
# new orig differs), rewrites DEBIAN_VERSION, DEBIAN_TARBALL and
# DEBIAN_SHA256, then compares the CVE-*.patch files the new debian tarball
# carries with ours in patches/security/: ours for a CVE Debian now carries
# is redundant, ours that no longer applies on top of Debian's set (tried
# with prepare-upstream.sh in a temporary directory) conflicts.
# Usage: update-pin.sh [CACHE_DIR]
#   (default $PGBC_CACHE, else ~/.cache/pgbouncer-consul, as configure)
# Exit status: 0 the pin is current and every patch applies on it; 1 an
# error, the pin is left as it was; 2 the pin is current but patches need
# work (listed as redundant or conflict).
# (PGBC_PIN_FILE names the pin to rewrite, PGBC_PATCHES_DIR the patches,
# PGBC_DEBIAN_MIRROR and PGBC_DEBIAN_SUITE another apt source, for tests)
set -eu

die() { echo "update-pin: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
patches=${PGBC_PATCHES_DIR:-$here/../patches}
[ -d "$patches" ] || die "no patches directory $patches"
patches=$(cd "$patches" && pwd)
pin=${PGBC_PIN_FILE:-$patches/upstream.pin}
[ -f "$pin" ] || die "no pin file $pin"
. "$pin"
. "$here/debian-source.sh"

cache=${1:-${PGBC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pgbouncer-consul}}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/update-pin.XXXXXX")
trap 'rm -rf "$work"' EXIT

# --- which revision, and its files ---------------------------------------

apt_setup "$cache"
offered=$(apt_versions)
[ -n "$offered" ] ||
	die "Debian $debian_suite at $debian_mirror offers no source package $DEBIAN_SOURCE"
same=
for v in $offered; do
	[ "$(upstream_of "$v")" = "$UPSTREAM_VERSION" ] && same="$same $v"
done
new=$(newest_version $same)
[ -n "$new" ] ||
	die "Debian $debian_suite offers $DEBIAN_SOURCE $(newest_version $offered), another upstream version than $UPSTREAM_VERSION: a new pin there is a rebase (README.md, \"Rebasing the series onto a new upstream\")"

echo "update-pin: Debian $debian_suite offers $DEBIAN_SOURCE $new; $pin pins $DEBIAN_VERSION"
apt_download "$new"
dsc=$(dsc_of "$new")
new_orig=$(dsc_files "$dsc" | sed -n 's/^[0-9a-f]* \(.*\.orig\.tar\.[a-z0-9]*\)$/\1/p')
new_deb=$(dsc_files "$dsc" | sed -n 's/^[0-9a-f]* \(.*\.debian\.tar\.[a-z0-9]*\)$/\1/p')
[ -n "$new_orig" ] && [ -n "$new_deb" ] ||
	die "$dsc lists no .orig.tar.* and .debian.tar.* files"

# the orig is upstream's release: one upstream version has one orig
[ "$new_orig" = "$ORIG_TARBALL" ] ||
	die "the orig tarball changed: $DEBIAN_SOURCE $new comes with $new_orig, the pin has $ORIG_TARBALL; pin left as it was: check the new orig against the upstream release before pinning it by hand"
got=$(sha256_of "$cache/$new_orig")
[ "$got" = "$ORIG_SHA256" ] ||
	die "the orig tarball changed: $ORIG_TARBALL in $DEBIAN_SOURCE $new has SHA-256 $got, the pin says $ORIG_SHA256; pin left as it was: check the new orig against the upstream release before pinning it by hand"
new_sha=$(sha256_of "$cache/$new_deb")
[ "$new" != "$DEBIAN_VERSION" ] || [ "$new_sha" = "$DEBIAN_SHA256" ] ||
	die "$new_deb of the pinned $DEBIAN_VERSION has SHA-256 $new_sha, the pin says $DEBIAN_SHA256: Debian never re-uploads a version; find out what changed before trusting either"

sed -e "s|^DEBIAN_VERSION=.*|DEBIAN_VERSION=$new|" \
	-e "s|^DEBIAN_TARBALL=.*|DEBIAN_TARBALL=$new_deb|" \
	-e "s|^DEBIAN_SHA256=.*|DEBIAN_SHA256=$new_sha|" "$pin" >"$work/upstream.pin"
( . "$work/upstream.pin" && [ "$DEBIAN_VERSION $DEBIAN_TARBALL $DEBIAN_SHA256" = "$new $new_deb $new_sha" ] ) ||
	die "$pin lacks a DEBIAN_VERSION, DEBIAN_TARBALL or DEBIAN_SHA256 line to rewrite"

# --- Debian's CVE patches against ours -----------------------------------

cve_ids() {
	grep -o 'CVE-[0-9]\{4\}-[0-9]\{4,\}' | sort -u
}

# debian_cves TARBALL DIR: the CVE-*.patch names TARBALL's series applies
debian_cves() {
	mkdir -p "$2"
	tar -xf "$1" -C "$2" || die "cannot unpack $1"
	[ -f "$2/debian/patches/series" ] || die "$(basename "$1") has no debian/patches/series"
	grep '^CVE-' "$2/debian/patches/series" || true
}

deb_cves=$(debian_cves "$cache/$new_deb" "$work/new")
deb_ids=$(echo "$deb_cves" | cve_ids)
echo "update-pin: $DEBIAN_SOURCE $new carries $(echo "$deb_cves" | grep -c .) CVE patches:" $deb_cves
if [ "$new" != "$DEBIAN_VERSION" ] && [ -f "$cache/$DEBIAN_TARBALL" ] &&
	[ "$(sha256_of "$cache/$DEBIAN_TARBALL")" = "$DEBIAN_SHA256" ]; then
	old_ids=$(debian_cves "$cache/$DEBIAN_TARBALL" "$work/old" | cve_ids)
	added=$(echo "$deb_ids" | grep -vxF "$old_ids" || true)
	dropped=$(echo "$old_ids" | grep -vxF "$deb_ids" || true)
	echo "update-pin: new since $DEBIAN_VERSION:" ${added:-none}
	[ -z "$dropped" ] ||
		echo "update-pin: warning: $new no longer carries" $dropped "- find out why before building it"
fi

# try PREPARE_OPTION: prepare-upstream.sh on the new pin with the patches in
# $work/patches; on failure print its reason
try() {
	PGBC_PATCHES_DIR="$work/patches" sh "$here/prepare-upstream.sh" "$cache" "$work/tree" $1 \
		>"$work/prepare.out" 2>"$work/prepare.err" && return 0
	sed -n 's/^prepare-upstream: //p' "$work/prepare.err" | tail -n 1 |
		sed 's/ (patch output: [^)]*)$//'
	return 1
}

mkdir -p "$work/patches/security"
cp "$work/upstream.pin" "$work/patches/"
why=$(try --no-series) ||
	die "Debian $new's own CVE patches do not apply to upstream $UPSTREAM_VERSION: $why; pin left as it was"
todo=0 kept=0
for p in "$patches"/security/[0-9][0-9][0-9][0-9]-*.patch; do
	[ -f "$p" ] || break
	name=security/$(basename "$p")
	carried= missing=
	for id in $(basename "$p" | cve_ids); do
		if echo "$deb_ids" | grep -qxF "$id"; then
			carried="$carried $id ($(echo "$deb_cves" | grep -E "$id([^0-9]|$)" | head -n 1))"
		else
			missing="$missing $id"
		fi
	done
	if [ -n "$carried" ] && [ -z "$missing" ]; then
		echo "update-pin: redundant: $name: Debian $new carries$carried; drop ours"
		todo=1
		continue
	fi
	[ -z "$carried" ] ||
		echo "update-pin: overlap: $name: Debian $new carries$carried but not$missing; review ours"
	cp "$p" "$work/patches/security/"
	if why=$(try --security-only); then
		echo "update-pin: ok: $name applies on top of Debian $new's CVE patches"
		kept=$((kept + 1))
	else
		echo "update-pin: conflict: $name no longer applies on top of Debian $new's CVE patches: $why"
		rm "$work/patches/security/$(basename "$p")"
		todo=1
	fi
done

for p in "$patches"/[0-9][0-9][0-9][0-9]-*.patch; do
	[ -f "$p" ] && cp "$p" "$work/patches/"
done
if why=$(try ""); then
	echo "update-pin: ok: the patches/ series applies on top of $new with $kept of our security fixes"
else
	echo "update-pin: conflict: the patches/ series does not apply on top of $new with $kept of our security fixes: $why"
	todo=1
fi

# --- the pin ----------------------------------------------------------------

if [ "$new" = "$DEBIAN_VERSION" ]; then
	echo "update-pin: $pin already pins $new, the revision Debian $debian_suite offers"
else
	cp "$work/upstream.pin" "$pin.tmp" && mv "$pin.tmp" "$pin" || die "cannot write $pin"
	echo "update-pin: moved $pin from $DEBIAN_VERSION to $new ($new_deb, SHA-256 $new_sha); $ORIG_TARBALL is unchanged"
fi
if [ $todo = 1 ]; then
	echo "update-pin: to do: drop the redundant patches and fix the conflicts above, review git diff and Debian's new CVE patches, then rebuild (./test.sh)"
	exit 2
fi
[ "$new" = "$DEBIAN_VERSION" ] && echo "update-pin: nothing to do" ||
	echo "update-pin: review git diff and Debian's new CVE patches, then rebuild (./test.sh)"
