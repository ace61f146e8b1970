"""consul_redirect.so inside the PgBouncer fork, against a real Consul 1.8.7 dev
agent and a real 3-member Patroni 3.0.2 / PostgreSQL 15 cluster (tests/integration/lab.py).

    /usr/bin/python3 -m pytest -v tests/integration/test_consul_redirect.py   (as root)

Environment:
    PGBC_PGBOUNCER  the fork's binary (default: the build tree's)
    PGBC_PLUGIN     consul_redirect.so (default: the build tree's)

Tests on the shared cluster run in file order and leave it healthy.  Tests that
need a leader key the cluster does not own (no leader, bad member records, ACLs)
use a "fake" scope whose member records point at the real cluster's ports.
"""

from __future__ import annotations

import os
import re
import threading
import time

import psycopg
import pytest

import lab
from fork import PGBOUNCER, PLUGIN, Bouncer, db_line

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

SHOW_CONSUL_COLUMNS = ["database", "scope", "role", "state", "member", "host", "port",
                       "consul_index", "switches", "changed_at", "last_error"]


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for path in (PGBOUNCER, PLUGIN):
        if not os.path.exists(path):
            pytest.fail(f"{path} not built: run make (./test.sh builds it)")


@pytest.fixture
def bouncer_factory(request):
    made: list[Bouncer] = []

    def make(consul, databases, **kw) -> Bouncer:
        wd = lab.make_workdir("pgbc-bouncer-")
        b = Bouncer(wd, consul, databases, **kw)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()
        lab.log(f"pgbouncer log: {b.logfile}")


def member_port(cluster: lab.PatroniCluster, name: str) -> int:
    return cluster.member(name).port


# --------------------------------------------------------------------------- fake scope

class FakeScope:
    """Patroni-like keys under service/<scope>/ written by the test itself."""

    def __init__(self, consul: lab.Consul, scope: str = "fake", token: str | None = None):
        self.consul, self.scope, self.token = consul, scope, token
        self.prefix = f"service/{scope}/"

    def member(self, name: str, port: int, host: str = "127.0.0.1", role: str = "master",
               state: str = "running", conn_url: str | None = None) -> None:
        import json
        rec = {"conn_url": conn_url or f"postgres://{host}:{port}/postgres",
               "api_url": f"http://{host}:8008/patroni", "state": state, "role": role,
               "version": "3.0.2"}
        assert self.consul.kv_put(self.prefix + "members/" + name, json.dumps(rec),
                                  token=self.token)

    def leader(self, name: str) -> None:
        sid = self.consul.api("PUT", "/v1/session/create",
                              {"TTL": "60s", "Behavior": "delete", "LockDelay": "0s"},
                              token=self.token)["ID"]
        if not self.consul.kv_put(self.prefix + "leader", name, acquire=sid, token=self.token):
            # held by an earlier session: delete and acquire, as Patroni does
            self.no_leader()
            assert self.consul.kv_put(self.prefix + "leader", name, acquire=sid,
                                      token=self.token)

    def no_leader(self) -> None:
        self.consul.kv_delete(self.prefix + "leader", token=self.token)

    def clear(self) -> None:
        self.consul.kv_delete(self.prefix, recurse=True, token=self.token)


# --------------------------------------------------------------------------- real cluster

