"""consul_redirect.so against a real Consul datacenter and the faults it
brings: three Consul 1.8.7 server agents (Raft) and two client agents on
loopback (lab.ConsulCluster), Patroni talking to one client agent and the
fork to the other, as in production; a real 3-member Patroni cluster.

    /usr/bin/python3 -m pytest -v tests/integration/test_consul_cluster.py   (as root)

Faults: the fork's agent answering 429 and 503 (what Consul 1.15+ rate
limiting answers, here through proxy_traps.FaultProxy in front of the fork's
client agent), the Raft leader server killed with -9 during a Patroni
switchover, and the fork's client agent stopped for longer than Patroni's
ttl.  In each a writer runs through the fork (transaction pooling) and the
test prints what it saw (errors, longest gap) and the pooler's states.

The lab is module-scoped and every test leaves it healthy.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg
import pytest

import lab
from fork import PGBOUNCER, PLUGIN, Bouncer, db_line, require_built
from pooler_watch import WRITES, States, create_writes_table, log_lines, report, start_writer
from proxy_traps import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

# plugin/scope_query.c: the first retry after a failed request waits this
# long and no retry waits less (lib/backoff.c), at most ERROR_CAP; a
# Retry-After lengthens a wait up to the cap (consul_redirect(5))
ERROR_BASE = 0.5
ERROR_CAP = 30.0
# what the loop's cached clock may be behind the proxy's when a timer is armed
CLOCK_SLACK = 0.02


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    require_built(PGBOUNCER, PLUGIN)


@pytest.fixture(scope="module")
def dc(consul_dc):
    return consul_dc


@pytest.fixture(scope="module")
def cluster(dc_patroni_cluster):
    create_writes_table(dc_patroni_cluster)
    return dc_patroni_cluster


@pytest.fixture
def bouncer(dc, cluster):
    """make(url=None): the fork on the fork's client agent (or `url`), with
    raddb following the cluster in transaction pooling, started and
    following the current leader."""
    made: list[Bouncer] = []

    def make(url: str | None = None) -> Bouncer:
        settings = {"url": url} if url else {}
        b = Bouncer(lab.make_workdir("pgbc-bouncer-"), dc.client("fork"),
                    {"raddb": db_line("raddb")}, consul_settings=settings,
                    bouncer_settings={"pool_mode": "transaction"})
        made.append(b)
        b.start()
        leader = cluster.leader()
        b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == leader,
                   what=f"raddb following {leader}")
        return b
    yield make
    for b in made:
        b.stop()
        lab.log(f"pgbouncer log: {b.logfile}")


@pytest.fixture
def proxy(dc):
    p = FaultProxy(dc.client("fork").url)
    yield p
    p.close()


def assert_backed_off(proxy: FaultProxy, healed: float, least: float) -> int:
    """Every faulted request came at least `least` s after the answer to the
    one before (the backoff's floor: timers never fire early), so over the
    fault window there were at most 1 + window / least of them."""
    faulted = proxy.faulted
    assert faulted, "the fault answered nothing"
    gaps = [b[0] - a[1] for a, b in zip(faulted, faulted[1:])]
    assert all(g >= least - CLOCK_SLACK for g in gaps), \
        f"retries closer than {least} s: {[round(g, 3) for g in gaps]}"
    window = healed - faulted[0][0]
    bound = 1 + int(window / least)
    assert len(faulted) <= bound, f"{len(faulted)} requests in {window:.1f} s (bound {bound})"
    lab.log(f"fault: {len(faulted)} requests in {window:.2f} s (bound {bound} from a "
            f"{least} s floor), gaps {[round(g, 2) for g in gaps]}")
    return len(faulted)


# --------------------------------------------------------------------------- 429 / 503

def test_rate_limited_429_backs_off_and_keeps_leader(cluster, bouncer, proxy):
    """Consul answering 429 while nothing changes: the fork backs off from
    0.5 s, keeps the leader (writes go on, 0 errors), logs the 429 once and
    the recovery once, and follows again when the agent answers."""
    leader = cluster.leader()
    b = bouncer(proxy.url)
    w = start_writer(b)
    states = States(b)
    t0 = time.monotonic()
    try:
        proxy.mode = "429"
        # the blocking query in flight returns at Patroni's next member
        # write; from then on every request meets the fault
        row = b.wait_row("raddb", lambda r: r["state"] == "consul_unreachable", timeout=60)
        assert row["member"] == leader and "429" in (row["last_error"] or ""), row
        lab.record_timing("fault_429_last_error", row["last_error"])
        assert proxy.wait_faulted(4, 60), proxy
        during = w.ok
        lab.wait_until(lambda: w.ok >= during + 20, 30, 0.02, "writes during the fault")
        healed = time.monotonic()
        proxy.mode = "pass"
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and r["last_error"] is None,
                         timeout=ERROR_CAP + 15, what="raddb following again")
        assert row["member"] == leader
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 20, 30, 0.02, "writes after the fault")
    finally:
        w.stop()
        states.stop()
    report("fault_429", w, states, t0)
    lab.record_timing("fault_429_requests", f"{assert_backed_off(proxy, healed, ERROR_BASE)}")
    assert w.errors == []
    assert len(log_lines(b, r"consul unreachable: .*http status 429")) == 1, b.logfile_text()
    assert len(log_lines(b, r"consul answers again")) == 1, b.logfile_text()
    assert len(log_lines(b, r"consul unreachable")) == 1


def test_rate_limited_503_retry_after_across_switchover(cluster, bouncer, proxy):
    """Consul answering 503 with Retry-After: 2 while Patroni switches
    over: no retry comes sooner than 2 s, the fork keeps the old leader (it
    cannot see the new one) and follows the new leader once the agent
    answers again, with one log line for each change of state."""
    b = bouncer(proxy.url)
    w = start_writer(b)
    states = States(b)
    t0 = time.monotonic()
    proxy.retry_after = "2"
    try:
        proxy.mode = "503"
        row = b.wait_row("raddb", lambda r: r["state"] == "consul_unreachable", timeout=60)
        assert "503" in (row["last_error"] or ""), row
        lab.record_timing("fault_503_last_error", row["last_error"])
        res = cluster.switchover()
        # the fork cannot know: it still names the old leader
        assert b.row("raddb")["member"] == res["old"]
        assert proxy.wait_faulted(len(proxy.faulted) + 2, 60), proxy
        assert b.row("raddb")["state"] == "consul_unreachable"
        healed = time.monotonic()
        proxy.mode = "pass"
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == res["new"],
                         timeout=ERROR_CAP + 15, what=f"raddb following {res['new']}")
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 20, 60, 0.02, "writes on the new leader")
        assert b.value("raddb", "select inet_server_port()") == cluster.member(res["new"]).port
    finally:
        w.stop()
        states.stop()
        cluster.wait_healthy(timeout=90)
    report("fault_503_switchover", w, states, t0)
    lab.record_timing("fault_503_requests", f"{assert_backed_off(proxy, healed, 2.0)}")
    lab.record_timing("fault_503_heal_to_following",
                      states.seen[-1][0] - healed if states.seen else -1.0)
    assert len(log_lines(b, r"consul unreachable: .*http status 503")) == 1, b.logfile_text()
    assert len(log_lines(b, r"consul answers again")) == 1, b.logfile_text()
    # the writes acknowledged after the fault ended went to the new primary
    with cluster.connect(res["new"], autocommit=True) as c:
        assert c.execute(f"select count(*) from {WRITES} where port = %s",
                         (cluster.member(res["new"]).port,)).fetchone()[0] >= 20


# --------------------------------------------------------------------------- the Consul cluster

def test_raft_leader_killed_during_switchover(dc, cluster, bouncer):
    """kill -9 of the Consul leader server right after Patroni wrote the
    failover key: Raft elects another leader while Patroni moves the leader
    key, and the fork follows the switchover with 0 client errors."""
    b = bouncer()
    w = start_writer(b, 100)
    states = States(b)
    old = cluster.leader()
    patroni_agent = dc.client("patroni")
    result: dict = {}

    def switch():
        try:
            result.update(cluster.switchover())
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)
    t0 = time.monotonic()
    th = threading.Thread(target=switch)
    killed = None
    try:
        th.start()

        def announced():
            kv = patroni_agent.kv_get(cluster.prefix + "failover")
            return kv is not None and (kv.json() or {}).get("leader") == old
        lab.wait_until(announced, 30, 0.01, "the failover key naming the old leader")
        killed = dc.leader()
        t_kill = time.monotonic()
        killed.kill9()
        new_raft = dc.wait_leader(not_node=killed.node, timeout=60)
        lab.record_timing("dc_raft_election", time.monotonic() - t_kill)
        th.join(120)
        if "error" in result:
            # Patroni's REST API polls the DCS after writing the failover key
            # and answers 503 "Switchover failed" when it reads that key gone
            # while the leader key is unlocked or still names the old leader:
            # with a Raft election in between, Patroni itself may give the
            # switchover up (seen on CI), or report it failed and complete it
            # a moment later.  That is Patroni's outcome, not the fork's: let
            # the cluster settle, and if the old leader kept the key, switch
            # over again now, with Raft's new leader and one server still down.
            lab.record_timing("dc_raft_kill_switchover_patroni", result["error"])
            cluster.wait_healthy(timeout=120)
            if cluster.leader() == old:
                result.clear()
                result.update(cluster.switchover())
            else:
                result["new"] = cluster.wait_for_leader(not_in=[old])
        assert "error" not in result, result
        new = result["new"]
        b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == new,
                   timeout=60, what=f"raddb following {new}")
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 100 or len(w.errors) > 0, 60, 0.02,
                       "writes after the switchover")
        assert b.value("raddb", "select inet_server_port()") == cluster.member(new).port
    finally:
        w.stop()
        states.stop()
        th.join(120)
        if killed is not None:
            killed.start(60)
            dc.wait_leader(timeout=60)
        cluster.wait_healthy(timeout=120)
    lab.log(f"raft leader {killed.node} killed; new raft leader {new_raft.node}; "
            f"switchover {old} -> {new}")
    report("dc_raft_kill_switchover", w, states, t0)
    assert w.errors == []


def test_fork_agent_stopped_longer_than_ttl(dc, cluster, bouncer):
    """The fork's local client agent stops for longer than Patroni's ttl:
    the fork keeps the last known leader (0 client errors), says
    consul_unreachable with a last_error, and once the agent is back it
    follows again, through a switchover too."""
    b = bouncer()
    w = start_writer(b, 100)
    states = States(b)
    agent = dc.client("fork")
    leader = cluster.leader()
    t0 = time.monotonic()
    try:
        agent.stop()
        row = b.wait_row("raddb", lambda r: r["state"] == "consul_unreachable", timeout=60)
        assert row["member"] == leader and row["last_error"], row
        lab.record_timing("dc_agent_outage_last_error", row["last_error"])
        down = time.monotonic()
        # the outage lasts ttl + loop_wait; writes must go on all along
        while time.monotonic() - down < cluster.ttl + cluster.loop_wait:
            n = w.ok
            lab.wait_until(lambda: w.ok > n or w.errors, 10, 0.02, "writes during the outage")
            assert w.errors == [], w.errors
            assert b.row("raddb")["state"] == "consul_unreachable"
        lab.record_timing("dc_agent_outage", time.monotonic() - down)
        agent.start(60)
        back = time.monotonic()
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and r["last_error"] is None,
                         timeout=ERROR_CAP + 15, what="raddb following again")
        lab.record_timing("dc_agent_back_to_following", time.monotonic() - back)
        assert row["member"] == leader
        assert len(log_lines(b, r"consul unreachable")) == 1, b.logfile_text()
        assert len(log_lines(b, r"consul answers again")) == 1, b.logfile_text()
        res = cluster.switchover()
        b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == res["new"],
                   timeout=30, what=f"raddb following {res['new']}")
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 100 or w.errors, 60, 0.02, "writes after the switchover")
        assert b.value("raddb", "select inet_server_port()") == cluster.member(res["new"]).port
    finally:
        w.stop()
        states.stop()
        if agent.proc is None:
            agent.start(60)
        cluster.wait_healthy(timeout=120)
    report("dc_fork_agent_outage", w, states, t0)
    assert w.errors == []


# --------------------------------------------------------------------------- held queries

def test_held_queries_retry_every_two_seconds(dc, cluster, proxy):
    """While clients wait on an entry the scope holds (here: no leader key),
    a failing agent is retried at least every 2 s instead of backing off
    towards 30 s, so the held queries run soon after the agent answers again
    (the backoff alone left them held up to 9 s after a Raft election)."""
    agent = dc.client("fork")
    leader = cluster.leader()
    port = cluster.member(leader).port
    prefix = "service/heldscope"
    patroni = lab.patroni_install()
    agent.kv_put(f"{prefix}/members/x", json.dumps(
        {"conn_url": f"postgres://127.0.0.1:{port}/postgres", "api_url": "http://127.0.0.1:1/patroni",
         "state": "running", "role": patroni.primary_role, "version": patroni.version}))
    b = Bouncer(lab.make_workdir("pgbc-bouncer-"), agent, {"held": db_line("heldscope")},
                consul_settings={"url": proxy.url, "no_leader_timeout": "120s"},
                bouncer_settings={"pool_mode": "transaction"}).start()
    result: list = []

    def query():
        # a first login to a held entry waits too (for a server's parameters)
        try:
            with psycopg.connect(b.conninfo("held").replace("connect_timeout=10",
                                                            "connect_timeout=90"),
                                 autocommit=True) as c:
                result.append(c.execute("select inet_server_port()").fetchone()[0])
        except Exception as e:  # noqa: BLE001 - the assertion below shows it
            result.append(repr(e))
    try:
        b.wait_row("held", lambda r: r["state"] == "no_leader", what="held in no_leader")
        t = threading.Thread(target=query, daemon=True)
        t.start()
        b.wait_waiting("held", 1)
        proxy.mode = "500"
        # the blocking query in flight returns at the next write under the scope
        agent.kv_put(f"{prefix}/members/y", json.dumps({"state": "stopped"}))
        assert proxy.wait_faulted(7, 60), proxy
        faulted = list(proxy.faulted)
        gaps = [nxt[0] - cur[1] for cur, nxt in zip(faulted, faulted[1:])]
        lab.log(f"held-query retries: gaps {[round(g, 2) for g in gaps]}")
        assert all(ERROR_BASE - CLOCK_SLACK <= g <= 2.0 + 0.3 for g in gaps), gaps
        assert b.waiting("held") == 1
        proxy.mode = "pass"
        sid = agent.api("PUT", "/v1/session/create", {"Name": "heldscope-x", "TTL": "300s"})["ID"]
        assert agent.kv_put(f"{prefix}/leader", "x", acquire=sid)
        t.join(30)
        assert result == [port], (result, b.row("held"), b.logfile_text()[-3000:])
        assert b.row("held")["state"] == "following"
    finally:
        b.stop()
        agent.kv_delete(prefix, recurse=True)
