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
with bad characters refused at start and at RELOAD.  Then, through DNS
(issue 14, point 2): `dig` at dc1's agent for the prepared queries (members
and TTLs), raddb-query failing over to dc2, raddb-writer after a switchover
with the register loop running, and a libpq client listing the query name
before the writer's.

The lab is module-scoped and every test leaves it healthy.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import lab
from fork import PGBOUNCER, PLUGIN, ROOT, Bouncer, db_line, require_built
from pooler_watch import States, create_writes_table, log_lines, report, start_writer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

HELPER = os.environ.get("PGBC_HELPER", str(ROOT / "helper/pgbouncer-helper"))
# the longest wait between two retries of a failing scope (plugin/scope_query.c)
ERROR_CAP = 30.0


@pytest.fixture(scope="module", autouse=True)
def _binaries():
    require_built(PGBOUNCER, PLUGIN)


@pytest.fixture(scope="module")
def fed(consul_federation):
    return consul_federation


@pytest.fixture(scope="module")
def cluster(global_patroni_cluster):
    create_writes_table(global_patroni_cluster)
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
    # only the datacenter changed at each RELOAD, and the log says so
    restarted = r'scope "raddb": consul settings changed \(datacenter\), watch restarted'
    assert len(log_lines(b, restarted)) == 2, b.logfile_text()


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


# ----------------------------------------------------------------- through DNS
# Issue 14, point 2: what clients resolve.  `dig` against the Consul DNS
# port of dc1's client agent `fork` (the agent a pooler host or an
# application host of dc1 asks) for the prepared queries raddb-writer,
# raddb-query and raddb-any (`<name>.query.consul`), as the helper installs
# them.  In this file rather than a file of its own: another module would
# start another federation and Patroni cluster (about 18 s of the stage).

DIG = "/usr/bin/dig"   # bind9-dnsutils (scripts/install-deps.sh)
# the DNS TTLs configured for the queries: writer_ttl, query_ttl, and
# dns_ttl for raddb-any (no any_ttl), so each answer shows its own
DNS_TTL = {"writer": 2, "query": 7, "any": 5}
# the register loop's and the Consul checks' interval in these tests
REGISTER_INTERVAL = 1