def test_show_consul_columns(patroni_cluster, consul, bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb")}).start()
    assert b.admin_columns("SHOW CONSUL") == SHOW_CONSUL_COLUMNS


def test_follows_leader_at_start(patroni_cluster, consul, bouncer_factory):
    leader = patroni_cluster.leader()
    b = bouncer_factory(consul, {"raddb": db_line("raddb")}).start()
    row = b.wait_row("raddb", lambda r: r["state"] == "following")
    assert row["member"] == leader and row["role"] == "primary" and row["scope"] == "raddb"
    assert int(row["port"]) == member_port(patroni_cluster, leader)
    assert int(row["consul_index"]) > 0 and row["last_error"] is None
    assert b.value("raddb", "select inet_server_port()") == member_port(patroni_cluster, leader)
    assert b.value("raddb", "select pg_is_in_recovery()") is False


def test_replica_role_uses_running_replicas(patroni_cluster, consul, bouncer_factory):
    """All lab members share 127.0.0.1 with different ports: one port wins, the
    others are skipped with a warning naming them."""
    leader = patroni_cluster.leader()
    replicas = sorted((member_port(patroni_cluster, n), n)
                      for n in patroni_cluster.names if n != leader)
    b = bouncer_factory(consul, {"raddb_ro": db_line("raddb", "replica")}).start()
    row = b.wait_row("raddb_ro", lambda r: r["state"] == "following")
    assert row["host"] == "127.0.0.1" and int(row["port"]) == replicas[0][0]
    assert row["member"] == replicas[0][1]
    assert b.value("raddb_ro", "select pg_is_in_recovery()") is True
    lab.wait_until(lambda: re.search(r"skipping .*" + replicas[1][1], b.log()), 5, 0.1,
                   "warning naming the skipped replica")


def test_switchover_moves_writes_without_errors(patroni_cluster, consul, bouncer_factory):
    old = patroni_cluster.leader()
    b = bouncer_factory(consul, {"raddb": db_line("raddb"),
                                 "raddb_ro": db_line("raddb", "replica")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("raddb", lambda r: r["state"] == "following")
    with b.connect("raddb") as c:
        c.execute("create table if not exists sw (id serial primary key, t timestamptz "
                  "default clock_timestamp(), port int default inet_server_port())")
    stop = threading.Event()
    errors: list[str] = []
    stamps: list[float] = []

    def writer():
        c = b.connect("raddb")
        while not stop.is_set():
            try:
                if c.closed:
                    c = b.connect("raddb")
                c.execute("insert into sw default values")
                stamps.append(time.monotonic())
            except psycopg.Error as e:
                errors.append(f"{time.monotonic():.3f} {e}")
            time.sleep(0.005)
        c.close()

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    try:
        res = patroni_cluster.switchover()
        time.sleep(2.0)
    finally:
        stop.set()
        t.join(60)
    gaps = [y - x for x, y in zip(stamps, stamps[1:])]
    lab.record_timing("redirect_switchover_longest_write_gap", max(gaps))
    lab.record_timing("redirect_switchover_client_errors", len(errors))
    lab.log(f"switchover {res}: longest write gap {max(gaps):.3f}s, errors {errors[:5]}")
    assert errors == []
    row = b.wait_row("raddb", lambda r: r["member"] == res["new"] and r["state"] == "following")
    assert int(row["switches"]) >= 1 and row["changed_at"] is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["changed_at"])
    assert b.value("raddb", "select inet_server_port()") == member_port(patroni_cluster, res["new"])
    assert old != res["new"]
    # the switchover was seen announced (failover key) before the leader key moved
    assert f'switchover from "{old}"' in b.logfile_text()
    # the replica entry follows too: never the new primary
    ro = b.wait_row("raddb_ro", lambda r: r["state"] == "following" and
                    res["new"] not in r["member"].split(","), timeout=30)
    assert int(ro["port"]) != member_port(patroni_cluster, res["new"])
    assert b.value("raddb_ro", "select pg_is_in_recovery()") is True
    patroni_cluster.wait_healthy(timeout=90)


def test_kill9_primary_queries_wait_then_run_on_new_leader(patroni_cluster, consul,
                                                           bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    old = b.wait_row("raddb", lambda r: r["state"] == "following")["member"]
    info = patroni_cluster.kill9_primary()
    try:
        # the leader key goes away with the session (ttl); queries then wait
        b.wait_row("raddb", lambda r: r["member"] != old and r["state"] == "following",
                   timeout=90, what="new leader followed")
        port = b.value("raddb", "select inet_server_port()")
        new = patroni_cluster.leader()
        assert port == member_port(patroni_cluster, new)
        assert b.value("raddb", "select pg_is_in_recovery()") is False
        lab.record_timing("redirect_kill9_to_following", time.monotonic() - info["time"])
    finally:
        patroni_cluster.start_member(old)
        patroni_cluster.wait_healthy(timeout=120)


def test_reload_keeps_unchanged_entry_connection(patroni_cluster, consul, bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb")}).start()
    b.wait_row("raddb", lambda r: r["state"] == "following")
    with b.connect("raddb") as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        switches = b.row("raddb")["switches"]
        b.databases["raddb_any"] = db_line("raddb", "any")
        b.reload()
        b.wait_row("raddb_any", lambda r: r["state"] == "following")
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
        b.consul_settings["wait"] = "45s"      # restarts the watch, not the connections
        b.reload()
        time.sleep(1.0)
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    assert b.row("raddb")["switches"] == switches


def test_reload_refuses_role_without_scope(patroni_cluster, consul, bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb")}).start()
    b.wait_row("raddb", lambda r: r["state"] == "following")
    b.databases["bad"] = "host=127.0.0.1 dbname=postgres patroni_role=replica"
    # PgBouncer 1.24's RELOAD answers OK and logs what it refused
    b.reload()
    assert "patroni_role = replica needs patroni_scope" in b.log()
    assert "bad" not in b.show_consul()
    assert b.row("raddb")["state"] == "following"


def test_bad_role_refused_at_start(consul, bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb", "leader")}).start(expect_fail=True)
    assert b.proc.returncode != 0
    assert re.search(r'patroni_role.*invalid value "leader"', b.log())


def test_bad_wait_refused_at_start(consul, bouncer_factory):
    b = bouncer_factory(consul, {"raddb": db_line("raddb")},
                        consul_settings={"wait": "11m"}).start(expect_fail=True)
    assert b.proc.returncode != 0
    assert 'invalid value "11m" for wait' in b.log()


# --------------------------------------------------------------------------- fake scope

@pytest.fixture
def fake(consul, patroni_cluster):
    f = FakeScope(consul)
    f.clear()
    leader = patroni_cluster.leader()
    f.member("a", member_port(patroni_cluster, leader))
    f.leader("a")
    yield f
    f.clear()


def test_no_leader_fails_waiting_queries_after_timeout(fake, consul, bouncer_factory):
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        consul_settings={"no_leader_timeout": "2s"},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    with b.connect("fdb") as c:
        assert c.execute("select 1").fetchone()[0] == 1
        fake.no_leader()
        b.wait_row("fdb", lambda r: r["state"] == "no_leader")
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error, match='no leader for Patroni scope "fake"'):
            c.execute("select 2")
        assert 1.5 < time.monotonic() - t0 < 6
        fake.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following")
        assert c.execute("select 3").fetchone()[0] == 3      # client stayed connected


def test_query_waits_for_new_leader(fake, consul, bouncer_factory, patroni_cluster):
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    fake.no_leader()
    b.wait_row("fdb", lambda r: r["state"] == "no_leader")
    threading.Timer(1.0, lambda: fake.leader("a")).start()
    t0 = time.monotonic()
    assert b.value("fdb", "select 42") == 42
    assert 0.8 < time.monotonic() - t0 < 10


def test_same_leader_recreated_keeps_connection(fake, consul, bouncer_factory):
    b = bouncer_factory(consul, {"fdb": db_line("fake")}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    with b.connect("fdb") as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        switches = b.row("fdb")["switches"]
        fake.no_leader()
        b.wait_row("fdb", lambda r: r["state"] == "no_leader")
        fake.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following")
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    assert b.row("fdb")["switches"] == switches


def test_refused_member_record_keeps_address(fake, consul, bouncer_factory):
    """A leader whose record is refused is never connected to: the entry keeps its
    address, stays held like one without a leader, and SHOW CONSUL says why."""
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        consul_settings={"no_leader_timeout": "2s"},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    row = b.wait_row("fdb", lambda r: r["state"] == "following")
    with b.connect("fdb") as c:
        assert c.execute("select 1").fetchone()[0] == 1
        fake.member("evil", 5999, conn_url="postgres://127.0.0.1:5999/postgres?host=/tmp")
        fake.leader("evil")
        row2 = b.wait_row("fdb", lambda r: r["last_error"] and "evil" in r["last_error"])
        assert "refused" in row2["last_error"]
        assert (row2["host"], row2["port"]) == (row["host"], row["port"])
        with pytest.raises(psycopg.Error, match='no leader for Patroni scope "fake"'):
            c.execute("select 2")
        assert ":5999" not in b.logfile_text().replace("5999/postgres", "")
        fake.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
        assert c.execute("select 3").fetchone()[0] == 3


def test_primary_in_recovery_is_refused(fake, consul, bouncer_factory, patroni_cluster):
    leader = patroni_cluster.leader()
    replica = next(n for n in patroni_cluster.names if n != leader)
    fake.member("r", member_port(patroni_cluster, replica), role="replica")
    fake.leader("r")
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        bouncer_settings={"pool_mode": "transaction",
                                          "query_wait_timeout": "3"}).start()
    b.wait_row("fdb", lambda r: r["member"] == "r")
    with pytest.raises(psycopg.Error):
        b.value("fdb", "select 1")
    port = member_port(patroni_cluster, replica)
    assert re.search(rf"127\.0\.0\.1:{port} is in recovery", b.log())


def test_consul_down_keeps_leader_and_logs_once(patroni_cluster, fresh_consul, bouncer_factory):
    f = FakeScope(fresh_consul)
    f.member("a", member_port(patroni_cluster, patroni_cluster.leader()))
    f.leader("a")
    b = bouncer_factory(fresh_consul, {"fdb": db_line("fake")}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    fresh_consul.stop()
    row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable", timeout=15)
    assert row["member"] == "a" and row["last_error"]
    assert b.value("fdb", "select 1") == 1
    time.sleep(5)
    assert len(re.findall(r"consul unreachable: .*/leader", b.logfile_text())) == 1
    fresh_consul.restart()
    f.member("a", member_port(patroni_cluster, patroni_cluster.leader()))
    f.leader("a")
    b.wait_row("fdb", lambda r: r["state"] == "following", timeout=60)


def test_token_never_shown(patroni_cluster, acl_consul, bouncer_factory):
    f = FakeScope(acl_consul, token=acl_consul.token)
    f.member("a", member_port(patroni_cluster, patroni_cluster.leader()))
    f.leader("a")
    wd = lab.make_workdir("pgbc-token-")
    tok = wd / "token"
    tok.write_text(acl_consul.token + "\n")
    lab.chown_tree(wd)
    os.chmod(tok, 0o600)
    b = bouncer_factory(acl_consul, {"fdb": db_line("fake")},
                        consul_settings={"token_file": str(tok)}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    assert acl_consul.token not in repr(b.admin("SHOW CONSUL"))
    assert acl_consul.token not in b.log()
    tok.write_text("00000000-0000-0000-0000-000000000000\n")
    b.reload()
    row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable")
    assert "403" in row["last_error"] and row["member"] == "a"
    assert acl_consul.token not in b.log()


def test_replica_role_without_running_member_holds(patroni_cluster, fake, consul,
                                                   bouncer_factory):
    leader = patroni_cluster.leader()
    replica = next(n for n in patroni_cluster.names if n != leader)
    fake.member("r1", member_port(patroni_cluster, replica), role="replica", state="stopped")
    b = bouncer_factory(consul, {"fro": db_line("fake", "replica")},
                        consul_settings={"no_leader_timeout": "60s"}).start()
    b.wait_row("fro", lambda r: r["state"] == "no_leader")
    threading.Timer(1.0, lambda: fake.member("r1", member_port(patroni_cluster, replica),
                                             role="replica")).start()
    t0 = time.monotonic()
    assert b.value("fro", "select pg_is_in_recovery()") is True   # waited, then ran
    assert 0.8 < time.monotonic() - t0 < 10
    assert b.row("fro")["member"] == "r1"
