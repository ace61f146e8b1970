"""consul_redirect.so reading Patroni's keys in another Consul datacenter
through its local agent (issue 14, point 3): Consul 1.8.7 datacenters
`global`, `dc1` and `dc2` on loopback, WAN-joined (lab.ConsulFederation),
a real 3-member Patroni cluster whose DCS is `global`, and the fork on a
client agent of dc1 with `[consul] datacenter = global`, so that every
request it makes is forwarded by dc1's server to global's over the WAN.

    /usr/bin/python3 -m pytest -v tests/integration/test_consul_datacenters.py   (as root)

The Patroni members are "in" dc1 (n1, n2) and dc2 (n3): tagged so, each
with a client agent in its site where pgbouncer-helper registers it
(Patroni's own register_service is off), prepared queries in both sites.

The tests: the helper's registration per site and its own `datacenter =`
(userlist-sync reading global through dc1's agent); the fork following the
cluster across a switchover under a writer; the same fork without
`datacenter =` (dc1 has no such keys); the WAN link from dc1 to global
broken and healed (lab.ConsulFederation's wan_relay); a datacenter Consul
does not know (500 "No path to datacenter"), set by a RELOAD; and names
with bad characters refused at start and at RELOAD.

The lab is module-scoped and every test leaves it healthy.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import lab
from fork import PGBOUNCER, PLUGIN, ROOT, Bouncer, db_line
from pooler_watch import WRITES, States, log_lines, report, start_writer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

HELPER = os.environ.get("PGBC_HELPER", str(ROOT / "helper/pgbouncer-helper"))
# the longest wait between two retries of a failing scope (plugin/scope_query.c)
ERROR_CAP = 30.0


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    for path in (PGBOUNCER, PLUGIN):
        if not os.path.exists(path):
            pytest.fail(f"{path} not built: run make (./test.sh builds it)")


@pytest.fixture(scope="module")
def fed(consul_federation):
    return consul_federation


@pytest.fixture(scope="module")
def cluster(global_patroni_cluster):
    with global_patroni_cluster.connect(autocommit=True) as c:
        c.execute(f"create table if not exists {WRITES} (id bigserial primary key, "
                  "t timestamptz default clock_timestamp(), port int default inet_server_port())")
    return global_patroni_cluster


@pytest.fixture
def bouncer(fed, cluster):
    """make(settings=None, follow=True): the fork on dc1's client agent with
    raddb following the cluster in transaction pooling, `[consul]
    datacenter = global` unless settings say otherwise; with follow, started
    and following the current leader."""
    made: list[Bouncer] = []

    def make(settings: dict | None = None, follow: bool = True) -> Bouncer:
        consul_settings = {"datacenter": "global"}
        consul_settings.update(settings or {})
        consul_settings = {k: v for k, v in consul_settings.items() if v is not None}
        b = Bouncer(lab.make_workdir("pgbc-bouncer-"), fed.client("dc1", "fork"),
                    {"raddb": db_line("raddb")}, consul_settings=consul_settings,
                    bouncer_settings={"pool_mode": "transaction"})
        made.append(b)
        if follow:
            b.start()
            leader = cluster.leader()
            b.wait_row("raddb", lambda r: r["state"] == "following" and r["member"] == leader,
                       what=f"raddb following {leader}")
        return b
    yield make
    for b in made:
        b.stop()
        lab.log(f"pgbouncer log: {b.logfile}")


def test_lab_is_federated(fed, cluster):
    """Every server lists the three datacenters, Patroni's keys live in
    global only, and dc1's agent reads them with ?dc=global."""
    for dc in ("global", "dc1", "dc2"):
        assert fed.datacenters_seen(fed.server(dc)) == ["dc1", "dc2", "global"]
    agent = fed.client("dc1", "fork")
    leader = cluster.leader()
    assert agent.kv_get(cluster.leader_key) is None
    st, _, raw = agent.request("GET", f"/v1/kv/{cluster.leader_key}?dc=global&raw")
    assert (st, raw.decode()) == (200, leader)


