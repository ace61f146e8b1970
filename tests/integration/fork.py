"""The fork with consul_redirect.so in front of the lab (lab.py), and writers
that measure what a client sees (RecordingWriter: which writes were
acknowledged, by which server): used by the
integration tests, demo.sh and bench/.  PgBouncer runs as the postgres user
on 127.0.0.1, stopped by PID."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import threading
import time
from pathlib import Path

import psycopg

import lab

ROOT = Path(__file__).resolve().parents[2]
PGBOUNCER = os.environ.get("PGBC_PGBOUNCER", str(ROOT / "upstream/pgbouncer/pgbouncer"))
PLUGIN = os.environ.get("PGBC_PLUGIN", str(ROOT / "plugin/.libs/consul_redirect.so"))


def db_line(scope: str, role: str | None = None, host: str = "127.0.0.1",
            port: int = 1) -> str:
    """A [databases] line: host/port are only the starting point (port 1: nothing)."""
    line = (f"host={host} port={port} dbname=postgres user=postgres password=postgres "
            f"patroni_scope={scope}")
    if role:
        line += f" patroni_role={role}"
    return line


def require_built(*paths: str | os.PathLike) -> None:
    """Fail (never skip) the module when a binary its tests run is not built."""
    import pytest
    for path in paths:
        if not os.path.exists(path):
            pytest.fail(f"{path} not built: run make (./test.sh builds it)")


class Bouncer:
    """The fork with consul_redirect.so, run as the postgres user on 127.0.0.1."""

    def __init__(self, workdir: Path, consul: lab.Consul, databases: dict[str, str],
                 consul_settings: dict[str, str] | None = None,
                 bouncer_settings: dict[str, str] | None = None,
                 plugin: str | None = None, env: dict[str, str] | None = None):
        self.workdir = Path(workdir)
        self.env = env                  # the process environment; None: this one's
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.consul = consul
        self.port = lab.free_port()
        self.databases = dict(databases)
        self.plugin = PLUGIN if plugin is None else plugin
        self.consul_settings = {"url": consul.url, "wait": "30s",
                                "no_leader_timeout": "30s"}
        self.consul_settings.update(consul_settings or {})
        self.bouncer_settings = {"pool_mode": "session", "default_pool_size": "4",
                                 "server_login_retry": "15", "query_wait_timeout": "120"}
        self.bouncer_settings.update(bouncer_settings or {})
        self.ini = self.workdir / "pgbouncer.ini"
        self.logfile = self.workdir / "pgbouncer.log"
        self.proc: subprocess.Popen | None = None
        self.write_config()

    def write_config(self) -> None:
        lines = ["[pgbouncer]", "listen_addr = 127.0.0.1", f"listen_port = {self.port}",
                 "unix_socket_dir =", f"logfile = {self.logfile}",
                 f"pidfile = {self.workdir / 'pgbouncer.pid'}",
                 "auth_type = trust", f"auth_file = {self.workdir / 'userlist.txt'}",
                 "admin_users = postgres", "server_check_delay = 0"]
        if self.plugin:
            lines.append(f"plugins = {self.plugin}")
        lines += [f"{k} = {v}" for k, v in self.bouncer_settings.items()]
        if self.plugin:
            lines += ["", "[consul]"] + [f"{k} = {v}" for k, v in self.consul_settings.items()]
        lines += ["", "[databases]"] + [f"{k} = {v}" for k, v in self.databases.items()]
        self.ini.write_text("\n".join(lines) + "\n")
        (self.workdir / "userlist.txt").write_text('"postgres" "postgres"\n')
        lab.chown_tree(self.workdir)

    def start(self, expect_fail: bool = False) -> "Bouncer":
        pw = pwd.getpwnam(lab.PG_USER)
        out = open(self.workdir / "stdout.log", "ab")
        self.proc = subprocess.Popen([PGBOUNCER, str(self.ini)], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                                     cwd=str(self.workdir), start_new_session=True,
                                     env=self.env)
        out.close()
        if expect_fail:
            self.proc.wait(15)
            return self
        lab.wait_until(self._answers, 15, 0.1, "pgbouncer admin console")
        return self

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited rc={self.proc.returncode}:\n{self.log()}")
        try:
            self.admin("SHOW VERSION")
            return True
        except psycopg.Error:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            lab.stop_pid(self.proc.pid, timeout=10, sig=signal.SIGTERM, proc=self.proc,
                         name="pgbouncer")
            self.proc = None

    def __repr__(self) -> str:
        return f"Bouncer(port={self.port}, pid={self.proc.pid if self.proc else None})"

    def logfile_text(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError:
            return ""

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace") + \
                (self.workdir / "stdout.log").read_text(errors="replace")
        except OSError:
            return ""

    def conninfo(self, dbname: str, connect_timeout: int = 10) -> str:
        return (f"host=127.0.0.1 port={self.port} user=postgres password=postgres "
                f"dbname={dbname} connect_timeout={connect_timeout}")

    def connect(self, dbname: str, connect_timeout: int = 10) -> psycopg.Connection:
        return psycopg.connect(self.conninfo(dbname, connect_timeout), autocommit=True)

    def admin(self, query: str) -> list[dict]:
        with self.connect("pgbouncer") as c:
            cur = c.execute(query)
            if cur.description is None:
                return []
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def admin_columns(self, query: str) -> list[str]:
        with self.connect("pgbouncer") as c:
            return [d.name for d in c.execute(query).description]

    def show_consul(self) -> dict[str, dict]:
        return {r["database"]: r for r in self.admin("SHOW CONSUL")}

    def row(self, db: str) -> dict:
        return self.show_consul()[db]

    def wait_row(self, db: str, pred, timeout: float = 30.0, what: str = "") -> dict:
        return lab.wait_until(lambda: (lambda r: r if pred(r) else None)(self.row(db)),
                              timeout, 0.05, what or f"SHOW CONSUL row of {db}")

    def waiting(self, db: str) -> int:
        """Clients of db queued for a server (SHOW POOLS cl_waiting)."""
        return sum(int(r["cl_waiting"]) for r in self.admin("SHOW POOLS") if r["database"] == db)

    def wait_waiting(self, db: str, n: int = 1, timeout: float = 30.0) -> None:
        """Wait until n clients of db are queued: a query is being held."""
        lab.wait_until(lambda: self.waiting(db) >= n, timeout, 0.05,
                       f"{n} client(s) of {db} waiting in SHOW POOLS")

    def value(self, db: str, query: str, connect_timeout: int = 10):
        """The first column of query's first row.  A client's login waits for
        a server while the pool has none yet: a test that holds the first
        query of an entry passes a connect_timeout beyond its hold."""
        with self.connect(db, connect_timeout) as c:
            return c.execute(query).fetchone()[0]

    def reload(self) -> None:
        self.write_config()
        self.admin("RELOAD")


class Writer:
    """Runs one statement every `interval` seconds on one connection until
    stopped, reconnecting after an error; records when each write completed
    and every error, to report the longest gap a client saw."""

    def __init__(self, conninfo: str, statement: str, interval: float = 0.005):
        self.conninfo, self.statement, self.interval = conninfo, statement, interval
        self.done: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "Writer":
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True)
                self._write(conn)
            except psycopg.Error as e:
                self.errors.append((time.monotonic(), str(e).strip().splitlines()[0]))
                try:
                    if conn is not None:
                        conn.close()
                except psycopg.Error:
                    pass
                conn = None
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def _write(self, conn: psycopg.Connection) -> None:
        """One write; raises psycopg.Error when it was not acknowledged."""
        conn.execute(self.statement)
        self.done.append(time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def __repr__(self) -> str:
        return f"Writer({len(self.done)} writes, {len(self.errors)} errors)"

    @property
    def ok(self) -> int:
        return len(self.done)

    def successes_since(self, t: float) -> int:
        return sum(1 for d in self.done if d >= t)

    def first_success_after(self, t: float) -> float | None:
        return next((d for d in self.done if d >= t), None)

    def longest_gap(self, since: float | None = None) -> float:
        """Longest time between two consecutive completed writes."""
        done = [d for d in self.done if since is None or d >= since]
        return max((b - a for a, b in zip(done, done[1:])), default=0.0)


class RecordingWriter(Writer):
    """A Writer that inserts numbered rows (src, id) into `table`, one
    autocommit INSERT ... RETURNING port at a time (the table's port
    defaults to inet_server_port()), and records every acknowledged write
    as (id, ack time, port of the server that acknowledged it): the answer
    to an autocommit INSERT is its COMMIT's.  A write whose answer never
    came (an error) is not acknowledged, whatever the server did with it."""

    def __init__(self, conninfo: str, table: str, src: str, interval: float = 0.005):
        super().__init__(conninfo, "", interval)
        self.table, self.src = table, src
        self.acked: list[tuple[int, float, int]] = []
        self._n = 0
        self._sql = f"insert into {table} (src, id) values (%s, %s) returning port"

    def _write(self, conn: psycopg.Connection) -> None:
        self._n += 1
        port = conn.execute(self._sql, (self.src, self._n)).fetchone()[0]
        t = time.monotonic()
        self.done.append(t)
        self.acked.append((self._n, t, port))

    def lost(self, conn: psycopg.Connection) -> list[int]:
        """The acknowledged ids that `conn`'s server does not have."""
        have = {r[0] for r in conn.execute(f"select id from {self.table} where src = %s",
                                           (self.src,))}
        return [i for i, _, _ in self.acked if i not in have]
