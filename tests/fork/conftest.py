"""Fixtures for tests of the fork itself: real PostgreSQL servers and the
real fork binary with the test plugin, all on loopback ports chosen here,
run as an unprivileged user when the tests run as root, stopped by PID."""

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
from pgproc import Postgres, demote as _demote, free_port, own as _own, stop_pid  # noqa: E402,F401

FORK = Path(os.environ.get("PGBC_FORK", ROOT / "upstream/pgbouncer/pgbouncer"))
TEST_PLUGIN = Path(os.environ.get("PGBC_TEST_PLUGIN", ROOT / "tests/plugin/.libs/test_plugin.so"))


class Bouncer:
    """The fork binary with a config of the test's making."""

    def __init__(self, base):
        self.dir = Path(base)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.ini = self.dir / "pgbouncer.ini"
        self.log = self.dir / "pgbouncer.log"
        self.control = self.dir / "control"
        self.control.mkdir(exist_ok=True)
        self.proc = None
        (self.dir / "userlist.txt").write_text('"postgres" ""\n')

    def write_config(self, databases, plugins=None, sections="", extra="", login_retry=15):
        plugins = str(TEST_PLUGIN) if plugins is None else plugins
        self.ini.write_text(
            "[databases]\n" + databases + "\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = \nlogfile = {self.log}\npidfile = {self.dir}/pgbouncer.pid\n"
            f"auth_type = trust\nauth_file = {self.dir}/userlist.txt\n"
            "admin_users = postgres\npool_mode = transaction\n"
            f"server_login_retry = {login_retry}\napplication_name_add_host = 0\n"
            + (f"plugins = {plugins}\n" if plugins else "")
            + extra
            + "\n" + sections
        )
        _own(self.dir)

    def start(self, env=None, expect_fail=False):
        e = dict(os.environ)
        e.update(env or {})
        self.proc = subprocess.Popen([str(FORK), str(self.ini)], cwd=self.dir, env=e,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **_demote())
        if expect_fail:
            out, _ = self.proc.communicate(timeout=15)
            return self.proc.returncode, out.decode(errors="replace") + self.log_text()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("fork exited: " + self.proc.stdout.read().decode(errors="replace") + self.log_text())
            try:
                self.admin("show version")
                return self
            except psycopg.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("fork did not start: " + self.log_text())

    def stop(self, sig=signal.SIGTERM):
        if self.proc:
            rc = stop_pid(self.proc, sig)
            self.proc.stdout.close()
            return rc

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self, db="app", **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname=db,
                               application_name="fork-test", autocommit=True, connect_timeout=10, **kw)

    def admin(self, sql):
        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="pgbouncer",
                             autocommit=True, connect_timeout=5) as c:
            cur = c.execute(sql, prepare=False)
            return cur.fetchall() if cur.description else None

    def command(self, line, timeout=5):
        """Have the test plugin run one API call; returns its answer."""
        result = self.control / "result"
        if result.exists():
            result.unlink()
        tmp = self.control / "cmd.tmp"
        tmp.write_text(line + "\n")
        _own(tmp)
        tmp.rename(self.control / "cmd")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if result.exists():
                return result.read_text().strip()
            time.sleep(0.01)
        raise TimeoutError(f"test plugin did not answer {line!r}")


@pytest.fixture(scope="session")
def workdir():
    d = Path(tempfile.mkdtemp(prefix="pgbc-fork-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_a(workdir):
    pg = Postgres(workdir / "pg_a").start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def pg_b(workdir):
    pg = Postgres(workdir / "pg_b").start()
    yield pg
    pg.stop()


@pytest.fixture
def bouncer(workdir, request):
    b = Bouncer(Path(tempfile.mkdtemp(prefix=request.node.name[:40] + "-", dir=workdir)))
    os.chmod(b.dir, 0o755)
    yield b
    b.stop()