def helper_ini(agent: lab.Consul, consul: dict | None = None,
               sections: dict[str, dict] | None = None, **keys: str) -> str:
    """A helper.ini naming `agent` (and the [consul] keys `consul`), the
    [helper] keys `keys` and the further `sections` ({name: {key: value}})."""
    ini = lab.make_workdir("pgbc-helper-") / "helper.ini"
    ini.write_text(f"[consul]\nurl = {agent.url}\nnamespace = service\n"
                   + "".join(f"{k} = {v}\n" for k, v in (consul or {}).items())
                   + "\n[helper]\nscope = raddb\n"
                   + "".join(f"{k} = {v}\n" for k, v in keys.items())
                   + "".join(f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items())
                             for name, kv in (sections or {}).items()))
    return str(ini)


def helper(agent: lab.Consul, *args: str, consul: dict | None = None, check: bool = True,
           sections: dict[str, dict] | None = None, **keys: str) -> subprocess.CompletedProcess:
    """Run pgbouncer-helper ARGS with helper_ini(agent, consul, sections, **keys)."""
    ini = helper_ini(agent, consul, sections, **keys)
    r = subprocess.run([HELPER, "-c", ini, *args], capture_output=True, text=True,
                       timeout=60)
    lab.log(f"helper {' '.join(args)} on {agent.node} -> rc={r.returncode}\n{r.stderr.strip()}")
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_helper_registers_each_member_in_its_site(fed, cluster):
    """pgbouncer-helper register on each member, against its site's agent:
    dc1's catalog holds n1 and n2, dc2's n3, global's none (Patroni's
    register_service is off); prepared-queries installed in dc1 and dc2
    fail over to the other site, and in dc1 `raddb-any` answers dc1's
    members only."""
    cluster.wait_healthy(timeout=90)
    leader = cluster.leader()
    agents = {m: fed.client(site, m) for m, site in lab.FEDERATION_SITES.items()}
    try:
        for m, agent in agents.items():
            helper(agent, "register", "--once", patroni_url=cluster.member(m).api_url)
        dc1 = fed.client("dc1", "fork")

        def nodes(dc: str, tag: str | None = None) -> set[str]:
            q = f"?dc={dc}" + (f"&tag={tag}" if tag else "")
            return {e["Node"] for e in dc1.api("GET", f"/v1/catalog/service/raddb{q}")}
        assert nodes("dc1") == {"dc1-n1", "dc1-n2"}
        assert nodes("dc2") == {"dc2-n3"}
        assert nodes("global") == set()
        assert nodes(lab.FEDERATION_SITES[leader], "primary") == {agents[leader].node}
        # once per site, from one of its members
        for site, other, member in (("dc1", "dc2", "n1"), ("dc2", "dc1", "n3")):
            helper(agents[member], "prepared-queries", datacenters=other, dns_ttl="5s")
            queries = {q["Name"]: q for q in dc1.api("GET", f"/v1/query?dc={site}")}
            assert set(queries) == {"raddb-writer", "raddb-query", "raddb-any"}, queries
            assert all(q["Service"]["Failover"]["Datacenters"] == [other]
                       for q in queries.values()), queries

        def any_in_dc1() -> set[str] | None:
            r = dc1.api("GET", "/v1/query/raddb-any/execute")
            got = {n["Node"]["Node"] for n in r["Nodes"]}
            return got if r["Datacenter"] == "dc1" and got == {"dc1-n1", "dc1-n2"} else None
        lab.wait_until(any_in_dc1, 30, 0.3, "raddb-any in dc1 answering dc1's members")
    finally:
        for agent in agents.values():
            for sid in agent.services():
                if sid.startswith("pgbc-helper:"):
                    agent.api("PUT", f"/v1/agent/service/deregister/{sid}")


