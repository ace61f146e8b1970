"""A throwaway Debian bookworm root for the package tests, made with
mmdebstrap from Debian's archive and cached as a tarball under PGBC_CACHE,
so each run unpacks it in seconds and the machine's own packages stay
untouched.  The tarball holds what the tests need but do not test (systemd
for systemd-analyze, the fork's libraries, PostgreSQL's common files) and,
downloaded but not installed, bookworm's stock pgbouncer and postgresql-client
(psql, which the README's check of SHOW CONSUL runs)."""

import hashlib
import os
import subprocess
from pathlib import Path

MIRROR = os.environ.get("PGBC_DEBIAN_MIRROR", "http://deb.debian.org/debian")
INCLUDE = [
    "systemd", "procps", "libpam-modules", "postgresql-common",
    "libc-ares2", "libevent-2.1-7", "libssl3", "libpam0g", "libsystemd0",
    "libcurl4", "libjson-c5", "libpq5",
]
# stock pgbouncer's and psql's .debs stay in apt's cache (and the lists with
# them): the tests install them as an operator would, offline
COMMAND = [
    "mmdebstrap", "--mode=root", "--variant=apt", "--include=" + ",".join(INCLUDE),
    "--skip=cleanup/apt/cache", "--skip=cleanup/apt/lists",
    '--customize-hook=chroot "$1" apt-get install -y -d -q pgbouncer postgresql-client',
    "bookworm", "OUT", MIRROR,
]


def cache_dir():
    c = os.environ.get("PGBC_CACHE") or str(Path.home() / ".cache/pgbouncer-consul")
    return Path(c) / "package-root"


def tarball():
    """The cached root for this command line, made first when missing."""
    key = hashlib.sha256("\0".join(COMMAND).encode()).hexdigest()[:16]
    tar = cache_dir() / f"bookworm-{key}.tar"
    if tar.exists():
        return tar
    tar.parent.mkdir(parents=True, exist_ok=True)
    tmp = tar.with_name(tar.stem + ".part.tar")  # mmdebstrap picks the format by suffix
    cmd = [str(tmp) if a == "OUT" else a for a in COMMAND]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError("mmdebstrap failed:\n" + r.stdout[-3000:])
    tmp.rename(tar)
    return tar


if __name__ == "__main__":
    print(tarball())
