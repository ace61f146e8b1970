"""Fixtures for tests of the fork itself: real PostgreSQL servers and the
real fork binary with the test plugin, all on loopback ports chosen here,
run as an unprivileged user when the tests run as root, stopped by PID."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
FORK = Path(os.environ.get("PGBC_FORK", ROOT / "upstream/pgbouncer/pgbouncer"))
TEST_PLUGIN = Path(os.environ.get("PGBC_TEST_PLUGIN", ROOT / "tests/plugin/.libs/test_plugin.so"))
RUN_USER = os.environ.get("PGBC_TEST_USER", "postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _demote():
    """Popen arguments that run a child as RUN_USER when we are root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(RUN_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _own(path):
    if os.geteuid() == 0:
        pw = pwd.getpwnam(RUN_USER)
        for p in [path, *Path(path).rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)


def stop_pid(proc, sig=signal.SIGTERM, timeout=15):
    """Stop a child by PID: signal, bounded wait, then SIGKILL."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


class Postgres:
    """One real PostgreSQL 15 cluster on 127.0.0.1:<port>."""

    def __init__(self, base):
        self.dir = Path(base)
        self.data = self.dir / "data"
        self.port = free_port()
        self.dir.mkdir(parents=True)
        _own(self.dir)

    def _run(self, *args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **_demote())

    def start(self):
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1,127.0.0.2 -c shared_buffers=16MB -c max_connections=60 -c fsync=off"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.dir / "pg.log"), "-w", "start")
        with self.connect() as c:
            c.execute("create table if not exists t (id serial primary key, v text)")
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop")

    def connect(self, **kw):
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True, **kw)

    def bouncer_backends(self):
        with self.connect() as c:
            return c.execute("select count(*) from pg_stat_activity where application_name = 'fork-test'").fetchone()[0]


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

    def write_config(self, databases, plugins=None, sections="", extra=""):
        plugins = str(TEST_PLUGIN) if plugins is None else plugins
        self.ini.write_text(
            "[databases]\n" + databases + "\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = \nlogfile = {self.log}\npidfile = {self.dir}/pgbouncer.pid\n"
            f"auth_type = trust\nauth_file = {self.dir}/userlist.txt\n"
            "admin_users = postgres\npool_mode = transaction\n"
            "server_login_retry = 15\napplication_name_add_host = 0\n"
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