def test_helper_reads_global_through_local_agent(fed, cluster, bouncer):
    """pgbouncer-helper's [consul] datacenter as the plugin's: userlist-sync
    on dc1's agent finds no leader without it and, with datacenter =
    global, reads the leader there and syncs the fork's auth_file."""
    b = bouncer()
    auth = b.workdir / "userlist.txt"
    keys = {"auth_file": str(auth), "exclude_users": "nobody",
            "pgbouncer_admin": f"host=127.0.0.1 port={b.port} dbname=pgbouncer user=postgres",
            "source": f"user={lab.PG_USER} password={lab.PG_PASSWORD} dbname=postgres"}
    agent = fed.client("dc1", "n1")
    r = helper(agent, "userlist-sync", "--once", check=False, **keys)
    assert r.returncode != 0
    assert "no leader for scope raddb in consul" in r.stderr, r.stderr
    r = helper(agent, "userlist-sync", "--once", consul={"datacenter": "global"}, **keys)
    assert "wrote auth_file" in r.stderr, r.stderr
    assert f'"{lab.REPL_USER}" ' in auth.read_text()
    r = helper(agent, "userlist-sync", "--once", check=False, consul={"datacenter": "dc.1"},
               **keys)
    assert r.returncode != 0 and "datacenter: only letters" in r.stderr, r.stderr
    assert b.row("raddb")["state"] == "following"


def test_follows_global_across_switchover(fed, cluster, bouncer):
    """datacenter = global on dc1's agent: the row follows the Patroni
    leader, and a switchover is followed with 0 client errors."""
    b = bouncer()
    agent = fed.client("dc1", "fork")
    assert log_lines(b, rf'scope "raddb": watching service in datacenter global at '
                        rf'{agent.url}$'), b.logfile_text()
    w = start_writer(b, 100)
    states = States(b)
    t0 = time.monotonic()
    try:
        res = cluster.switchover()
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and
                         r["member"] == res["new"], timeout=30,
                         what=f"raddb following {res['new']}")
        lab.record_timing("dc_global_switchover_followed", time.monotonic() - t0)
        assert row["last_error"] is None
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 100 or w.errors, 60, 0.02,
                       "writes after the switchover")
        assert b.value("raddb", "select inet_server_port()") == cluster.member(res["new"]).port
    finally:
        w.stop()
        states.stop()
        cluster.wait_healthy(timeout=90)
    report("dc_global_switchover", w, states, t0)
    assert w.errors == []


def test_without_datacenter_the_scope_is_not_found(fed, cluster, bouncer):
    """The same fork without `datacenter =` asks dc1, which holds none of
    Patroni's keys: Consul answers, there is no leader, and the entry stays
    on its starting address.  (So the test above did read global.)"""
    agent = fed.client("dc1", "fork")
    assert agent.kv_list(cluster.prefix) == {}
    b = bouncer({"datacenter": None}, follow=False).start()
    row = b.wait_row("raddb", lambda r: int(r["consul_index"] or 0) > 0,
                     what="raddb's first answer from dc1")
    lab.record_timing("dc_no_datacenter_row", f"{row['state']} member={row['member']} "
                      f"last_error={row['last_error']}")
    assert row["state"] == "no_leader" and row["member"] is None, row
    assert not log_lines(b, "in datacenter"), b.logfile_text()


