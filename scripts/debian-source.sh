# debian-source.sh -- what fetch-upstream.sh, update-pin.sh and
# fetch-patroni.sh share (sourced, not run): a private apt sources list for
# a pin's Debian suite, kept under the cache so the system's apt
# configuration is not touched, and the questions the scripts ask it.
# The caller sources its pin first (DEBIAN_SUITE) and defines die().
# PGBC_DEBIAN_MIRROR (default http://deb.debian.org/debian) and
# PGBC_DEBIAN_SUITE (default the pin's DEBIAN_SUITE) point it elsewhere,
# e.g. at a local file:// repository in the tests.

debian_mirror=${PGBC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
debian_suite=${PGBC_DEBIAN_SUITE:-$DEBIAN_SUITE}

# apt_setup CACHE [KIND]: write the sources list under CACHE and update its
# lists.  KIND is deb-src (source packages, the default) or deb (binary
# packages of this machine's architecture).  Both kinds share one
# directory per suite, apt-SUITE, each with its own sources list, log and
# package caches; neither update removes the other's lists.  A lock on the
# directory, held until the caller exits, keeps concurrent runs apart.
apt_setup() {
	command -v apt-get >/dev/null ||
		die "apt-get not found; ${apt_manual:-download $ORIG_TARBALL and $DEBIAN_TARBALL by hand and use ./configure --with-pgbouncer-source=DIR}"
	apt_cache=$1
	apt_kind=${2:-deb-src}
	apt_dir="$apt_cache/apt-$debian_suite"
	mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
	exec 8>"$apt_dir/.lock"
	flock -w 600 8 || die "timed out waiting for the lock $apt_dir/.lock"
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
	case $apt_kind in
	deb-src)
		apt_list=$apt_dir/sources.list
		apt_log=$apt_dir/update.log
		apt_what=sources
		apt_caches=
		;;
	deb)
		apt_list=$apt_dir/packages.list
		apt_log=$apt_dir/packages-update.log
		apt_what=packages
		trust="arch=$(dpkg --print-architecture) $trust"
		# the installed packages are no offer of the suite
		apt_caches="-o Dir::Cache::pkgcache=packages-pkgcache.bin -o Dir::Cache::srcpkgcache=packages-srcpkgcache.bin -o Dir::State::status=/dev/null"
		;;
	*)
		die "apt_setup: unknown kind $apt_kind"
		;;
	esac
	echo "$apt_kind [$trust] $debian_mirror $debian_suite main" >"$apt_list"
	apt_opts="-o Dir::Etc::SourceList=$apt_list -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists=$apt_dir/lists -o Dir::Cache=$apt_dir $apt_caches -o APT::Get::List-Cleanup=0 -o APT::Sandbox::User=root"
	# --error-on=any: a list that failed to download must not pass for
	# a suite without the package
	apt-get -q --error-on=any $apt_opts update >"$apt_log" 2>&1 ||
		die "apt-get update for Debian $debian_suite $apt_what at $debian_mirror failed, see $apt_log"
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

# deb_versions PACKAGE: every version of the binary PACKAGE the suite
# offers (apt_setup CACHE deb), one a line
deb_versions() {
	apt-cache $apt_opts show "$1" 2>/dev/null | sed -n 's/^Version: *//p'
}

# deb_download PACKAGE VERSION DIR: download PACKAGE=VERSION into DIR
# (apt checks it against the suite's signed index); prints its path
deb_download() {
	(cd "$3" && apt-get -q $apt_opts download "$1=$2") >"$apt_dir/download-$1.log" 2>&1 ||
		die "apt-get download $1=$2 from Debian $debian_suite failed, see $apt_dir/download-$1.log"
	f=$3/${1}_${2#*:}_$(dpkg --print-architecture).deb
	[ -f "$f" ] || f=$3/${1}_${2#*:}_all.deb
	[ -f "$f" ] || die "apt-get download $1=$2 left no ${1}_${2#*:}_*.deb in $3"
	echo "$f"
}

# sha256_of FILE
sha256_of() {
	sha256sum "$1" | cut -d' ' -f1
}
