# debian-source.sh -- what fetch-upstream.sh and update-pin.sh share
# (sourced, not run): a private apt sources list for the pin's Debian
# suite, kept under the cache so the system's apt configuration is not
# touched, and the questions the two scripts ask it.
# The caller sources the pin first and defines die().
# PGBC_DEBIAN_MIRROR (default http://deb.debian.org/debian) and
# PGBC_DEBIAN_SUITE (default the pin's DEBIAN_SUITE) point it elsewhere,
# e.g. at a local file:// repository in the tests.

debian_mirror=${PGBC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
debian_suite=${PGBC_DEBIAN_SUITE:-$DEBIAN_SUITE}

# apt_setup CACHE: write the sources list under CACHE and update its lists
apt_setup() {
	command -v apt-get >/dev/null ||
		die "apt-get not found; download $ORIG_TARBALL and $DEBIAN_TARBALL by hand and use ./configure --with-pgbouncer-source=DIR"
	apt_cache=$1
	apt_dir="$apt_cache/apt-$debian_suite"
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
	case $debian_mirror in
	file:*)
		# a local repository has no signature; the pinned sums still
		# decide what is used
		trust=trusted=yes
		;;
	*)
		keyring=/usr/share/keyrings/debian-archive-keyring.gpg
		[ -f "$keyring" ] ||
			die "$keyring missing (apt-get install debian-archive-keyring)"
		trust=signed-by=$keyring
		;;
	esac
	echo "deb-src [$trust] $debian_mirror $debian_suite main" >"$apt_dir/sources.list"
	apt_opts="-o Dir::Etc::SourceList=$apt_dir/sources.list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache=$apt_dir -o APT::Sandbox::User=root"
	# --error-on=any: a list that failed to download must not pass for
	# a suite without the package
	apt-get -q --error-on=any $apt_opts update >"$apt_dir/update.log" 2>&1 ||
		die "apt-get update for Debian $debian_suite sources at $debian_mirror failed, see $apt_dir/update.log"
}

# apt_versions: every version of DEBIAN_SOURCE the suite offers, one a line
apt_versions() {
	apt-cache $apt_opts showsrc --only-source "$DEBIAN_SOURCE" 2>/dev/null |
		sed -n 's/^Version: *//p'
}

# newest_version VERSION...: the highest in Debian's ordering, or nothing
newest_version() {
	best=
	for v; do
		[ -z "$best" ] || dpkg --compare-versions "$v" gt "$best" && best=$v
	done
	echo "$best"
}

# upstream_of VERSION: VERSION without its epoch and Debian revision
upstream_of() {
	v=${1#*:}
	echo "${v%-*}"
}

# dsc_of VERSION: where apt_download puts the .dsc of VERSION
dsc_of() {
	echo "$apt_cache/${DEBIAN_SOURCE}_${1#*:}.dsc"
}

# dsc_files DSC: "SHA256 NAME" for each file the .dsc lists
dsc_files() {
	sed -n '/^Checksums-Sha256:/,/^[^ ]/s/^ \([0-9a-f]\{64\}\) [0-9][0-9]* \(.*\)$/\1 \2/p' "$1"
}

# apt_download VERSION: download VERSION's source files into the cache as
# plain files (a file:// source leaves symlinks into the mirror)
apt_download() {
	(cd "$apt_cache" && apt-get -q $apt_opts source --download-only "$DEBIAN_SOURCE=$1") \
		>"$apt_dir/source.log" 2>&1 ||
		die "apt-get source $DEBIAN_SOURCE=$1 failed, see $apt_dir/source.log"
	dsc=$(dsc_of "$1")
	[ -f "$dsc" ] || die "apt-get source $DEBIAN_SOURCE=$1 left no $dsc"
	for f in "$dsc" $(dsc_files "$dsc" | cut -d' ' -f2); do
		f=$apt_cache/${f#"$apt_cache"/}
		[ -f "$f" ] || die "apt-get source $DEBIAN_SOURCE=$1 left no $f"
		[ ! -L "$f" ] || { cp "$f" "$f.tmp" && mv "$f.tmp" "$f"; } ||
			die "cannot copy $f into the cache"
	done
}

# sha256_of FILE
sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}
