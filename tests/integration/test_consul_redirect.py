"""consul_redirect.so inside the PgBouncer fork, against a real Consul 1.8.7 dev
agent and a real 3-member Patroni / PostgreSQL 15 cluster (tests/integration/lab.py;
PGBC_PATRONI=3 for bookworm's 3.0.2, the default, or 4 for trixie's 4.0.7).

    /usr/bin/python3 -m pytest -v tests/integration/test_consul_redirect.py   (as root)

Environment:
    PGBC_PGBOUNCER  the fork's binary (default: the build tree's)
    PGBC_PLUGIN     consul_redirect.so (default: the build tree's)

Tests on the shared cluster run in file order and leave it healthy.  Tests that
need a leader key the cluster does not own (no leader, bad member records, ACLs)
use a "fake" scope whose member records point at the real cluster's ports.
Tests that stop or restart Consul do it to a private agent (fresh_consul), and a
TcpProxy gives one server a second address (a second "member") or counts
connections to an address that must never be reached.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import threading
import time

import psycopg
import pytest

import lab
from fork import PGBOUNCER, PLUGIN, Bouncer, db_line, require_built
from proxy_traps import ByteRecorder, FaultProxy, ForwardProxy, TcpProxy, proxy_environment

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

SHOW_CONSUL_COLUMNS = ["database", "scope", "role", "state", "member", "host", "port",
                       "consul_index", "switches", "changed_at", "last_error"]


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    require_built(PGBOUNCER, PLUGIN)


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

    def member(self, name: str, port: int, host: str = "127.0.0.1", role: str | None = None,
               state: str = "running", conn_url: str | None = None) -> None:
        """A member record as the lab's Patroni writes it (PGBC_PATRONI): role
        None is its primary's ("master" in 3.x, "primary" in 4.x)."""
        patroni = lab.patroni_install()
        rec = {"conn_url": conn_url or f"postgres://{host}:{port}/postgres",
               "api_url": f"http://{host}:8008/patroni", "state": state,
               "role": role or patroni.primary_role, "version": patroni.version}
        assert self.consul.kv_put(self.prefix + "members/" + name, json.dumps(rec),
                                  token=self.token)

    def session(self) -> str:
        # a dev agent that just started may not have registered its node yet
        # ("Missing node registration"): sessions need it
        def create():
            try:
                return self.consul.api("PUT", "/v1/session/create",
                                       {"TTL": "60s", "Behavior": "delete",
                                        "LockDelay": "0s"}, token=self.token)["ID"]
            except lab.ConsulError as e:
                if "Missing node registration" not in str(e):
                    raise
                return None
        return lab.wait_until(create, 15, 0.1, "a consul session")

    def leader(self, name: str, direct: bool = False) -> None:
        """Make `name` the leader.  direct: the holder's session rewrites the
        key, so a watcher sees the old leader replaced with no gap (Patroni
        deletes and re-acquires, and a watcher may or may not see the gap)."""
        if direct:
            kv = self.consul.kv_get(self.prefix + "leader", token=self.token)
            assert kv and kv.session, "direct: needs a held leader key"
            assert self.consul.kv_put(self.prefix + "leader", name, acquire=kv.session,
                                      token=self.token)
            return
        sid = self.session()
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
    """All lab members share 127.0.0.1 with different ports: every running
    replica is used, each on its own port (plugin API 2's addresses), and
    queries are spread over them."""
    leader = patroni_cluster.leader()
    replicas = sorted((member_port(patroni_cluster, n), n)
                      for n in patroni_cluster.names if n != leader)
    b = bouncer_factory(consul, {"raddb_ro": db_line("raddb", "replica")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    row = b.wait_row("raddb_ro", lambda r: r["state"] == "following")
    assert row["member"] == ",".join(sorted(n for _, n in replicas))
    # SHOW shows the hosts as a list and the first address's port (members by name)
    first = min(replicas, key=lambda pn: pn[1])
    assert row["host"] == "127.0.0.1,127.0.0.1" and int(row["port"]) == first[0]
    assert b.value("raddb_ro", "select pg_is_in_recovery()") is True
    # new server connections take the addresses in turn: both replicas serve
    seen: set[int] = set()
    conns = [b.connect("raddb_ro") for _ in range(4)]
    try:
        for c in conns:
            c.execute("begin")
            seen.add(c.execute("select inet_server_port()").fetchone()[0])
    finally:
        for c in conns:
            c.close()
    assert seen == {p for p, _ in replicas}, seen


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
    try:
        lab.wait_until(lambda: len(stamps) >= 100, 30, 0.05, "writes before the switchover")
        res = patroni_cluster.switchover()
        n = len(stamps)
        lab.wait_until(lambda: len(stamps) >= n + 100 or errors, 60, 0.05,
                       "writes after the switchover")
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
        lab.wait_until(lambda: "consul settings changed (wait), watch restarted" in b.logfile_text(),
                       15, 0.05, "watch restarted")
        b.wait_row("raddb", lambda r: r["state"] == "following")
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
        # the query is held (queued in its pool), then failed by the timeout
        failed: list = []

        def query():
            try:
                c.execute("select 2")
            except psycopg.Error as e:
                failed.append(str(e))
        t = threading.Thread(target=query, daemon=True)
        t.start()
        b.wait_waiting("fdb")
        t.join(30)
        assert not t.is_alive() and len(failed) == 1
        assert 'no leader for Patroni scope "fake"' in failed[0]
        fake.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following")
        assert c.execute("select 3").fetchone()[0] == 3      # client stayed connected


def test_query_waits_for_new_leader(fake, consul, bouncer_factory, patroni_cluster):
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    fake.no_leader()
    b.wait_row("fdb", lambda r: r["state"] == "no_leader")
    got: list = []
    # the login waits too (no server yet): beyond libpq's 10 s under load
    t = threading.Thread(target=lambda: got.append(b.value("fdb", "select 42", connect_timeout=60)),
                         daemon=True)
    t.start()
    b.wait_waiting("fdb")                   # held while there is no leader
    assert got == []
    fake.leader("a")
    t.join(30)
    assert got == [42]


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
        fake.leader("evil", direct=True)
        row2 = b.wait_row("fdb", lambda r: r["last_error"] and "evil" in r["last_error"])
        assert "refused" in row2["last_error"], row2["last_error"]
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
    assert len(re.findall(r"consul unreachable: \S*/v1/kv/service/fake/\?", b.logfile_text())) == 1
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
    b.wait_row("fro", lambda r: r["state"] == "no_member")
    got: list = []
    t = threading.Thread(target=lambda: got.append(b.value("fro", "select pg_is_in_recovery()",
                                                           connect_timeout=60)),
                         daemon=True)
    t.start()
    b.wait_waiting("fro")                   # held: no running replica yet
    assert got == []
    fake.member("r1", member_port(patroni_cluster, replica), role="replica")
    t.join(30)
    assert got == [True]                    # waited, then ran
    assert b.row("fro")["member"] == "r1"


# --------------------------------------------------------------------------- listeners

@pytest.fixture
def proxies():
    made: list[TcpProxy] = []

    def make(target: int | None = None, port: int | None = None) -> TcpProxy:
        p = TcpProxy(target, port)
        made.append(p)
        return p
    yield make
    for p in made:
        p.close()


def server_connect_lines(b: Bouncer, port: int) -> list[str]:
    """PgBouncer's log lines about a server connection to 127.0.0.1:port."""
    return [ln for ln in b.log().splitlines() if re.search(rf"@127\.0\.0\.1:{port}\b", ln)]


# --------------------------------------------------------------------------- consul restart

def test_consul_restart_index_reset_followed(patroni_cluster, fresh_consul, bouncer_factory,
                                            proxies):
    """A restarted dev agent counts its index from ~1 again: the queries that
    watched index N must start over, or the next change waits out `wait`."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    alt = proxies(lp)
    f = FakeScope(fresh_consul)
    for i in range(80):                     # the index the plugin sees: well above ~20
        fresh_consul.kv_put(f"pad/{i}", "x")
    f.member("a", lp)
    f.leader("a")
    b = bouncer_factory(fresh_consul, {"fdb": db_line("fake")},
                        consul_settings={"wait": "60s"}).start()
    row = b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
    index_before = int(row["consul_index"])
    assert index_before > 80
    with b.connect("fdb") as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        fresh_consul.stop()
        row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable", timeout=15)
        assert row["member"] == "a" and row["last_error"] and int(row["port"]) == lp
        assert re.search(r'consul unreachable: \S*/v1/kv/service/fake/\S*: .*keeping leader "a"', b.log())
        # through the outage: the held connection and new clients keep working
        for _ in range(3):
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
            assert b.value("fdb", "select inet_server_port()") == lp
            time.sleep(0.5)
        fresh_consul.restart()
        f.member("a", lp)
        f.member("b", alt.port)
        f.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following" and r["last_error"] is None,
                   timeout=45)
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    switches = int(b.row("fdb")["switches"])
    assert fresh_consul.kv_index(f.prefix + "leader") < index_before
    t0 = time.monotonic()
    f.leader("b")
    # a stale index would block until wait (60s): the 30s bound on this wait
    # catches it
    row = b.wait_row("fdb", lambda r: r["member"] == "b" and r["state"] == "following",
                     timeout=30)
    lab.record_timing("redirect_follow_after_consul_restart", time.monotonic() - t0)
    assert int(row["port"]) == alt.port and int(row["switches"]) == switches + 1
    assert int(row["consul_index"]) < index_before
    assert b.value("fdb", "select inet_server_port()") == lp and alt.accepted >= 1
    assert "consul answers again" in b.logfile_text()


def test_started_while_consul_down(patroni_cluster, fresh_consul, bouncer_factory, proxies):
    """Until Consul first answers the entry's own host/port is used; then the
    leader's address replaces it."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    ini = proxies(lp)
    fresh_consul.stop()
    b = bouncer_factory(fresh_consul, {"fdb": db_line("fake", port=ini.port)}).start()
    row = b.row("fdb")
    assert row["state"] in ("starting", "consul_unreachable")
    row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable", timeout=10)
    assert row["member"] is None and row["last_error"]
    assert (row["host"], int(row["port"])) == ("127.0.0.1", ini.port)
    assert b.value("fdb", "select inet_server_port()") == lp
    assert ini.accepted >= 1
    fresh_consul.start()
    f = FakeScope(fresh_consul)
    f.member("a", lp)
    f.leader("a")
    row = b.wait_row("fdb", lambda r: r["state"] == "following", timeout=45)
    assert row["member"] == "a" and int(row["port"]) == lp and row["last_error"] is None
    seen = ini.accepted
    with b.connect("fdb") as c:
        assert c.execute("select inet_server_port()").fetchone()[0] == lp
        assert c.execute("select pg_is_in_recovery()").fetchone()[0] is False
    assert ini.accepted == seen            # new server connections go to the leader


# --------------------------------------------------------------------------- ACL

def test_acl_token_file(patroni_cluster, acl_consul, bouncer_factory, proxies):
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    alt = proxies(lp)
    f = FakeScope(acl_consul, token=acl_consul.token)
    f.member("a", lp)
    f.member("b", alt.port)
    f.leader("a")
    wrong = "11111111-2222-3333-4444-555555555555"
    wd = lab.make_workdir("pgbc-token-")
    tok = wd / "token"
    tok.write_text(acl_consul.token + "\n")
    lab.chown_tree(wd)
    os.chmod(tok, 0o600)

    def secret_free(text: str) -> bool:
        return acl_consul.token not in text and wrong not in text

    # a token file that is not there: start-up refused, naming the path
    missing = wd / "no-such-token"
    bad = bouncer_factory(acl_consul, {"fdb": db_line("fake")},
                          consul_settings={"token_file": str(missing)}).start(expect_fail=True)
    assert bad.proc.returncode != 0
    assert re.search(rf'token_file.*"{re.escape(str(missing))}".*No such file', bad.log())

    b = bouncer_factory(acl_consul, {"fdb": db_line("fake")},
                        consul_settings={"token_file": str(tok)}).start()
    row = b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
    assert row["last_error"] is None and int(row["port"]) == lp

    # RELOAD while the file is gone: logged with its path, the previous token kept
    tok.rename(wd / "token.away")
    mark = len(b.logfile_text())
    b.reload()
    lab.wait_until(lambda: str(tok) in b.logfile_text()[mark:], 10, 0.1,
                   "RELOAD error naming the token file")
    f.leader("b")
    row = b.wait_row("fdb", lambda r: r["member"] == "b" and r["state"] == "following")
    assert row["last_error"] is None and int(row["port"]) == alt.port
    assert b.value("fdb", "select 1") == 1

    # a wrong token: 403 shown, the last leader kept and used
    (wd / "token.away").rename(tok)
    tok.write_text(wrong + "\n")
    b.reload()
    row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable", timeout=15)
    assert "403" in row["last_error"] and row["member"] == "b"
    assert int(row["port"]) == alt.port
    assert re.search(r'/v1/kv/service/fake/\S*: permission denied \(http 403.*keeping leader "b"', b.log())
    with b.connect("fdb") as c:
        assert c.execute("select inet_server_port()").fetchone()[0] == lp
    shown = repr(b.admin("SHOW CONSUL"))

    # the good token again: following from a fresh read
    tok.write_text(acl_consul.token + "\n")
    b.reload()
    b.wait_row("fdb", lambda r: r["state"] == "following" and r["last_error"] is None,
               timeout=45)
    shown += repr(b.admin("SHOW CONSUL")) + repr(b.admin("SHOW CONFIG"))
    assert secret_free(shown)
    assert secret_free(b.log()) and secret_free(bad.log())


# --------------------------------------------------------------------------- bad records

TRAP_PORT_99999 = 99999 % 65536        # where a port cut to 16 bits would go

BAD_RECORDS = {
    # id: (value built from the trap port, what last_error says)
    "not_json": (lambda p: f"postgres://127.0.0.1:{p}/postgres", "not valid json"),
    "conn_params": (lambda p: json.dumps({
        "conn_url": f"postgres://127.0.0.1:{p}/postgres?sslmode=disable",
        "state": "running", "role": "master"}), "connection parameters"),
    "bad_port": (lambda p: json.dumps({
        "conn_url": "postgres://127.0.0.1:99999/postgres",
        "state": "running", "role": "master"}), 'invalid port "99999"'),
    "not_postgres": (lambda p: json.dumps({
        "conn_url": f"mysql://127.0.0.1:{p}/postgres",
        "state": "running", "role": "master"}), "not a postgres"),
    "huge": (lambda p: json.dumps({
        "conn_url": f"postgres://127.0.0.1:{p}/postgres", "state": "running",
        "role": "master", "tags": {"pad": "x" * 400 * 1024}}), "exceeds the limit"),
}


@pytest.mark.parametrize("kind", list(BAD_RECORDS))
def test_bad_member_record_refused(kind, fake, consul, bouncer_factory, proxies,
                                   patroni_cluster):
    make_value, why = BAD_RECORDS[kind]
    try:
        trap = proxies(port=TRAP_PORT_99999 if kind == "bad_port" else None)
    except OSError:                     # 34463 taken on this machine: log check only
        trap = proxies()
    value = make_value(trap.port)
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    row = b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
    with b.connect("fdb") as c:
        assert c.execute("select 1").fetchone()[0] == 1
        assert consul.kv_put(fake.prefix + "members/evil", value)
        fake.leader("evil", direct=True)
        bad = b.wait_row("fdb", lambda r: r["last_error"] and "evil" in r["last_error"])
        assert "refused" in bad["last_error"] and why in bad["last_error"], bad["last_error"]
        assert (bad["host"], bad["port"]) == (row["host"], row["port"])
        assert bad["member"] == "a" and bad["state"] == "leader_unknown"
        # a query now waits (never sent to the ex-leader), then runs once a
        # usable leader is back
        got: list = []
        t = threading.Thread(target=lambda: got.append(
            c.execute("select inet_server_port()").fetchone()[0]))
        t.start()
        b.wait_waiting("fdb")
        assert got == [] and t.is_alive()
        fake.leader("a")
        t.join(15)
        assert got == [int(row["port"])]
        b.wait_row("fdb", lambda r: r["state"] == "following" and r["last_error"] is None)
    assert trap.accepted == 0
    assert server_connect_lines(b, trap.port) == []
    assert int(b.row("fdb")["switches"]) == int(row["switches"])


def held_query_error(b, db, bound):
    """Run a query on db that must be held and then fail; its error text.
    bound limits the wait for the failure, not a measured speed."""
    failed: list = []

    def query():
        try:
            b.value(db, "select 1")
        except psycopg.Error as e:
            failed.append(str(e))
    t = threading.Thread(target=query, daemon=True)
    t.start()
    t.join(bound)
    assert not t.is_alive(), f"query on {db} still waiting after {bound}s"
    assert len(failed) == 1, f"query on {db} did not fail"
    return failed[0]


# --------------------------------------------------------------------------- RELOAD

def test_reload_changes_watches(patroni_cluster, consul, fresh_consul, bouncer_factory,
                                proxies):
    leader = patroni_cluster.leader()
    lp = member_port(patroni_cluster, leader)
    p1, p2 = proxies(lp), proxies(lp)
    fa, fb = FakeScope(consul, "fake5a"), FakeScope(consul, "fake5b")
    for f in (fa, fb):
        f.clear()
    fa.member("a", lp)
    fa.leader("a")
    fb.member("x", p1.port)
    fb.leader("x")
    # the other agent: the same real leader for raddb, another member for fake5b
    other_raddb, other_b = FakeScope(fresh_consul, "raddb"), FakeScope(fresh_consul, "fake5b")
    other_raddb.member(leader, lp)
    other_raddb.leader(leader)
    other_b.member("z", p2.port)
    other_b.leader("z")
    try:
        b = bouncer_factory(consul, {"keep": db_line("raddb"), "fdb": db_line("fake5a"),
                                     "gone": db_line("raddb", "replica")}).start()
        for db in ("keep", "fdb", "gone"):
            b.wait_row(db, lambda r: r["state"] == "following")
        with b.connect("keep") as c:
            pid = c.execute("select pg_backend_pid()").fetchone()[0]
            keep_switches = b.row("keep")["switches"]

            # [databases]: drop one, add one, move one to another scope
            del b.databases["gone"]
            b.databases["added"] = db_line("fake5b")
            b.databases["fdb"] = db_line("fake5b")
            b.reload()
            row = b.wait_row("fdb", lambda r: r["scope"] == "fake5b" and r["member"] == "x")
            assert int(row["port"]) == p1.port
            b.wait_row("added", lambda r: r["member"] == "x" and r["state"] == "following")
            rows = b.show_consul()
            assert set(rows) == {"keep", "fdb", "added"}
            assert rows["keep"]["scope"] == "raddb" and rows["keep"]["role"] == "primary"
            log = b.logfile_text()
            assert 'scope "fake5a": watch dropped' in log
            assert 'database "gone" no longer follows scope "raddb"' in log
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid

            # [consul]: another agent, other wait and no_leader_timeout
            b.consul_settings.update(url=fresh_consul.url, wait="20s", no_leader_timeout="1s")
            b.reload()
            for db in ("fdb", "added"):
                row = b.wait_row(db, lambda r: r["member"] == "z" and r["state"] == "following")
                assert int(row["port"]) == p2.port
            row = b.wait_row("keep", lambda r: r["state"] == "following" and r["member"] == leader)
            assert int(row["port"]) == lp and row["switches"] == keep_switches
            assert "consul settings changed (url, wait), watch restarted" in b.logfile_text()
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
            assert b.value("fdb", "select inet_server_port()") == lp and p2.accepted >= 1
            other_b.no_leader()
            b.wait_row("added", lambda r: r["state"] == "no_leader")
            # 1s, not the former 30s: the held query fails within a wait
            # bounded well under 30s
            err = held_query_error(b, "added", 15)
            assert 'no leader for Patroni scope "fake5b"' in err
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    finally:
        for f in (fa, fb):
            f.clear()


# --------------------------------------------------------------------------- two scopes

def test_two_scopes_followed_independently(patroni_cluster, consul, bouncer_factory, proxies):
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    alt = proxies(lp)
    f1, f2 = FakeScope(consul, "fake6a"), FakeScope(consul, "fake6b")
    for f in (f1, f2):
        f.clear()
        f.member("a", lp)
        f.leader("a")
    f1.member("b", alt.port)
    try:
        b = bouncer_factory(consul, {"d1": db_line("fake6a"), "d2": db_line("fake6b")},
                            consul_settings={"no_leader_timeout": "30s"}).start()
        r1 = b.wait_row("d1", lambda r: r["state"] == "following")
        r2 = b.wait_row("d2", lambda r: r["state"] == "following")
        with b.connect("d2") as c2:
            pid2 = c2.execute("select pg_backend_pid()").fetchone()[0]
            f1.leader("b")
            now1 = b.wait_row("d1", lambda r: r["member"] == "b" and r["state"] == "following")
            assert int(now1["port"]) == alt.port
            assert int(now1["switches"]) == int(r1["switches"]) + 1
            assert b.value("d1", "select inet_server_port()") == lp and alt.accepted >= 1
            now2 = b.row("d2")
            assert (now2["member"], now2["port"], now2["switches"], now2["changed_at"]) == \
                (r2["member"], r2["port"], r2["switches"], r2["changed_at"])
            assert c2.execute("select pg_backend_pid()").fetchone()[0] == pid2
            # no leader in the second scope: the first does not wait for it
            f2.no_leader()
            b.wait_row("d2", lambda r: r["state"] == "no_leader")
            # d2's queries wait up to 30s; one on d1 is not among them
            got: list = []
            t = threading.Thread(target=lambda: got.append(b.value("d1", "select 1")), daemon=True)
            t.start()
            t.join(15)
            assert got == [1] and b.waiting("d1") == 0
            assert b.row("d1")["state"] == "following"
            f2.leader("a")
            b.wait_row("d2", lambda r: r["state"] == "following" and r["member"] == "a")
            assert c2.execute("select pg_backend_pid()").fetchone()[0] == pid2
        assert b.row("d2")["switches"] == r2["switches"]
    finally:
        for f in (f1, f2):
            f.clear()


# --------------------------------------------------------------------------- replicas

def test_replica_role_member_stops_and_returns(patroni_cluster, consul, bouncer_factory):
    """One host, several ports: the entry uses every running replica on its
    own port.  A stopped replica leaves the list (connections to the other
    stay), and comes back into it when it runs again."""
    leader = patroni_cluster.leader()
    (p_low, r_low), (p_high, r_high) = sorted(
        (member_port(patroni_cluster, n), n) for n in patroni_cluster.names if n != leader)
    b = bouncer_factory(consul, {"ro": db_line("raddb", "replica")}).start()
    row = b.wait_row("ro", lambda r: r["state"] == "following")
    both = ",".join(sorted([r_low, r_high]))
    assert row["member"] == both
    stopped = False
    try:
        with b.connect("ro") as keep:
            kept = keep.execute("select inet_server_port(), pg_backend_pid()").fetchone()
            stop = r_high if kept[0] == p_low else r_low    # the replica not in use
            patroni_cluster.stop_member(stop)
            stopped = True
            row = b.wait_row("ro", lambda r: r["member"] == (r_low if stop == r_high else r_high),
                             timeout=60, what=f"{stop} dropped")
            assert row["state"] == "following" and int(row["switches"]) >= 1
            # the session on the replica still listed kept its server
            assert keep.execute("select inet_server_port(), pg_backend_pid()").fetchone() == kept
        with b.connect("ro") as c:
            assert c.execute("select inet_server_port()").fetchone()[0] == kept[0]
            assert c.execute("select pg_is_in_recovery()").fetchone()[0] is True
        patroni_cluster.start_member(stop)
        stopped = False
        row = b.wait_row("ro", lambda r: r["member"] == both, timeout=90,
                         what=f"{stop} back")
        assert row["state"] == "following"
    finally:
        if stopped:
            patroni_cluster.start_member(stop)
        patroni_cluster.wait_healthy(timeout=120)


# --------------------------------------------------------------------------- faulty answers

@pytest.mark.parametrize("mode,error", [("500", "500"), ("garbage", "json"),
                                        ("huge", "large"), ("slow", "timed out")])
def test_consul_faults_keep_last_leader(fake, consul, bouncer_factory, mode, error):
    proxy = FaultProxy(consul.url)
    try:
        b = bouncer_factory(consul, {"fdb": db_line("fake")},
                            consul_settings={"url": proxy.url, "wait": "2s"},
                            bouncer_settings={"pool_mode": "transaction"}).start()
        b.wait_row("fdb", lambda r: r["state"] == "following")
        with b.connect("fdb") as c:
            pid = c.execute("select pg_backend_pid()").fetchone()[0]
            proxy.mode = mode
            row = b.wait_row("fdb", lambda r: r["state"] == "consul_unreachable", timeout=30)
            assert row["member"] == "a"
            assert error in (row["last_error"] or "").lower(), row["last_error"]
            # requests back off instead of flooding the agent (two watched
            # keys per scope: leader and failover)
            before = proxy.requests
            time.sleep(6)
            assert proxy.requests - before <= 12, f"{proxy.requests - before} requests in 6 s"
            # the last good leader still serves, on the same server connection
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
            # logged once per change of state, not once per retry
            assert len(re.findall(r"consul unreachable: \S*/v1/kv/service/fake/\?", b.logfile_text())) == 1
            proxy.mode = "pass"
            b.wait_row("fdb", lambda r: r["state"] == "following", timeout=40)
    finally:
        proxy.close()


def test_any_and_replica_roles_list_running_members(consul, bouncer_factory):
    """Members on distinct hosts with one port: the entries' host lists are
    the running members (any) and the running replicas (replica)."""
    f = FakeScope(consul, scope="hosts")
    f.clear()
    try:
        f.member("a", 5999, host="127.0.0.1")
        f.member("b", 5999, host="127.0.0.2", role="replica")
        f.member("c", 5999, host="127.0.0.3", role="replica", state="stopped")
        f.member("d", 5999, host="127.0.0.4", role="replica")
        f.leader("a")
        b = bouncer_factory(consul, {"h_any": db_line("hosts", "any"),
                                     "h_ro": db_line("hosts", "replica")}).start()
        b.wait_row("h_any", lambda r: r["host"] == "127.0.0.1,127.0.0.2,127.0.0.4")
        b.wait_row("h_ro", lambda r: r["host"] == "127.0.0.2,127.0.0.4")
        assert int(b.row("h_ro")["port"]) == 5999
        dbs = {r["name"]: r for r in b.admin("SHOW DATABASES")}
        assert dbs["h_ro"]["host"] == "127.0.0.2,127.0.0.4"
        # c starts running, d stops: the lists follow
        f.member("c", 5999, host="127.0.0.3", role="replica")
        f.member("d", 5999, host="127.0.0.4", role="replica", state="stopped")
        b.wait_row("h_ro", lambda r: r["host"] == "127.0.0.2,127.0.0.3")
        b.wait_row("h_any", lambda r: r["host"] == "127.0.0.1,127.0.0.2,127.0.0.3")
    finally:
        f.clear()


# --------------------------------------------------------------------------- proxies

PROXY_PASSWORD = "pr0xy-pw-9f3a"


@pytest.fixture
def recorder():
    r = ByteRecorder()
    yield r
    r.close()


def proxy_first(b: Bouncer, value: str) -> Bouncer:
    """Put `proxy = value` first in [consul]: PgBouncer's parser names the
    line of a refused value right when a key line follows it (before a blank
    line it counts one line on)."""
    b.consul_settings = {"proxy": value, **{k: v for k, v in b.consul_settings.items()
                                            if k != "proxy"}}
    b.write_config()
    return b


def ini_line(b: Bouncer, key: str) -> int:
    """The line number of `key = ...` in the bouncer's pgbouncer.ini."""
    for n, line in enumerate(b.ini.read_text().splitlines(), 1):
        if line.split("=", 1)[0].strip() == key:
            return n
    raise AssertionError(f"no {key} line in {b.ini}")


def test_environment_proxy_never_gets_the_token(patroni_cluster, acl_consul, bouncer_factory,
                                                proxies, recorder):
    """http_proxy & co. point at a listener of ours: a client that leaves
    libcurl's proxy alone (as the plugin used to) hands it the token; the
    fork follows the leader talking to Consul directly and never connects."""
    assert shutil.which("curl"), "curl (Debian package curl) is needed for the control run"
    env = proxy_environment(recorder.url)
    token = acl_consul.token
    f = FakeScope(acl_consul, token=token)
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    alt = proxies(lp)
    f.member("a", lp)
    f.member("b", alt.port)
    f.leader("a")

    # control: libcurl with no CURLOPT_PROXY, the same environment -> leaks
    subprocess.run(["curl", "-sS", "-o", "/dev/null", "-H", f"X-Consul-Token: {token}",
                    f"{acl_consul.url}/v1/kv/{f.prefix}leader"],
                   env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert recorder.wait_for(lambda got: b"\r\n\r\n" in got, 15), recorder
    assert f"X-Consul-Token: {token}".encode() in recorder.received, recorder
    assert f"GET {acl_consul.url}/v1/kv/{f.prefix}leader ".encode() in recorder.received
    recorder.reset()

    wd = lab.make_workdir("pgbc-token-")
    tok = wd / "token"
    tok.write_text(token + "\n")
    lab.chown_tree(wd)
    os.chmod(tok, 0o600)
    b = bouncer_factory(acl_consul, {"fdb": db_line("fake")},
                        consul_settings={"token_file": str(tok)}, env=env).start()
    try:
        row = b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
    except TimeoutError:
        pytest.fail(f"not following; the listener got {recorder!r}")
    assert row["last_error"] is None
    f.leader("b")                           # a change seen only by asking Consul again
    row = b.wait_row("fdb", lambda r: r["member"] == "b" and r["state"] == "following")
    assert int(row["port"]) == alt.port and row["last_error"] is None
    assert b.value("fdb", "select inet_server_port()") == lp and alt.accepted >= 1
    assert recorder.connections == 0 and recorder.received == b"", recorder
    assert token not in b.log()


def test_proxy_key_sends_requests_through_it(fake, consul, bouncer_factory, recorder):
    """[consul] proxy names a forward proxy: the requests go there (with its
    credentials), not to the environment's proxy, whatever no_proxy says;
    the log names the proxy without its user info."""
    fwd = ForwardProxy(consul.url)
    try:
        env = proxy_environment(recorder.url, no_proxy="*", NO_PROXY="*")
        b = bouncer_factory(consul, {"fdb": db_line("fake")}, env=env,
                            consul_settings={"proxy": f"http://pgbc:{PROXY_PASSWORD}@"
                                                      f"127.0.0.1:{fwd.port}"}).start()
        row = b.wait_row("fdb", lambda r: r["state"] == "following" and r["member"] == "a")
        assert row["last_error"] is None
        want = f"GET {consul.url}/v1/kv/{fake.prefix}?recurse"
        assert fwd.wait_request(want, 15), fwd
        auth = "Basic " + base64.b64encode(f"pgbc:{PROXY_PASSWORD}".encode()).decode()
        assert set(fwd.proxy_auth) == {auth}, fwd.proxy_auth
        assert recorder.connections == 0, recorder
        assert f'watching service at {consul.url} through proxy http://127.0.0.1:{fwd.port}' \
            in b.logfile_text()
        assert PROXY_PASSWORD not in b.log()
    finally:
        fwd.close()


@pytest.mark.parametrize("value,why", [
    ("ftp://127.0.0.1:3128", "must start with http://, https://, socks5:// or socks5h://"),
    ("http://127.0.0.1", "needs a port"),
    ("http://127.0.0.1:3128/consul", "must not have a path"),
])
def test_bad_proxy_refused_at_start(consul, bouncer_factory, value, why):
    b = proxy_first(bouncer_factory(consul, {"fdb": db_line("fake")}), value)
    b.start(expect_fail=True)
    assert b.proc.returncode != 0
    log = b.log()
    assert f'[consul] proxy: invalid value "{value}" for proxy: {why}' in log, log
    assert f"for parameter proxy in configuration ({b.ini}:{ini_line(b, 'proxy')})" in log, log


def test_bad_proxy_refused_at_reload(fake, consul, bouncer_factory):
    b = bouncer_factory(consul, {"fdb": db_line("fake")}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    mark = len(b.logfile_text())
    proxy_first(b, f"socks4://u:{PROXY_PASSWORD}@127.0.0.1:1080")
    b.admin("RELOAD")
    lab.wait_until(lambda: "proxy" in b.logfile_text()[mark:], 10, 0.1,
                   "RELOAD refusing the proxy")
    after = b.logfile_text()[mark:]
    assert '[consul] proxy: invalid value "socks4://127.0.0.1:1080" for proxy: ' \
        'socks4 cannot carry IPv6 or a password' in after, after
    assert f"({b.ini}:{ini_line(b, 'proxy')})" in after, after
    assert "consul settings changed" not in after
    row = b.row("fdb")
    assert row["state"] == "following" and row["last_error"] is None
    assert b.value("fdb", "select 1") == 1