def dig(agent: lab.Consul, name: str, rtype: str = "SRV") -> tuple[str, list[dict]]:
    """dig `name` (`rtype`) at agent's DNS port over UDP: (status, answers),
    answers as {"ttl", "type", "data"} with, for SRV, "port" and "target"."""
    r = subprocess.run([DIG, "@127.0.0.1", "-p", str(agent.dns_port), "+noall", "+comments",
                        "+answer", "+time=2", "+tries=2", name, rtype],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"dig {name} {rtype}: rc={r.returncode} {r.stdout}{r.stderr}"
    status, answers = None, []
    for line in r.stdout.splitlines():
        if "->>HEADER<<-" in line:
            status = line.split("status:", 1)[1].split(",", 1)[0].strip()
        elif line and not line.startswith(";"):
            owner, ttl, klass, typ, *data = line.split()
            a = {"ttl": int(ttl), "type": typ, "data": " ".join(data)}
            if typ == "SRV":
                a.update(port=int(data[2]), target=data[3])
            answers.append(a)
    assert status is not None, f"dig {name} {rtype}: no header in {r.stdout!r}"
    return status, answers


def srv_ports(agent: lab.Consul, kind: str) -> set[int]:
    """The ports raddb-<kind>.query.consul's SRV answers name (empty when
    the query finds nothing)."""
    _, answers = dig(agent, f"raddb-{kind}.query.consul")
    return {a["port"] for a in answers if a["type"] == "SRV"}


def wait_srv(agent: lab.Consul, kind: str, ports: set[int], what: str,
             timeout: float = 60) -> None:
    try:
        lab.wait_until(lambda: srv_ports(agent, kind) == ports, timeout, 0.1,
                       f"raddb-{kind} answering {sorted(ports)} ({what})")
    except TimeoutError as e:
        raise TimeoutError(f"{e}; it answers {dig(agent, f'raddb-{kind}.query.consul')}") \
            from None


def register_all(fed, cluster, *args: str) -> None:
    for m, site in lab.FEDERATION_SITES.items():
        helper(fed.client(site, m), "register", "--once", *args,
               patroni_url=cluster.member(m).api_url)


def dc1_roles(cluster) -> tuple[str, str]:
    """(leader, dc1's replica): dns_lab keeps the leader in dc1."""
    leader = cluster.leader()
    assert lab.FEDERATION_SITES[leader] == "dc1", leader
    replica, = [m for m, s in lab.FEDERATION_SITES.items() if s == "dc1" and m != leader]
    return leader, replica


@pytest.fixture(scope="module")
def dns_lab(fed, cluster):
    """The leader in dc1 (so that dc1 has a primary and a replica, dc2 a
    replica), every member registered in its site with checks every
    REGISTER_INTERVAL, the prepared queries in dc1 and dc2 with DNS_TTL;
    dc1's agent `fork` to ask.  The services are deregistered after."""
    cluster.wait_healthy(timeout=90)
    if lab.FEDERATION_SITES[cluster.leader()] != "dc1":
        cluster.switchover(candidate="n1")
        cluster.wait_healthy(timeout=90)
    interval = f"{REGISTER_INTERVAL}s"
    try:
        register_all(fed, cluster, "--check-interval", interval)
        ttls = {"writer_ttl": f"{DNS_TTL['writer']}s", "query_ttl": f"{DNS_TTL['query']}s"}
        for member, other in (("n1", "dc2"), ("n3", "dc1")):
            helper(fed.client(lab.FEDERATION_SITES[member], member), "prepared-queries",
                   datacenters=other, dns_ttl=f"{DNS_TTL['any']}s",
                   sections={"prepared_queries": ttls})
        agent = fed.client("dc1", "fork")
        leader, _ = dc1_roles(cluster)
        # a check Consul has not run yet is critical: until each site's
        # members pass, its queries fail over
        for site in ("dc1", "dc2"):
            member = next(m for m, s in lab.FEDERATION_SITES.items() if s == site)
            site_agent = fed.client(site, member)

            def all_passing():
                every = site_agent.health_service("raddb")
                return every and len(site_agent.health_service("raddb", passing=True)) == len(every)
            lab.wait_until(all_passing, 60, 0.1, f"every raddb service of {site} passing")
        wait_srv(agent, "writer", {cluster.member(leader).port}, "the leader")
        yield agent
    finally:
        for a in fed.agents():
            for sid in a.services():
                if sid.startswith("pgbc-helper:"):
                    a.api("PUT", f"/v1/agent/service/deregister/{sid}")


def test_dns_answers_members_with_ttls(dns_lab, cluster):
    """dc1's agent answers SRV and A records: raddb-writer the primary,
    raddb-query dc1's replica, raddb-any dc1's two members (Near _agent:
    the local datacenter first), each with its configured TTL."""
    agent = dns_lab
    leader, replica = dc1_roles(cluster)
    port = {m: cluster.member(m).port for m in cluster.names}
    want = {"writer": {port[leader]}, "query": {port[replica]},
            "any": {port[leader], port[replica]}}
    for kind, ports in want.items():
        name = f"raddb-{kind}.query.consul"
        status, srv = dig(agent, name, "SRV")
        lab.record_timing(f"dns_{kind}_srv", " ".join(f"{a['port']}@{a['target']}/ttl={a['ttl']}"
                                                      for a in srv))
        assert status == "NOERROR", (name, status)
        assert {a["port"] for a in srv} == ports and len(srv) == len(ports), (name, srv)
        assert all(a["target"].endswith(".dc1.consul.") for a in srv), (name, srv)
        assert {a["ttl"] for a in srv} == {DNS_TTL[kind]}, (name, srv)
        status, a_records = dig(agent, name, "A")
        assert status == "NOERROR", (name, status)
        # the members share 127.0.0.1: Consul answers it once, and an A
        # record tells no member from another (hence SRV for libpq below)
        assert [a["data"] for a in a_records] == ["127.0.0.1"], (name, a_records)
        assert {a["ttl"] for a in a_records} == {DNS_TTL[kind]}, (name, a_records)


def test_dns_query_fails_over_to_dc2(dns_lab, cluster):
    """dc1's replica stopped (its Patroni, and so its PostgreSQL): the
    member's Consul check on Patroni's /replica goes critical, with no
    helper running, and raddb-query in dc1 answers dc2's replica; raddb-any
    keeps to dc1's primary, raddb-writer does not move.  Started again,
    raddb-query is dc1's replica again."""
    agent = dns_lab
    leader, replica = dc1_roles(cluster)
    port = {m: cluster.member(m).port for m in cluster.names}
    t0 = time.monotonic()
    cluster.stop_member(replica)
    try:
        wait_srv(agent, "query", {port["n3"]}, f"{replica} stopped: dc2's n3")
        lab.record_timing("dns_query_failover_to_dc2", time.monotonic() - t0)
        _, srv = dig(agent, "raddb-query.query.consul")
        assert [a["target"].endswith(".dc2.consul.") for a in srv] == [True], srv
        assert {a["ttl"] for a in srv} == {DNS_TTL["query"]}, srv
        assert srv_ports(agent, "any") == {port[leader]}
        assert srv_ports(agent, "writer") == {port[leader]}
    finally:
        cluster.start_member(replica)
        cluster.wait_healthy(timeout=90)
    wait_srv(agent, "query", {port[replica]}, f"{replica} back")


def libpq_conninfo(agent: lab.Consul, names: list[str]) -> str:
    """The client's side: a multi-host conninfo from the SRV answers of
    `names`, in that order.  DNS gives the member's host and port; libpq
    only gets the list (it resolves host names itself, A records only, and
    the members share 127.0.0.1, so the ports must come from SRV)."""
    hosts: list[tuple[str, int]] = []
    for kind in names:
        _, srv = dig(agent, f"raddb-{kind}.query.consul")
        hosts += [("127.0.0.1", a["port"]) for a in srv]
    assert hosts, f"no SRV answer for {names}"
    return (f"host={','.join(h for h, _ in hosts)} port={','.join(str(p) for _, p in hosts)} "
            f"target_session_attrs=any user={lab.PG_USER} password={lab.PG_PASSWORD} "
            "dbname=postgres connect_timeout=5")


def server_of(conninfo: str) -> tuple[int, bool]:
    import psycopg
    with psycopg.connect(conninfo, autocommit=True) as c:
        return c.execute("select inet_server_port(), pg_is_in_recovery()").fetchone()


def test_libpq_query_name_then_writer(dns_lab, cluster):
    """A client listing raddb-query before raddb-writer reaches a replica;
    with every replica stopped (dc1's and dc2's) raddb-query answers
    nothing, and the same client reaches the primary: from a conninfo
    built now (DNS: only the writer is left) and from the one built before
    (an answer still cached within its TTL: libpq's part, the replica's
    port refused, then the next host)."""
    agent = dns_lab
    leader, replica = dc1_roles(cluster)
    port = {m: cluster.member(m).port for m in cluster.names}
    before = libpq_conninfo(agent, ["query", "writer"])
    assert server_of(before) == (port[replica], True)
    stopped = [replica, "n3"]
    try:
        for m in stopped:
            cluster.stop_member(m)
        lab.wait_until(lambda: dig(agent, "raddb-query.query.consul")[1] == [], 60, 0.1,
                       "raddb-query answering nothing")
        lab.record_timing("dns_query_no_replica_status", dig(agent, "raddb-query.query.consul")[0])
        now = libpq_conninfo(agent, ["query", "writer"])
        assert f"port={port[leader]} " in now, now
        assert server_of(now) == (port[leader], False)
        assert server_of(before) == (port[leader], False)
    finally:
        for m in stopped:
            cluster.start_member(m)
        cluster.wait_healthy(timeout=90)
    wait_srv(agent, "query", {port[replica]}, f"{replica} back")


def test_dns_writer_follows_switchover(dns_lab, fed, cluster):
    """`register` running as in production (a loop, every REGISTER_INTERVAL,
    checks as often), a switchover to dc1's replica: raddb-writer names the
    new primary, and it alone, and raddb-query the old one.  Measured from
    the new leader key in global to the writer's answer (within about one
    register round plus one check, polled every 0.1 s); a client whose
    resolver caches adds up to the writer's TTL."""
    agent = dns_lab
    leader, replica = dc1_roles(cluster)
    port = {m: cluster.member(m).port for m in cluster.names}
    interval = f"{REGISTER_INTERVAL}s"
    loops: list[subprocess.Popen] = []
    recorder = lab.KeyRecorder(fed.server("global"), cluster.leader_key)
    try:
        for m, site in lab.FEDERATION_SITES.items():
            ini = helper_ini(fed.client(site, m), patroni_url=cluster.member(m).api_url)
            path = lab.make_workdir("pgbc-register-") / "register.log"
            lab.log(f"register loop of {m}: {path}")
            log = open(path, "w")
            loops.append(subprocess.Popen([HELPER, "-c", ini, "register", "--interval", interval,
                                           "--check-interval", interval],
                                          stdout=log, stderr=subprocess.STDOUT))
            log.close()
        recorder.start()
        cluster.switchover(candidate=replica)
        wait_srv(agent, "writer", {port[replica]}, f"the new primary {replica}")
        seen = time.monotonic()
        keyed = next((t for t, v, _ in recorder.stop() if v == replica), None)
        assert keyed is not None, f"no leader key {replica} recorded: {recorder.events}"
        lab.record_timing("dns_switchover_leader_key_to_writer", seen - keyed)
        lab.record_timing("dns_switchover_bound_interval_plus_ttl",
                          float(REGISTER_INTERVAL + DNS_TTL["writer"]))
        # the old primary, a replica again, is registered as one by its loop
        cluster.wait_healthy(timeout=90)
        wait_srv(agent, "query", {port[leader]}, f"the old primary {leader} a replica")
        assert all(p.poll() is None for p in loops), [p.returncode for p in loops]
    finally:
        recorder.stop()
        for p in loops:
            lab.stop_pid(p.pid, timeout=10, proc=p, name="pgbouncer-helper register")
        cluster.wait_healthy(timeout=90)
