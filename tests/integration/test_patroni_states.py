"""consul_redirect.so in the states of a Patroni 3/4 cluster that the first
version got wrong (issue 9): each test drives the fork against a real Consul
agent and real PostgreSQL servers of the lab cluster, and fails on the old
plugin.

    /usr/bin/python3 -m pytest -v tests/integration/test_patroni_states.py   (as root)

Most tests use a "fake" scope (Patroni-like keys the test writes, member
records pointing at the real cluster's servers) to reach a state on demand;
the switchover test uses the real cluster.
"""

from __future__ import annotations

import json
import re
import threading
import time

import psycopg
import pytest

import lab
from fork import Bouncer, Writer, db_line
from proxy_traps import ByteRecorder, ForwardProxy
from test_consul_redirect import (FakeScope, TcpProxy, bouncer_factory, fake,  # noqa: F401
                                  member_port, proxies)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

# the module's cluster spans two sites (conftest's patroni_cluster reads this)
PATRONI_TAGS = {"n1": {"dc": "dc1"}, "n2": {"dc": "dc1"}, "n3": {"dc": "dc2"}}


def replica_ports(cluster: lab.PatroniCluster) -> list[int]:
    leader = cluster.leader()
    return sorted(member_port(cluster, n) for n in cluster.names if n != leader)


# a held query's client: its login waits too while the entry has no server
# yet, so its connect_timeout outlasts the tests' holds (no_leader_timeout up
# to 120 s), not libpq's 10 s (seen on CI: a login timed out mid-backoff)
HELD_CONNECT_TIMEOUT = 150


def held_value(b: Bouncer, db: str, query: str):
    return b.value(db, query, connect_timeout=HELD_CONNECT_TIMEOUT)


