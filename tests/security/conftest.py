"""Fixtures for the attack tests: the unpatched build of the pinned sources
(make upstream-plain) and the fork, optionally both with AddressSanitizer
(make upstream-asan), each run with a config of the test's making against
one real PostgreSQL, on loopback ports chosen here, stopped by PID."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/common"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from pgproc import Postgres, demote, free_port, own, stop_pid  # noqa: E402
from wire import connect, scram_secret  # noqa: E402

BUILDS = {
    "unpatched": ROOT / "upstream/plain/pgbouncer",
    "fork": ROOT / "upstream/pgbouncer/pgbouncer",
    "unpatched-asan": ROOT / "upstream/plain-asan/pgbouncer",
    "fork-asan": ROOT / "upstream/pgbouncer-asan/pgbouncer",
}
# ASan: zero new memory as libusual's slabs do, report and exit on the
# first error, leaks are not what these tests look for
ASAN_OPTIONS = "malloc_fill_byte=0:max_malloc_fill_size=16777216:detect_leaks=0:abort_on_error=0"

APP_PASSWORD = "app-pw"
MALLORY_PASSWORD = "mallory-pw"


def binary(build):
    path = BUILDS[build]
    if not path.exists():
        pytest.fail(f"{path} is missing: run make upstream-plain upstream-asan (./test.sh does)")
    return path


class Pooler:
    """One PgBouncer binary (unpatched or fork) with its own config."""

    def __init__(self, build, base, pg):
        self.build = build
        self.binary = binary(build)
        self.dir = Path(base)
        self.pg = pg
        self.port = free_port()
        self.ini = self.dir / "pgbouncer.ini"
        self.log = self.dir / "pgbouncer.log"
        self.stderr = self.dir / "stderr.log"
        self.proc = None

    def configure(self, settings="", databases="", auth_type="scram-sha-256"):
        (self.dir / "userlist.txt").write_text(
            f'"app" "{APP_PASSWORD}"\n'
            f'"mallory" "{MALLORY_PASSWORD}"\n'
            # nobody knows these passwords: only their verifiers are here
            f'"admin" "{scram_secret(os.urandom(12).hex())}"\n'
            f'"victim" "{scram_secret(os.urandom(12).hex())}"\n')
        self.ini.write_text(
            "[databases]\n"
            f"app = host=127.0.0.1 port={self.pg.port} dbname=postgres\n"
            f"victimdb = host=127.0.0.1 port={self.pg.port} dbname=postgres\n"
            + databases + "\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = \nlogfile = {self.log}\npidfile = {self.dir}/pgbouncer.pid\n"
            f"auth_type = {auth_type}\nauth_file = {self.dir}/userlist.txt\n"
            "admin_users = admin\npool_mode = transaction\n"
            "server_tls_sslmode = disable\nserver_login_retry = 1\n"
            + settings + "\n")
        own(self.dir)
        return self

    def start(self):
        env = dict(os.environ, ASAN_OPTIONS=ASAN_OPTIONS)
        self.proc = subprocess.Popen([str(self.binary), str(self.ini)], cwd=self.dir, env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.stderr, "wb"), **demote())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.build} exited at start: {self.output()}")
            try:
                connect(self.port, timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{self.build} did not start listening: {self.output()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None:
            stop_pid(self.proc, sig, timeout=10)

    def alive(self):
        return self.proc.poll() is None

    def wait_exit(self, timeout=20):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output(self):
        text = ""
        for f in (self.stderr, self.log):
            if f.exists():
                text += f.read_text(errors="replace")
        return text

    def rss_kb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def cpu_seconds(self):
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def login(self, timeout=10, user="app", password=APP_PASSWORD, dbname="app"):
        """A normal client login and query; the error text when it fails."""
        try:
            with psycopg.connect(host="127.0.0.1", port=self.port, user=user, password=password,
                                 dbname=dbname, connect_timeout=timeout, autocommit=True) as c:
                assert c.execute("select 1").fetchone() == (1,)
            return None
        except psycopg.Error as e:
            return str(e) or type(e).__name__

    def spinning(self, seconds=3.0):
        """True when the process burns CPU while a normal login cannot get
        through: the pooler is stuck in a loop, serving nobody."""
        cpu0, t0 = self.cpu_seconds(), time.monotonic()
        failed = self.login(timeout=int(seconds)) is not None
        busy = (self.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        return failed and busy > 0.25


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pgbc-security-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(workdir):
    p = Postgres(workdir / "pg").start()
    with p.connect() as c:
        for role in ("app", "mallory", "admin", "victim"):
            c.execute(f"create role {role} login")
    yield p
    p.stop()


@pytest.fixture
def pooler(workdir, pg, request):
    """pooler(build) -> a configured, not yet started Pooler; all are
    stopped at the end of the test."""
    made = []

    def make(build):
        base = Path(tempfile.mkdtemp(prefix=f"{request.node.name[:30]}-{build}-", dir=workdir))
        os.chmod(base, 0o755)
        p = Pooler(build, base, pg)
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop(signal.SIGKILL if p.proc is not None and p.proc.poll() is None and p.build.startswith("unpatched") else signal.SIGTERM)
