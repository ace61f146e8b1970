"""Processes the tests start on loopback: free ports, running a child as an
unprivileged user when the tests run as root, stopping it by PID with
bounded waits, and one real PostgreSQL 15 cluster.  Shared by tests/fork
and tests/security."""

import os
import pwd
import signal
import socket
import subprocess
from pathlib import Path

import psycopg

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_USER = os.environ.get("PGBC_TEST_USER", "postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def demote():
    """Popen arguments that run a child as RUN_USER when we are root."""
    if os.geteuid() != 0:
        return {}
    pw = pwd.getpwnam(RUN_USER)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def own(path):
    """Give a directory tree to RUN_USER when we are root."""
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

    def __init__(self, base, max_connections=60):
        self.max_connections = max_connections
        self.dir = Path(base)
        self.data = self.dir / "data"
        self.port = free_port()
        self.dir.mkdir(parents=True)
        own(self.dir)

    def _run(self, *args):
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **demote())

    def start(self):
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1,127.0.0.2 -c shared_buffers=16MB -c max_connections={self.max_connections} -c fsync=off"
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
