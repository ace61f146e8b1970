"""consul_redirect.so when the primary is cut off from Consul (split brain):
one Consul 1.8.7 dev agent, a real 3-member Patroni cluster whose members
each reach the agent through a TCP proxy of their own
(proxy_traps.PartitionProxy); a partition resets the leader's connections to
Consul and refuses new ones, while the fork (straight on the agent) and
the clients still reach the leader's PostgreSQL.

    /usr/bin/python3 -m pytest -v tests/integration/test_consul_partition.py   (as root)

Two writers run in each test, both recording every acknowledged write (id,
ack time, the acknowledging server's port): one through the fork, one
direct to the leader's PostgreSQL (it follows nothing).  With
synchronous_mode no write acknowledged through the fork is lost; without
it the fork takes no acknowledgement from the old primary once the new
leader key is there, and the lost writes of both writers are reported; a
partition healed within retry_timeout changes nothing.

Timing: ttl 10, loop_wait 2, retry_timeout 2; the agent's session_ttl_min is
1 s so that Patroni's session TTL (ttl / 2, which Consul doubles) is the 5 s
it asks for, not Consul's default floor of 10 s.  Patroni 3.0.2 cut off in
synchronous mode spends retry_timeout on three DCS calls before it demotes
(the sync check's get_cluster and refresh_session fail without demoting, the
next loop's get_cluster demotes): with retry_timeout 3 that came 8.5-9 s
after the cut, at or after the key's expiry, and then the failover may be
declined (cut_off_leader); with 2 it came 5.9-6.6 s after the cut, 3.0-3.6 s
before the new key (4 runs).
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

import lab
from fork import PGBOUNCER, PLUGIN, Bouncer, RecordingWriter, db_line, require_built
from pooler_watch import States
from proxy_traps import PartitionProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 2, 2
MEMBERS = ("n1", "n2", "n3")
TABLE = "partw"
# what Patroni logs at the end of each HA cycle it ran as the leader
LEADER_CYCLE = "the leader with the lock"


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    require_built(PGBOUNCER, PLUGIN)


def _keep(path, request) -> None:
    if os.environ.get("PGBC_KEEP") or request.session.testsfailed:
        lab.log(f"keeping {path} (logs)")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def consul(consul_bin, request):
    if os.geteuid() != 0:
        pytest.skip("the integration lab must run as root (it starts Patroni as postgres)")
    wd = lab.make_workdir("pgbc-lab-part-consul-")
    c = lab.Consul(wd, binary=consul_bin, extra_hcl='session_ttl_min = "1s"\n')
    try:
        c.start()
        yield c
    finally:
        c.stop()
        _keep(wd, request)


@pytest.fixture(scope="module")
def proxies(consul):
    ps = {n: PartitionProxy(consul.http_port) for n in MEMBERS}
    yield ps
    for p in ps.values():
        p.close()


@pytest.fixture(scope="module")
def cluster(consul, proxies, request):
    wd = lab.make_workdir("pgbc-lab-partition-")
    c = lab.PatroniCluster(wd, consul, names=MEMBERS, ttl=TTL, loop_wait=LOOP_WAIT,
                           retry_timeout=RETRY_TIMEOUT,
                           member_consul={n: p.url for n, p in proxies.items()})
    try:
        c.start()
        lab.record_timing("partition_cluster_start", c.start_time)
        with c.connect(autocommit=True) as conn:
            conn.execute(f"create table {TABLE} (src text, id bigint, "
                         "t timestamptz default clock_timestamp(), "
                         "port int default inet_server_port(), primary key (src, id))")
        yield c
    finally:
        c.stop()
        _keep(wd, request)


@pytest.fixture
def bouncer(consul, cluster):
    """The fork on the agent itself (never through a member's proxy), raddb
    following the cluster in transaction pooling."""
    b = Bouncer(lab.make_workdir("pgbc-bouncer-"), consul, {"raddb": db_line("raddb")},
                bouncer_settings={"pool_mode": "transaction"})
    b.start()
    leader = cluster.leader()
    b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == leader,
               what=f"raddb following {leader}")
    yield b
    b.stop()
    lab.log(f"pgbouncer log: {b.logfile}")


def writers(name: str, b: Bouncer, cluster: lab.PatroniCluster, n: int = 50):
    """(through the fork, direct to the leader), both with n writes acknowledged."""
    fork_w = RecordingWriter(b.conninfo("raddb"), TABLE, f"{name}-fork").start()
    direct_w = RecordingWriter(cluster.dsn(cluster.leader(), connect_timeout=2), TABLE,
                               f"{name}-direct").start()
    lab.wait_until(lambda: (fork_w.ok >= n and direct_w.ok >= n) or fork_w.errors
                   or direct_w.errors, 30, 0.02, f"{n} writes by each writer")
    assert fork_w.errors == [] and direct_w.errors == [], (fork_w.errors, direct_w.errors)
    return fork_w, direct_w


def set_synchronous_mode(cluster: lab.PatroniCluster, on: bool) -> None:
    """PATCH /config synchronous_mode, then wait until the leader's PostgreSQL
    has (on) or has no (off) synchronous standby."""
    leader = cluster.leader()
    st, body = cluster.rest(leader, "/config", "PATCH", {"synchronous_mode": on}, timeout=10)
    assert st == 200, (st, body)

    def applied() -> bool:
        with cluster.connect(leader, autocommit=True) as c:
            sync = c.execute("select count(*) from pg_stat_replication "
                             "where sync_state = 'sync'").fetchone()[0]
            names = c.execute("show synchronous_standby_names").fetchone()[0]
        return (sync >= 1 and names != "") if on else names == ""
    lab.wait_until(applied, 60, 0.2, f"synchronous_mode {on} applied on {leader}")


def report_writer(name: str, w: RecordingWriter, since: float) -> None:
    lab.record_timing(f"{name}_writes", f"{w.successes_since(since)}")
    lab.record_timing(f"{name}_client_errors", f"{len(w.errors)} {w.errors[:2]}")
    lab.record_timing(f"{name}_longest_write_gap", w.longest_gap(since))


def cut_off_leader(name: str, cluster: lab.PatroniCluster, proxies: dict[str, PartitionProxy],
                   b: Bouncer) -> dict:
    """Partition the leader from Consul with both writers running; wait for
    a new, writable leader and the fork following it with writes on it;
    heal; wait for the old leader back as a streaming replica.  Returns what
    the writers saw, the leader key's times and the lost writes of each.

    Patroni may refuse the failover: when the old leader demotes itself no
    sooner than its key expires, the replicas stop streaming from it before
    its last WAL (its shutdown checkpoint) reached them, and then each of
    them, asking the old leader's REST API (which they still reach), finds
    it ahead and declines to promote ("Wal position of <old> is ahead of my
    wal position").  Then nobody leads until the heal, and the old leader
    takes the key again: out["failover"] is False."""
    old = cluster.leader()
    old_port = cluster.member(old).port
    others = [n for n in cluster.names if n != old]
    log_at_cut = {n: cluster.member(n).log_path.stat().st_size for n in others}

    def declined_by_all() -> bool:
        for n in others:
            with open(cluster.member(n).log_path, "rb") as f:
                f.seek(log_at_cut[n])
                if f"Wal position of {old} is ahead" not in f.read().decode(errors="replace"):
                    return False
        return True

    def failover_or_declined() -> str | None:
        leader = cluster.leader()
        if leader and leader != old and cluster.is_writable(leader):
            return leader
        return "" if declined_by_all() else None
    fork_w, direct_w = writers(name, b, cluster)
    states = States(b)
    keys = lab.KeyRecorder(cluster.consul, cluster.leader_key).start()
    t_cut = time.monotonic()
    try:
        proxies[old].partition()
        got = None
        deadline = time.monotonic() + 3 * TTL + 30
        while got is None:
            got = failover_or_declined()
            if got is None:
                assert time.monotonic() < deadline, \
                    f"no leader other than {old} and no member declining:\n{cluster.log_tails()}"
                time.sleep(0.1)
        failover = got != ""
        if not failover:
            lab.log(f"{name}: every member declined to promote while {old} was cut off: "
                    f"healing with no leader")
            t_heal = time.monotonic()
            proxies[old].heal()
            got = cluster.wait_for_leader(timeout=3 * TTL + 30)
        new = got
        new_port = cluster.member(new).port
        b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == new,
                   timeout=30, what=f"raddb following {new}")
        t_follow_seen = time.monotonic()
        lab.wait_until(lambda: sum(1 for a in fork_w.acked if a[2] == new_port and
                                   a[1] >= t_follow_seen) >= 50,
                       60, 0.05, f"50 writes through the fork on {new}")
        if failover:
            t_heal = time.monotonic()
            proxies[old].heal()
        cluster.wait_healthy(timeout=120)
        assert cluster.leader() == new
        t_rejoined = time.monotonic()
    finally:
        proxies[old].heal()
        fork_w.stop()
        direct_w.stop()
        states.stop()
        events = keys.stop()
    t_gone = next(t for t, v, _ in events if v is None)
    t_new = next(t for t, v, _ in events if v == new and t > t_gone)
    with cluster.connect(new, autocommit=True) as c:
        lost = {"fork": fork_w.lost(c), "direct": direct_w.lost(c)}
    old_rewound = "pg_rewind" in cluster.log_tail(old, 400)

    def late(w: RecordingWriter) -> list[tuple[int, float, int]]:
        return [a for a in w.acked if a[2] == old_port and a[1] >= t_new]

    def last_old_ack(w: RecordingWriter) -> float | None:
        ts = [t for _, t, port in w.acked if port == old_port]
        return round(max(ts) - t_new, 3) if ts else None
    out = {"old": old, "new": new, "failover": failover, "fork": fork_w, "direct": direct_w,
           "lost": lost, "late": {"fork": late(fork_w), "direct": late(direct_w)}}
    lab.record_timing(f"{name}_outcome", "failover" if failover else
                      "failover declined by every member; the old leader led again")
    lab.log(f"{name}: {old} cut off -> {new}; key gone +{t_gone - t_cut:.2f} s, "
            f"new key +{t_new - t_cut:.2f} s, healed +{t_heal - t_cut:.2f} s, "
            f"rejoined +{t_rejoined - t_cut:.2f} s (pg_rewind in {old}'s log: {old_rewound})")
    lab.record_timing(f"{name}_new_leader_key_after_cut", t_new - t_cut)
    lab.record_timing(f"{name}_rejoined_after_heal", t_rejoined - t_heal)
    for who in ("fork", "direct"):
        w = out[who]
        report_writer(f"{name}_{who}", w, t_cut)
        lab.record_timing(f"{name}_{who}_lost", f"{len(lost[who])} of {len(w.acked)} "
                          f"acknowledged {lost[who][:5]}")
        lab.record_timing(f"{name}_{who}_acked_by_old_after_new_key",
                          f"{len(out['late'][who])}; last ack by {old} at "
                          f"{last_old_ack(w)} s from the new key")
    lab.record_timing(f"{name}_pooler_states", " -> ".join(states.names()))
    # SHOW CONSUL is sampled every 20 ms: this is the redirect's delay to 20 ms
    t_follow = next(t for t, state, member, _ in states.seen
                    if state == "following" and member == new and t > t_gone)
    lab.record_timing(f"{name}_fork_following_new_after_new_key", t_follow - t_new)
    acks_old = [t for w in (fork_w, direct_w) for _, t, port in w.acked if port == old_port]
    lab.record_timing(f"{name}_old_primary_last_ack_after_cut", max(acks_old) - t_cut)
    return out


def test_sync_mode_partition_loses_no_acknowledged_write(cluster, proxies, bouncer):
    """synchronous_mode on: the leader cut off from Consul demotes itself,
    its synchronous standby takes the key, the old leader rejoins once
    healed, and every write the fork acknowledged is on the new primary."""
    set_synchronous_mode(cluster, True)
    try:
        res = cut_off_leader("partition_sync", cluster, proxies, bouncer)
    finally:
        # with no leader to ask, let the error that left none be the one shown
        if cluster.leader():
            set_synchronous_mode(cluster, False)
    assert res["lost"]["fork"] == [], res["lost"]["fork"][:20]


def test_async_partition_fork_leaves_old_primary_before_new_key(cluster, proxies, bouncer):
    """synchronous_mode off: no write through the fork is acknowledged by
    the old primary once the new leader key exists; the writes lost by the
    fork's writer and by the direct one are reported side by side."""
    res = cut_off_leader("partition_async", cluster, proxies, bouncer)
    assert res["failover"], f"Patroni kept {res['old']} leading (every member declined to " \
        "promote): nothing to check of the fork against a new leader"
    late = res["late"]["fork"]
    assert late == [], f"{len(late)} writes acknowledged by {res['old']} after the new key: " \
        f"{late[:10]}"


def test_partition_healed_within_retry_timeout_changes_nothing(cluster, proxies, bouncer):
    """The leader cut off from Consul and healed as soon as Patroni's first
    new connection is refused (well within retry_timeout, so before the ttl
    runs out): Patroni keeps the lock, the leader key never changes, the
    fork keeps following the same member and no client sees an error."""
    b = bouncer
    leader = cluster.leader()
    m = cluster.member(leader)
    fork_w, direct_w = writers("partition_healed", b, cluster)
    states = States(b)
    keys = lab.KeyRecorder(cluster.consul, cluster.leader_key).start()
    p = proxies[leader]
    t_cut = time.monotonic()
    log_at_cut = m.log_path.stat().st_size
    try:
        p.partition()
        refused = p.refused
        assert p.wait(lambda q: q.refused > refused, 3 * LOOP_WAIT + RETRY_TIMEOUT + 10), p
        t_heal = time.monotonic()
        p.heal()
        log_at_heal = m.log_path.stat().st_size

        def cycles_after_heal() -> int:
            with open(m.log_path, "rb") as f:
                f.seek(log_at_heal)
                return f.read().decode(errors="replace").count(LEADER_CYCLE)
        # two HA cycles as the leader after the heal: the lock was renewed
        lab.wait_until(lambda: cycles_after_heal() >= 2, 4 * LOOP_WAIT + RETRY_TIMEOUT + 10,
                       0.1, f"two HA cycles of {leader} as the leader after the heal")
        n = fork_w.ok
        lab.wait_until(lambda: fork_w.ok >= n + 50 or fork_w.errors, 30, 0.02,
                       "writes through the fork after the heal")
    finally:
        p.heal()
        fork_w.stop()
        direct_w.stop()
        states.stop()
        events = keys.stop()
    with open(m.log_path, "rb") as f:
        f.seek(log_at_cut)
        patroni_said = f.read().decode(errors="replace")
    lab.log(f"partition_healed: healed +{t_heal - t_cut:.2f} s after the cut; {p}")
    lab.record_timing("partition_healed_cut_to_heal", t_heal - t_cut)
    report_writer("partition_healed_fork", fork_w, t_cut)
    report_writer("partition_healed_direct", direct_w, t_cut)
    lab.record_timing("partition_healed_pooler_states", " -> ".join(states.names()))
    assert [v for _, v, _ in events] == [leader], events
    assert "demot" not in patroni_said, patroni_said[-3000:]
    assert {(s, mem) for _, s, mem, _ in states.seen} == {("following", leader)}, states.seen
    assert fork_w.errors == [], fork_w.errors[:5]
    assert direct_w.errors == [], direct_w.errors[:5]
    port = m.port
    assert {a[2] for a in fork_w.acked} == {port}
    with cluster.connect(leader, autocommit=True) as c:
        assert fork_w.lost(c) == [] and direct_w.lost(c) == []
        assert not c.execute("select pg_is_in_recovery()").fetchone()[0]
