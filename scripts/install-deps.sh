#!/bin/bash
# Install the Debian bookworm packages that building, the demo and the tests
# need, only those missing (apt-get update first when something is).
# Usage: install-deps.sh [LOG_DIR]
set -euo pipefail

log=${1:-/tmp}
packages=(
	# build
	gcc make autoconf automake libtool pkg-config patch xz-utils dpkg-dev
	ca-certificates debian-archive-keyring
	libevent-dev libcurl4-openssl-dev libjson-c-dev libpq-dev libssl-dev libc-ares-dev
	libpam0g-dev libsystemd-dev pandoc python3
	# the Debian packages and their install tests (tests/package)
	debhelper fakeroot lintian mmdebstrap systemd
	# lab, demo and tests
	libcmocka-dev clang valgrind openssl iproute2 util-linux
	bind9-dnsutils	# dig: Consul DNS in test_helper.py and test_consul_datacenters.py
	curl	# the upgrade and restore tests' patroni_stop/patroni_start commands
	postgresql-15 postgresql-client-15 patroni python3-consul pgbackrest
	python3-pytest python3-pytest-asyncio python3-pytest-timeout python3-pytest-xdist
	python3-psycopg python3-filelock python3-yaml
	apt-utils	# apt-ftparchive: the local Debian repository of tests/build
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing Debian packages: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages (${missing[*]}); run as root or install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >"$log/apt-update.log" 2>&1 || { cat "$log/apt-update.log" >&2; exit 1; }
apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log/apt-install.log" 2>&1 ||
	{ tail -n 30 "$log/apt-install.log" >&2; exit 1; }
id postgres >/dev/null 2>&1 || { echo "install-deps: no postgres OS user after installing postgresql-15" >&2; exit 1; }
