#!/bin/sh
# Unpack the pinned upstream source into a build directory: check both
# SHA-256 sums, unpack the orig tarball, apply the Debian tarball's CVE
# backports (not its Debian-only patches), then our security fixes
# (patches/security/) and our patches/ series, every patch with zero fuzz.
# Usage: prepare-upstream.sh SOURCE_DIR DEST_DIR [--no-series|--security-only]
# --no-series stops after the Debian backports (the unpatched build the
# tests compare with), --security-only after patches/security/ (what
# update-pin.sh tries on a new Debian revision).
# (PGBC_PATCHES_DIR names another patches/ directory, for tests)
set -eu

usage="usage: prepare-upstream.sh SOURCE_DIR DEST_DIR [--no-series|--security-only]"
die() { echo "prepare-upstream: $*" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
patches=${PGBC_PATCHES_DIR:-$here/../patches}
. "$patches/upstream.pin"

src=${1:?$usage}
dest=${2:?$usage}
case ${3:-} in
"") upto=series ;;
--no-series) upto=debian ;;
--security-only) upto=security ;;
*) die "unknown option $3 ($usage)" ;;
esac

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

# patch_report LOG problems|offsets: from GNU patch's messages in LOG, one
# line naming, by file, each hunk refused or fuzzed (problems) or moved
# (offsets); empty when there is none
patch_report() {
	awk -v mode="$2" '
	function add(s) { out = out (out == "" ? "" : "; ") s }
	/^(patching|checking) file / { f = $0; sub(/^(patching|checking) file /, "", f); next }
	/^[|][+][+][+] / { gone = $2; sub(/^b[/]/, "", gone); next }
	mode == "problems" && /^No file to patch/ { add(gone ": no such file to patch") }
	mode == "problems" && /^Hunk #[0-9]+ FAILED at [0-9]+/ { add(f " hunk " $2 " FAILED at " $5 + 0) }
	mode == "problems" && /^Hunk #[0-9]+ succeeded .* with fuzz/ {
		match($0, /fuzz [0-9]+/)
		add(f " hunk " $2 " only matched with " substr($0, RSTART, RLENGTH))
	}
	mode == "problems" && /^Reversed [(]or previously applied[)] patch detected/ { add(f ": already applied (or reversed)") }
	mode == "problems" && /^patch: [*]+ / { s = $0; sub(/^patch: [*]+ /, "", s); add(s) }
	mode == "offsets" && /^Hunk #[0-9]+ succeeded at [0-9]+ [(]offset/ {
		match($0, /offset -?[0-9]+ lines?/)
		add(f " hunk " $2 " at " $5 + 0 " (" substr($0, RSTART, RLENGTH) ")")
	}
	END { if (out != "") print out }' "$1"
}

# apply PATCH LABEL: apply PATCH with zero fuzz or stop, naming it and each
# hunk that failed.  Fuzz lets patch ignore context lines, which is how a
# hunk lands in the wrong place; an offset only means every context line
# matched verbatim a few lines away (an earlier patch in the stack changed
# the line count above it), so offsets are allowed and noted in the log.
apply() {
	log="$tmp/patch.log"
	rc=0
	patch -d "$tree" -p1 --batch --forward --fuzz=0 --no-backup-if-mismatch \
		<"$1" >"$log" 2>&1 || rc=$?
	why=$(patch_report "$log" problems)
	grep -q '^patching file ' "$log" || why=${why:-it changes no file}
	[ "$rc" = 0 ] && [ -z "$why" ] ||
		die "patch $2 does not apply to pgbouncer $UPSTREAM_VERSION with zero fuzz: ${why:-patch exited $rc} (patch output: $log)"
	moved=$(patch_report "$log" offsets)
	[ -z "$moved" ] || echo "prepare-upstream: note: $2 applied at an offset: $moved"
}

debpatches="$tmp/debian-tarball/debian/patches"
[ -f "$debpatches/series" ] || die "$DEBIAN_TARBALL has no debian/patches/series"
n=0
for p in $(grep '^CVE-' "$debpatches/series"); do
	apply "$debpatches/$p" "debian/patches/$p ($DEBIAN_TARBALL)"
	n=$((n + 1))
done
[ "$n" -gt 0 ] || die "no CVE-*.patch listed in $DEBIAN_TARBALL's debian/patches/series"
echo "prepare-upstream: applied $n CVE backports from $DEBIAN_TARBALL with zero fuzz"

# our own security fixes first (they go away at a rebase onto the release
# that carries them), then the plugin interface series
if [ $upto != debian ]; then
	s=0
	for p in "$patches"/security/[0-9][0-9][0-9][0-9]-*.patch; do
		[ -f "$p" ] || break
		apply "$p" "security/$(basename "$p")"
		s=$((s + 1))
	done
	echo "prepare-upstream: applied $s security fixes from patches/security/ with zero fuzz"
fi
if [ $upto = series ]; then
	m=0
	for p in "$patches"/[0-9][0-9][0-9][0-9]-*.patch; do
		[ -f "$p" ] || die "no patches in $patches"
		apply "$p" "$(basename "$p")"
		m=$((m + 1))
	done
	echo "prepare-upstream: applied $m patches from patches/ with zero fuzz"
fi

mv "$tree" "$dest"
rm -rf "$tmp"