def run_in_thread(fn) -> tuple[threading.Thread, list]:
    out: list = []

    def run():
        try:
            out.append(fn())
        except psycopg.Error as e:
            out.append(e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_leader_record_rewritten_is_followed(fake, consul, bouncer_factory, proxies,
                                             patroni_cluster):
    """The member that holds the leader key rewrites its record with another
    conn_url (a port change, a restart in pause mode): the entry moves, although
    the leader key never changed hands (defect 4)."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    alt = proxies(lp)                       # the same server on a second port
    b = bouncer_factory(consul, {"fdb": db_line("fake")}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following" and int(r["port"]) == lp)
    fake.member("a", alt.port)
    row = b.wait_row("fdb", lambda r: int(r["port"]) == alt.port)
    assert row["member"] == "a" and row["state"] == "following"
    assert b.value("fdb", "select 1") == 1
    assert alt.accepted >= 1


def test_replica_entry_excludes_leader_whose_record_says_replica(fake, consul, bouncer_factory,
                                                                  patroni_cluster):
    """Right after a switchover the new leader's record still says replica for
    one HA loop: the leader key decides, so the replica entry never gets it, nor
    the old primary whose record still says master (defect 1)."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    r1, r2 = replica_ports(patroni_cluster)
    fake.clear()
    fake.member("a", r1, role="master")     # the old primary, not yet rewritten
    fake.member("b", lp, role="replica")    # the new leader, not yet rewritten
    fake.member("c", r2, role="replica")
    fake.leader("b")
    b = bouncer_factory(consul, {"fro": db_line("fake", "replica"),
                                 "fany": db_line("fake", "any"),
                                 "fdb": db_line("fake")}).start()
    row = b.wait_row("fro", lambda r: r["state"] == "following")
    assert row["member"] == "c" and int(row["port"]) == r2
    assert b.value("fro", "select pg_is_in_recovery()") is True
    assert b.wait_row("fdb", lambda r: r["state"] == "following")["member"] == "b"
    assert b.value("fdb", "select pg_is_in_recovery()") is False
    # any: the leader and the running replicas, never the stale "master"
    assert b.wait_row("fany", lambda r: r["state"] == "following")["member"] == "b,c"


def test_replica_entry_refuses_a_server_out_of_recovery(fake, consul, bouncer_factory,
                                                         patroni_cluster):
    """A record that says replica but points at a primary: each new server
    connection of a replica entry is checked to be in recovery, so the read
    waits instead of landing on the primary (defect 1)."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    r1, _ = replica_ports(patroni_cluster)
    fake.clear()
    fake.member("a", lp, role="master")
    fake.member("r", lp, role="replica")    # stale: points at the primary
    fake.leader("a")
    b = bouncer_factory(consul, {"fro": db_line("fake", "replica")},
                        consul_settings={"no_leader_timeout": "60s"}).start()
    b.wait_row("fro", lambda r: r["state"] == "following" and r["member"] == "r")
    t, got = run_in_thread(lambda: held_value(b, "fro", "select pg_is_in_recovery()"))
    row = b.wait_row("fro", lambda r: r["last_error"] and "not in recovery" in r["last_error"])
    assert f"127.0.0.1 port {lp} refused" in row["last_error"]
    assert got == [] and t.is_alive()
    fake.member("r", r1, role="replica")
    t.join(30)
    assert got == [True]


def test_refused_server_backs_off(fake, consul, bouncer_factory, patroni_cluster):
    """A leader record pointing at a node in recovery (a stale record, a check
    that keeps failing) is retried fast for half a second, then with a backoff
    up to 2 s, with one warning, not 40 connections and log lines a second
    forever (defect 6)."""
    r1, _ = replica_ports(patroni_cluster)
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    fake.member("a", r1)
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        consul_settings={"no_leader_timeout": "120s"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    t, got = run_in_thread(lambda: held_value(b, "fdb", "select 1"))

    def paused_ms(r):
        m = re.search(r"refused (\d+) times: .*next try in (\d+) ms", r["last_error"] or "")
        return m and int(m.group(2)) >= 1000 and (int(m.group(1)), int(m.group(2)))
    row = b.wait_row("fdb", paused_ms, timeout=60, what="a retry pause of at least 1 s")
    refused, pause = paused_ms(row)
    assert pause <= 2000, row
    log = b.logfile_text()
    assert len(re.findall(r'database "fdb": server 127\.0\.0\.1 port \d+ refused', log)) == 1, log
    assert got == [] and t.is_alive(), (got, log)
    fake.member("a", lp)
    t.join(30)
    assert got == [1], (got, b.logfile_text())


def test_standby_cluster_leader_serves_reads_without_retries(fake, consul, bouncer_factory,
                                                            patroni_cluster):
    """A standby cluster's leader is in recovery by design: SHOW CONSUL says
    standby_leader, reads run, and nothing is refused or retried (defect 6)."""
    r1, _ = replica_ports(patroni_cluster)
    fake.clear()
    assert consul.kv_put(fake.prefix + "config", json.dumps(
        {"ttl": 30, "loop_wait": 10, "standby_cluster": {"host": "10.9.9.9", "port": 5432}}))
    fake.member("a", r1, role="standby_leader")
    fake.leader("a")
    b = bouncer_factory(consul, {"fdb": db_line("fake")}).start()
    row = b.wait_row("fdb", lambda r: r["state"] == "standby_leader")
    assert row["member"] == "a" and int(row["port"]) == r1
    assert b.value("fdb", "select pg_is_in_recovery()") is True
    assert b.row("fdb")["last_error"] is None
    assert "refused" not in b.logfile_text()
    assert "standby cluster" in b.log()


def test_failsafe_mode_keeps_the_leader(fake, consul, bouncer_factory, patroni_cluster):
    """failsafe_mode on and the failsafe key written: a leader key that goes
    away is not a dead primary; queries keep running on it. Without failsafe
    the same loss holds queries (no_leader)."""
    lp = member_port(patroni_cluster, patroni_cluster.leader())
    assert consul.kv_put(fake.prefix + "config", json.dumps({"failsafe_mode": True}))
    assert consul.kv_put(fake.prefix + "failsafe", json.dumps(
        {"a": "http://127.0.0.1:8008/patroni"}))
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    fake.no_leader()
    row = b.wait_row("fdb", lambda r: r["state"] == "failsafe")
    assert row["member"] == "a" and int(row["port"]) == lp
    assert b.value("fdb", "select 1") == 1
    consul.kv_delete(fake.prefix + "failsafe")
    b.wait_row("fdb", lambda r: r["state"] == "no_leader")


def test_reload_moving_entry_holds_until_the_new_scope_answers(fake, consul, bouncer_factory,
                                                                patroni_cluster):
    """RELOAD moves an entry to another scope while Consul does not answer:
    its address belongs to the old cluster, so queries wait and then fail with
    the new scope's name; they never reach the old cluster (defect 5)."""
    hang = ByteRecorder()                    # accepts and never answers
    try:
        b = bouncer_factory(consul, {"fdb": db_line("fake")},
                            consul_settings={"no_leader_timeout": "3s"},
                            bouncer_settings={"pool_mode": "transaction"}).start()
        b.wait_row("fdb", lambda r: r["state"] == "following")
        b.databases["fdb"] = db_line("other")
        b.consul_settings["url"] = hang.url
        b.reload()
        b.wait_row("fdb", lambda r: r["scope"] == "other")
        t, got = run_in_thread(lambda: held_value(b, "fdb", "select inet_server_port()"))
        t.join(60)
        assert not t.is_alive() and len(got) == 1
        assert isinstance(got[0], psycopg.Error), got
        assert 'no answer from consul for Patroni scope "other"' in str(got[0])
        assert "held until the scope answers" in b.log()
    finally:
        hang.close()


def test_member_churn_does_not_delay_the_leader(fake, consul, bouncer_factory):
    """In a no-leader window Patroni keeps rewriting member records.  The first
    version's watch on the missing leader key woke for each of those writes and
    its rate limiter (4 at once, then 1 a second) then held back the request
    that would see the new leader, for up to a second (defect 7).  The scope
    watch asks again at once after every answer that moved the index: every
    write is read as it comes, none waits for a token."""
    fwd = ForwardProxy(consul.url)
    try:
        fake.no_leader()
        b = bouncer_factory(consul, {"fdb": db_line("fake")},
                            consul_settings={"proxy": f"http://127.0.0.1:{fwd.port}"}).start()
        b.wait_row("fdb", lambda r: r["state"] == "no_leader")
        before = len(fwd.request_lines)
        for i in range(40):
            fake.member("z", 5999, role="replica", state=f"starting{i}")
            time.sleep(0.025)
        index = consul.kv_index(fake.prefix + "members/z")
        b.wait_row("fdb", lambda r: int(r["consul_index"]) >= index)
        asked = len(fwd.request_lines) - before
        # one request per write, give or take writes that came while one was on its way
        assert asked >= 20, fwd.request_lines[before:]
        fake.leader("a")
        b.wait_row("fdb", lambda r: r["state"] == "following")
    finally:
        fwd.close()


def test_replica_entry_never_reads_from_the_primary_in_a_switchover(patroni_cluster, consul,
                                                                     bouncer_factory):
    """A reader polling pg_is_in_recovery() through a replica entry every 10 ms
    across a real switchover never gets the primary (defect 1: the first
    version answered from the new primary hundreds of times)."""
    b = bouncer_factory(consul, {"rro": db_line("raddb", "replica")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("rro", lambda r: r["state"] == "following")
    answers = {"t": 0, "f": 0, "err": 0}
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            try:
                with psycopg.connect(b.conninfo("rro"), autocommit=True,
                                     connect_timeout=5) as c:
                    while not stop.is_set():
                        v = c.execute("select pg_is_in_recovery()").fetchone()[0]
                        answers["t" if v else "f"] += 1
                        time.sleep(0.01)
            except psycopg.Error:
                answers["err"] += 1
                time.sleep(0.01)
    t = threading.Thread(target=poll, daemon=True)
    t.start()
    lab.wait_until(lambda: answers["t"] > 10, 30, 0.05, "reads through the replica entry")
    old = patroni_cluster.leader()
    res = patroni_cluster.switchover()
    new = res["new"]
    # until the new leader's own record says so, and a while after
    lab.wait_until(lambda: patroni_cluster.member_record(new).get("role") in ("master", "primary"),
                   60, 0.1, f"{new}'s record to say primary")
    row = b.wait_row("rro", lambda r: new not in (r["member"] or "").split(",")
                     and r["state"] == "following")
    seen = answers["t"]
    lab.wait_until(lambda: answers["t"] > seen + 50, 30, 0.05, "more reads after the switchover")
    stop.set()
    t.join(10)
    patroni_cluster.wait_healthy(timeout=120)     # the old primary back as a replica
    assert answers["f"] == 0, (answers, old, new, row)


def test_warns_when_no_leader_timeout_outlasts_query_wait_timeout(fake, consul,
                                                                 bouncer_factory):
    """no_leader_timeout >= query_wait_timeout: PgBouncer would end a held
    query (disconnecting its client) before the plugin's error; said once."""
    b = bouncer_factory(consul, {"fdb": db_line("fake")},
                        consul_settings={"no_leader_timeout": "30s"},
                        bouncer_settings={"query_wait_timeout": "20"}).start()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    want = r"no_leader_timeout \(30s\) is not below query_wait_timeout \(20s\)"
    assert len(re.findall(want, b.logfile_text())) == 1
    b.reload()
    b.wait_row("fdb", lambda r: r["state"] == "following")
    assert len(re.findall(want, b.logfile_text())) == 1
    b.consul_settings["no_leader_timeout"] = "10s"
    b.reload()
    assert b.value("fdb", "select 1") == 1
    assert "no_leader_timeout (10s)" not in b.logfile_text()


def test_noloadbalance_replica_left_out(fake, consul, bouncer_factory, patroni_cluster):
    """A replica tagged noloadbalance gets no reads (Patroni's own /replica
    check answers 503 for it); nofailover says nothing about reads."""
    r1, r2 = replica_ports(patroni_cluster)
    for name, port, tags in (("b", r1, {"noloadbalance": True}),
                             ("c", r2, {"nofailover": True})):
        assert consul.kv_put(fake.prefix + f"members/{name}", json.dumps({
            "conn_url": f"postgres://127.0.0.1:{port}/postgres", "state": "running",
            "role": "replica", "tags": tags}))
    b = bouncer_factory(consul, {"fro": db_line("fake", "replica")}).start()
    row = b.wait_row("fro", lambda r: r["state"] == "following")
    assert row["member"] == "c" and int(row["port"]) == r2
    assert b.value("fro", "select inet_server_port()") == r2


def test_promoting_leader_checked_again_on_one_connection(patroni_cluster, consul,
                                                          bouncer_factory):
    """Patroni takes the leader key and then promotes: the fork's first
    connection to the new leader finds it in recovery.  Rather than closing it
    and logging in again every few ms (a new TCP connection and SCRAM proof
    each time), the same connection is checked again until the promotion ends:
    no connection to the new leader is refused, and writes run on it."""
    b = bouncer_factory(consul, {"rw": db_line("raddb")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    b.wait_row("rw", lambda r: r["state"] == "following")
    with b.connect("rw") as c:
        c.execute("create table if not exists promo (v int)")
    w = Writer(b.conninfo("rw"), "insert into promo values (1)").start()
    try:
        lab.wait_until(lambda: w.ok > 5, 30, 0.05, "writes through the fork")
        res = patroni_cluster.switchover()
        new_port = member_port(patroni_cluster, res["new"])
        b.wait_row("rw", lambda r: r["member"] == res["new"] and r["state"] == "following")
        t0 = time.monotonic()
        lab.wait_until(lambda: w.successes_since(t0) > 5, 30, 0.05, "writes on the new leader")
    finally:
        w.stop()
        patroni_cluster.wait_healthy(timeout=120)
    assert b.value("rw", "select inet_server_port()") == new_port
    log = b.logfile_text()
    assert not re.search(rf"server 127\.0\.0\.1 port {new_port} refused", log), \
        re.findall(r".*refused.*", log)
    assert w.errors == [], w.errors


class PortPoller:
    """Reads `select inet_server_port()` through one fork entry every 10 ms
    (reconnecting after an error) and keeps (monotonic time, port or None)."""

    def __init__(self, conninfo: str):
        self.conninfo = conninfo
        self.seen: list[tuple[float, int | None]] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as c:
                    while not self._stop.is_set():
                        port = c.execute("select inet_server_port()").fetchone()[0]
                        self.seen.append((time.monotonic(), port))
                        time.sleep(0.01)
            except psycopg.Error:
                self.seen.append((time.monotonic(), None))
                time.sleep(0.01)

    def start(self) -> "PortPoller":
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join(15)

    def first_since(self, t0: float, port: int) -> float | None:
        return next((t for t, p in list(self.seen) if t >= t0 and p == port), None)

    def ports_since(self, t0: float) -> list[int | None]:
        return [p for t, p in list(self.seen) if t >= t0]


def test_replica_entry_prefers_its_own_site(patroni_cluster, consul, bouncer_factory):
    """patroni_prefer=dc:dc1 on a replica entry: reads go only to the dc1
    replica; with it stopped they move to the dc2 replica (state fallback);
    once it runs (and streams) again they come back to it.  The times are
    printed and recorded, not bounded."""
    cluster = patroni_cluster
    dc1 = [n for n, t in PATRONI_TAGS.items() if t["dc"] == "dc1"]
    if cluster.leader() not in dc1:
        cluster.switchover(candidate=dc1[0])
    cluster.wait_healthy(timeout=120)
    leader = cluster.leader()
    near = next(n for n in dc1 if n != leader)
    far = next(n for n, t in PATRONI_TAGS.items() if t["dc"] == "dc2")
    near_port, far_port = member_port(cluster, near), member_port(cluster, far)
    assert cluster.member_record(near)["tags"] == {"dc": "dc1"}
    b = bouncer_factory(consul, {"near": db_line("raddb", "replica") + " patroni_prefer=dc:dc1",
                                 "ro": db_line("raddb", "replica")},
                        bouncer_settings={"pool_mode": "transaction"}).start()
    row = b.wait_row("near", lambda r: r["state"] == "following")
    assert row["member"] == near and int(row["port"]) == near_port, row
    assert b.wait_row("ro", lambda r: r["state"] == "following")["member"] == \
        ",".join(sorted([near, far]))
    record = lab.KeyRecorder(consul, cluster.member_key(near)).start()
    poll = PortPoller(b.conninfo("near")).start()

    def record_change(t0: float, serving: bool) -> float | None:
        """When near's record first said it serves reads (or no longer did) after t0."""
        for t, v, _ in list(record.events):
            rec = json.loads(v) if v else {}
            ok = rec.get("state") == "running" and \
                rec.get("replication_state", "streaming") == "streaming"
            if t >= t0 and ok == serving:
                return t
        return None
    try:
        t_begin = time.monotonic()
        lab.wait_until(lambda: len(poll.ports_since(t_begin)) >= 50, 30, 0.05,
                       "50 reads through the preferring entry")
        assert set(poll.ports_since(t_begin)) == {near_port}

        t_stop = time.monotonic()
        cluster.stop_member(near)
        t_stopped = time.monotonic()
        moved = lab.wait_until(lambda: poll.first_since(t_stop, far_port), 60, 0.02,
                               f"reads on {far} (dc2) after {near} stopped")
        t_gone = lab.wait_until(lambda: record_change(t_stop, False), 30, 0.02,
                                f"{near}'s record to say it stopped")
        row = b.wait_row("near", lambda r: r["state"] == "fallback")
        assert row["member"] == far and int(row["port"]) == far_port, row
        t_fallback = time.monotonic()
        lab.wait_until(lambda: len(poll.ports_since(t_fallback)) >= 20, 30, 0.05,
                       "reads in fallback")
        assert set(poll.ports_since(t_fallback)) == {far_port}
        lab.record_timing("prefer_stop_to_dc2_reads", moved - t_stop)
        lab.record_timing("prefer_record_stopped_to_dc2_reads", moved - t_gone)
        print(f"\n{near} stopped (SIGTERM to Patroni; it returned after "
              f"{t_stopped - t_stop:.3f} s): its record changed {t_gone - t_stop:.3f} s "
              f"after the stop began; first read on {far} {moved - t_stop:.3f} s after "
              f"the stop began, {moved - t_gone:.3f} s after the record changed")

        t_start = time.monotonic()
        cluster.start_member(near)
        t_streaming = lab.wait_until(lambda: record_change(t_start, True), 120, 0.02,
                                     f"{near}'s record to say running/streaming")
        back = lab.wait_until(lambda: poll.first_since(t_start, near_port), 60, 0.02,
                              f"reads back on {near} (dc1)")
        row = b.wait_row("near", lambda r: r["state"] == "following")
        assert row["member"] == near and int(row["port"]) == near_port, row
        t_back = time.monotonic()
        lab.wait_until(lambda: len(poll.ports_since(t_back)) >= 20, 30, 0.05,
                       "reads after the return")
        assert set(poll.ports_since(t_back)) == {near_port}
        lab.record_timing("prefer_start_to_dc1_reads", back - t_start)
        lab.record_timing("prefer_streaming_to_dc1_reads", back - t_streaming)
        print(f"{near} started: record said running/streaming {t_streaming - t_start:.3f} s "
              f"later; first read back on it {back - t_start:.3f} s after the start, "
              f"{back - t_streaming:.3f} s after the record said so")
        errors = poll.ports_since(t_begin).count(None)
        print(f"reads: {len(poll.seen)}, failed: {errors}")
    finally:
        poll.stop()
        record.stop()
        cluster.start_member(near)
        cluster.wait_healthy(timeout=120)
    # never the leader, whatever the site
    assert member_port(cluster, leader) not in set(p for _, p in poll.seen)


def test_prefer_follows_reload(patroni_cluster, consul, bouncer_factory):
    """RELOAD changing or dropping an entry's patroni_prefer moves it to the
    new set at once; a preference no member matches says fallback."""
    cluster = patroni_cluster
    leader = cluster.leader()
    site = {n: t["dc"] for n, t in PATRONI_TAGS.items()}
    replicas = sorted(n for n in cluster.names if n != leader)
    one = replicas[0]
    line = db_line("raddb", "replica")
    b = bouncer_factory(consul, {"pro": f"{line} patroni_prefer=dc:{site[one]}"}).start()
    row = b.wait_row("pro", lambda r: r["state"] == "following")
    want = sorted(n for n in replicas if site[n] == site[one])
    assert row["member"] == ",".join(want), row
    b.databases["pro"] = f"{line} patroni_prefer=dc:nowhere"
    b.reload()
    row = b.wait_row("pro", lambda r: r["state"] == "fallback")
    assert row["member"] == ",".join(replicas) and row["last_error"] is None, row
    assert "preferring dc:nowhere: no member matches" in b.log()
    b.databases["pro"] = line
    b.reload()
    row = b.wait_row("pro", lambda r: r["state"] == "following")
    assert row["member"] == ",".join(replicas), row


@pytest.mark.parametrize("line, error", [
    (db_line("raddb") + " patroni_prefer=dc:dc1",
     'database "bad": patroni_prefer needs patroni_role = replica or any'),
    (db_line("raddb", "replica") + " patroni_prefer=dc",
     'database bad: patroni_prefer: invalid value "dc" for patroni_prefer: '
     'expected key:value[,key:value...]: "dc" is not key:value'),
    (db_line("raddb", "any") + " patroni_prefer=dc:dc1,dc:dc2",
     'tag "dc" listed twice'),
])
def test_bad_prefer_refused_at_start(consul, bouncer_factory, line, error):
    b = bouncer_factory(consul, {"bad": line}).start(expect_fail=True)
    assert b.proc.returncode != 0
    assert error in b.log(), b.log()[-2000:]


def test_member_tags_left_out_are_shown(fake, consul, bouncer_factory, patroni_cluster):
    """A member whose tags cannot be read (a list value) still serves, but
    matches no preference; the preferring entry's last_error and one log line
    say why, a plain replica entry is not bothered."""
    r1, r2 = replica_ports(patroni_cluster)
    for name, port, tags in (("b", r1, {"dc": "dc1", "racks": [1, 2]}),
                             ("c", r2, {"dc": "dc2"})):
        assert consul.kv_put(fake.prefix + f"members/{name}", json.dumps({
            "conn_url": f"postgres://127.0.0.1:{port}/postgres", "state": "running",
            "role": "replica", "tags": tags}))
    b = bouncer_factory(consul, {"fpre": db_line("fake", "replica") + " patroni_prefer=dc:dc1",
                                 "fro": db_line("fake", "replica")}).start()
    row = b.wait_row("fpre", lambda r: r["state"] == "fallback")
    assert row["member"] == "b,c", row
    why = 'tags of member "b" left out: tag "racks" is not a string, number or boolean'
    assert row["last_error"] == why
    assert b.wait_row("fro", lambda r: r["state"] == "following")["last_error"] is None
    assert b.logfile_text().count(why + "; that member matches no patroni_prefer") == 1
