"""Fixtures of the package tests: the .debs built once by
scripts/build-deb.sh (and a rebuild with a newer version for the upgrade),
a bookworm root unpacked from the cached tarball with /proc and /dev
mounted (unmounted in teardown, also after a failure), and a real
PostgreSQL 15 on the host's loopback that the chroot reaches through the
shared network namespace."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/common"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgproc import Postgres  # noqa: E402
import root as debroot  # noqa: E402

VERSION = "0.2-1"
NEXT_VERSION = "0.2-2"
RESULTS = Path(os.environ.get("PGBC_RESULTS", ROOT / "test-results"))


def build(version=None):
    """Build the packages (once per version and run) into test-results."""
    out = RESULTS / "debs" / (version or "current")
    if sorted(out.glob("pgbouncer-consul_*.deb")):
        return out
    cmd = [str(ROOT / "scripts/build-deb.sh")]
    if version:
        cmd += ["--version", version]
    r = subprocess.run(cmd + [str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, "build-deb.sh failed:\n" + r.stdout[-4000:]
    return out


@pytest.fixture(scope="session")
def debs():
    return build()


@pytest.fixture(scope="session")
def debs_next():
    return build(NEXT_VERSION)


class Chroot:
    """A bookworm root entered with chroot(8)."""

    def __init__(self, path):
        self.path = Path(path)
        self.mounts = []

    def setup(self, tar):
        subprocess.run(["tar", "-xf", str(tar), "-C", str(self.path)], check=True)
        for what, args in (("proc", ["-t", "proc", "proc"]), ("dev", ["--bind", "/dev"])):
            target = self.path / what
            subprocess.run(["mount", *args, str(target)], check=True)
            self.mounts.append(target)
        shutil.copy("/etc/resolv.conf", self.path / "etc/resolv.conf")
        # no service is started by a package's maintainer scripts here
        rc = self.path / "usr/sbin/policy-rc.d"
        rc.write_text("#!/bin/sh\nexit 101\n")
        rc.chmod(0o755)

    def teardown(self):
        for m in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(m)])
        self.mounts = []

    def run(self, *cmd, check=True, user=None, env=None, input=None, cwd=None):
        """Run cmd inside (in cwd, a path inside); stdin is /dev/null unless
        input is given, so a prompt fails instead of waiting."""
        pre = ["chroot"] + ([f"--userspec={user}:{user}"] if user else []) + [str(self.path)]
        e = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        e.update(env or {})
        chdir = ["--chdir", cwd] if cwd else []
        r = subprocess.run(pre + ["env", "-i", *chdir] + [f"{k}={v}" for k, v in e.items()] + list(cmd),
                           input=input, stdin=None if input is not None else subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if check:
            assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-4000:]}"
        return r

    def apt(self, *args):
        return self.run("apt-get", "-y", "-q", *args)

    def file(self, p):
        return self.path / p.lstrip("/")


@pytest.fixture(scope="module")
def chroot():
    tar = debroot.tarball()
    d = tempfile.mkdtemp(prefix="pgbc-root.")
    c = Chroot(d)
    try:
        c.setup(tar)
        yield c
    finally:
        c.teardown()
        # only remove the tree once nothing is mounted in it
        mounted = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], stdout=subprocess.PIPE,
                                 text=True).stdout
        if d not in mounted:
            shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def pg():
    top = Path(tempfile.mkdtemp(prefix="pgbc-pkg-pg."))
    top.chmod(0o755)  # initdb runs as postgres
    base = top / "pg"
    p = Postgres(base).start()
    yield p
    p.stop()
    shutil.rmtree(base.parent, ignore_errors=True)