def test_wan_link_broken_keeps_leader(fed, cluster, bouncer):
    """dc1 cannot reach global (its RPC relay cut, global itself up): the
    row goes consul_unreachable with Consul's error, keeps the last known
    leader and writes go on; healed, it follows again."""
    b = bouncer()
    w = start_writer(b, 100)
    states = States(b)
    leader = cluster.leader()
    relay = fed.wan_relay
    # the states must start from the row before the cut
    lab.wait_until(lambda: states.seen, 10, 0.01, "a first SHOW CONSUL sample")
    t0 = time.monotonic()
    try:
        relay.cut()
        row = b.wait_row("raddb", lambda r: r["state"] == "consul_unreachable", timeout=60,
                         what="raddb consul_unreachable")
        lab.record_timing("dc_wan_cut_to_unreachable", time.monotonic() - t0)
        lab.record_timing("dc_wan_cut_last_error", row["last_error"])
        assert row["member"] == leader, row
        assert "http status 500" in (row["last_error"] or ""), row
        assert "rpc error" in row["last_error"], row
        # global is up all along: Patroni keeps its leader
        assert cluster.leader() == leader
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 200 or w.errors, 60, 0.02, "writes during the cut")
        assert w.errors == [], w.errors
        row = b.row("raddb")
        assert row["state"] == "consul_unreachable" and row["member"] == leader, row
        healed = time.monotonic()
        relay.heal()
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and
                         r["last_error"] is None, timeout=ERROR_CAP + 15,
                         what="raddb following again")
        lab.record_timing("dc_wan_heal_to_following", time.monotonic() - healed)
        assert row["member"] == leader
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 100 or w.errors, 60, 0.02, "writes after healing")
    finally:
        relay.heal()
        w.stop()
        states.stop()
    report("dc_wan_cut", w, states, t0)
    lab.log(f"wan relay: {relay}")
    assert w.errors == []
    assert len(log_lines(b, r"consul unreachable: .*dc=global.*http status 500")) == 1, \
        b.logfile_text()
    assert len(log_lines(b, r"consul answers again")) == 1, b.logfile_text()


def test_unknown_datacenter_keeps_leader(fed, cluster, bouncer):
    """A RELOAD naming a datacenter Consul does not know: the agent answers
    500 "No path to datacenter", the row says consul_unreachable with it
    and keeps the last known leader; back to global, it follows again."""
    b = bouncer()
    w = start_writer(b, 100)
    leader = cluster.leader()
    try:
        b.consul_settings["datacenter"] = "nowhere"
        b.reload()
        row = b.wait_row("raddb", lambda r: r["state"] == "consul_unreachable", timeout=30,
                         what="raddb consul_unreachable")
        lab.record_timing("dc_unknown_last_error", row["last_error"])
        assert "No path to datacenter" in (row["last_error"] or ""), row
        assert row["member"] == leader, row
        n = w.ok
        lab.wait_until(lambda: w.ok >= n + 100 or w.errors, 60, 0.02,
                       "writes while the datacenter is unknown")
        assert w.errors == [], w.errors
        b.consul_settings["datacenter"] = "global"
        b.reload()
        row = b.wait_row("raddb", lambda r: r["state"] == "following" and
                         r["last_error"] is None, timeout=ERROR_CAP + 15,
                         what="raddb following again")
        assert row["member"] == leader
    finally:
        w.stop()
    assert w.errors == []
    assert log_lines(b, r"consul unreachable: .*dc=nowhere.*No path to datacenter"), \
        b.logfile_text()


@pytest.mark.parametrize("value", ["glo.bal", "dc 1", "dc1&recurse", "dc/1"])
def test_bad_datacenter_refused_at_start(fed, bouncer, value):
    b = bouncer({"datacenter": value}, follow=False).start(expect_fail=True)
    assert b.proc.returncode != 0
    log = b.log()
    assert (f'[consul] datacenter: invalid value "{value}" for datacenter: only letters, '
            "digits, '-' and '_' are allowed") in log, log
    assert f"for parameter datacenter in configuration ({b.ini}:" in log, log


def test_bad_datacenter_refused_at_reload(fed, cluster, bouncer):
    b = bouncer()
    mark = len(b.logfile_text())
    b.consul_settings["datacenter"] = "glo:bal"
    b.reload()
    lab.wait_until(lambda: "datacenter" in b.logfile_text()[mark:], 10, 0.1,
                   "RELOAD refusing the datacenter")
    after = b.logfile_text()[mark:]
    assert '[consul] datacenter: invalid value "glo:bal" for datacenter' in after, after
    assert "consul settings changed" not in after
    row = b.row("raddb")
    assert row["state"] == "following" and row["last_error"] is None, row
    assert b.value("raddb", "select 1") == 1
