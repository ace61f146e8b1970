"""Many scopes against one Consul agent at its default limits (Consul 1.8.7
-dev: limits.http_max_conns_per_client 200 per client address).

Over https the agent speaks HTTP/2, and the fork's blocking queries share a
few connections (the v2 plugin opened one per scope past libcurl's first
full connection, and ran into the agent's limit at 200).  Over http, each
scope holds one connection, and the scopes past the limit are refused: they
show consul_unreachable with a last_error naming the limit, the log says it
once, and the scopes that got in keep following.  The test's own Consul
writes come from 127.0.0.2, outside the fork's per-address count."""

from __future__ import annotations

import json
import sys

import pytest

import lab

sys.path.insert(0, str(lab.REPO / "tests/common"))
from certs import make_ca, make_cert  # noqa: E402
from fake_scopes import KVClient, Scope, member_record  # noqa: E402
from fork import Bouncer  # noqa: E402
from pgproc import Postgres  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]

H2_SCOPES = 600         # past one HTTP/2 connection's 250 streams at Consul, and past
                        # libcurl's default 100 streams on each of 4 connections
H1_SCOPES = 230         # past the agent's 200 connections per client
H2_CONNECTIONS = 4      # CURL_LOOP_H2_CONNECTIONS


@pytest.fixture(scope="module")
def agent():
    d = lab.make_workdir("pgbc-scale-")
    ca_pem, ca_key = make_ca(d, "scale-ca")
    cert, key = make_cert(d, ca_pem, ca_key)
    https = lab.free_port()
    c = lab.Consul(d / "consul", log_level="warn", extra_hcl=(
        f'ports {{ https = {https} }}\ncert_file = "{cert}"\nkey_file = "{key}"\n'
        f'ca_file = "{ca_pem}"\nverify_incoming = false\n')).start()
    lab.chown_tree(d)
    pgs = []
    try:
        pgs = [Postgres(d / f"pg{i}").start() for i in range(2)]
        kv = KVClient(c.http_port)
        scopes = [Scope(f"s{i:03d}", 3 if i % 2 == 0 else 4, (pgs[0].port, pgs[1].port))
                  for i in range(max(H2_SCOPES, H1_SCOPES))]
        for s in scopes:
            s.write(kv)
        yield {"consul": c, "https": f"https://127.0.0.1:{https}", "https_port": https,
               "ca": ca_pem, "scopes": scopes, "kv": kv, "dir": d}
        kv.close()
    finally:
        c.stop()
        for pg in pgs:
            pg.stop()


def fork_for(agent, scopes, url, wait="300s", **consul):
    dbs = {f"db_{s.name}": f"host=127.0.0.1 port=1 dbname=postgres user=postgres "
                           f"patroni_scope={s.name}" for s in scopes}
    return Bouncer(lab.make_workdir("pgbc-bouncer-"), agent["consul"], dbs,
                   consul_settings={"url": url, "wait": wait, **consul},
                   bouncer_settings={"pool_mode": "transaction", "max_client_conn": "100"})


def stats(b):
    return b.admin("SHOW CONSUL_STATS")[0]


def all_following(b, scopes):
    rows = b.show_consul()
    ok = all(rows.get(f"db_{s.name}", {}).get("state") == "following" and
             int(rows[f"db_{s.name}"]["port"]) == s.port_of(s.leader) for s in scopes)
    return rows if ok else None


def test_https_scopes_share_a_few_h2_connections(agent):
    scopes = agent["scopes"][:H2_SCOPES]
    b = fork_for(agent, scopes, agent["https"], ca_file=str(agent["ca"])).start()
    try:
        lab.wait_until(lambda: all_following(b, scopes), 60, 0.1,
                       f"all {len(scopes)} entries following over https")
        held = lab.tcp_connections(b.proc.pid, agent["https_port"])
        assert 1 <= held <= H2_CONNECTIONS, f"{held} connections for {H2_SCOPES} scopes"
        st = stats(b)
        assert st["transport"] == "h2"
        assert int(st["scopes"]) == H2_SCOPES and int(st["following"]) == H2_SCOPES
        assert int(st["queries"]) == H2_SCOPES
        assert int(st["connections"]) == held
        assert "the agent answers over h2" in b.logfile_text()
        # and a leader change is followed over that transport, one scope at a
        # time, from the scopes whose queries started last: none waits in
        # libcurl's queue for a stream until another query ends (which a
        # change in another scope would bring about)
        for s in reversed(scopes[-100:]):
            port = s.switch(agent["kv"])
            b.wait_row(f"db_{s.name}",
                       lambda r: r["state"] == "following" and int(r["port"]) == port,
                       15, f"the switched scope {s.name}")
    finally:
        b.stop()


def test_http_past_the_agents_connection_limit(agent):
    scopes = agent["scopes"][:H1_SCOPES]
    # Consul 1.8.7 counts a dropped connection until its blocking query ends:
    # a short wait frees this fork's 200 soon after it stops
    b = fork_for(agent, scopes, agent["consul"].url, wait="5s").start()
    try:
        def settled():
            rows = b.show_consul()
            states = [r["state"] for r in rows.values()]
            if len(states) == H1_SCOPES and set(states) == {"following", "consul_unreachable"}:
                return rows
            return None
        rows = lab.wait_until(settled, 60, 0.2, "every entry following or consul_unreachable")
        refused = [r for r in rows.values() if r["state"] == "consul_unreachable"]
        following = [db for db, r in rows.items() if r["state"] == "following"]
        # the agent lets 200 connections in from 127.0.0.1, and the fork holds one per scope
        assert len(following) <= 200 < H1_SCOPES
        for r in refused:
            assert "limits.http_max_conns_per_client" in (r["last_error"] or ""), r
        st = stats(b)
        assert st["transport"] == "http/1.1"
        # one snapshot: the rows above may have swapped a slot since (a refused
        # scope's retry can take a connection another scope just put back)
        assert int(st["conn_limited"]) == int(st["unreachable"]) > 0
        assert int(st["unreachable"]) + int(st["following"]) == H1_SCOPES
        # the refused scopes retry with backoff; a retry refused again is not logged
        lab.wait_until(lambda: int(stats(b)["connects"]) >= int(st["connects"]) + 2 * len(refused),
                       60, 0.2, "every refused scope retrying twice")
        assert b.logfile_text().count("limits.http_max_conns_per_client") == 1
        # the scopes that got in still follow a leader change
        s = next(sc for sc in scopes if f"db_{sc.name}" in following)
        port = s.switch(agent["kv"])
        b.wait_row(f"db_{s.name}", lambda r: r["state"] == "following" and int(r["port"]) == port,
                   30, "the switched scope")
    finally:
        b.stop()
    # once the agent has let those go, a fork refused at first gets in for every scope
    few = scopes[:190]
    b = fork_for(agent, few, agent["consul"].url).start()
    try:
        lab.wait_until(lambda: all_following(b, few), 90, 0.2, "190 entries following over http")
        st = stats(b)
        assert int(st["conn_limited"]) == 0 and int(st["connections"]) == 190
        log = b.logfile_text()
        if "limits.http_max_conns_per_client" in log:
            assert log.count("limits.http_max_conns_per_client") == 1
            assert "the agent no longer refuses a scope's connection" in log
    finally:
        b.stop()


def scope_index(kv, s):
    """The highest ModifyIndex under a scope: what its recursive read answers with."""
    st, body = kv.request("GET", f"/v1/kv/{s.key('')}?recurse")
    assert st == 200, (st, body[:200])
    return max(e["ModifyIndex"] for e in json.loads(body))


def test_member_pace_reads_members_only_between_leader_waits(agent):
    """[consul] member_pace: under member-record churn a primary-only scope's
    one query waits on the leader key alone, so churn stops waking it; a
    leader change and a lost leader key are still followed at once; a scope
    with a replica entry keeps reading every write; a RELOAD to 0 reads
    every write again."""
    kv = agent["kv"]
    paced = agent["scopes"][260:280]
    replica = agent["scopes"][280]
    dbs = {f"db_{s.name}": f"host=127.0.0.1 port=1 dbname=postgres user=postgres "
                           f"patroni_scope={s.name}" for s in paced}
    dbs[f"db_{replica.name}"] = (f"host=127.0.0.1 port=1 dbname=postgres user=postgres "
                                 f"patroni_scope={replica.name} patroni_role=replica")
    # over https: the http test before this one leaves the agent counting
    # its 190 connections for a while
    b = Bouncer(lab.make_workdir("pgbc-bouncer-"), agent["consul"], dbs,
                consul_settings={"url": agent["https"], "ca_file": str(agent["ca"]),
                                 "member_pace": "300s"},
                bouncer_settings={"pool_mode": "transaction", "max_client_conn": "100"}).start()
    rdb = f"db_{replica.name}"
    try:
        lab.wait_until(lambda: all_following(b, paced), 60, 0.1, "20 primary entries following")
        b.wait_row(rdb, lambda r: r["state"] == "following", 30, "the replica entry")
        # a first member-record write wakes each scope's read of the whole scope ...
        for o in paced + [replica]:
            o.churn_write(kv, 0)
        lab.wait_until(lambda: int(stats(b)["paced"]) == len(paced), 30, 0.1,
                       "every primary-only scope waiting on its leader key")
        rows = b.show_consul()
        before = {s.name: int(rows[f"db_{s.name}"]["consul_index"]) for s in paced}
        answers = int(stats(b)["answers"])
        # ... and then no longer: three more rewrites of each member record
        for i in (1, 2, 3):
            for s in paced:
                s.churn_write(kv, i)
        for i in (1, 2, 3):
            replica.churn_write(kv, i)
        last = scope_index(kv, replica)
        b.wait_row(rdb, lambda r: int(r["consul_index"]) >= last, 30,
                   "the replica entry's scope read at its last write")
        s = paced[0]
        port = s.switch(kv)
        b.wait_row(f"db_{s.name}", lambda r: r["state"] == "following" and int(r["port"]) == port,
                   30, "a leader change in a paced scope")
        rows = b.show_consul()
        for o in paced[1:]:
            assert int(rows[f"db_{o.name}"]["consul_index"]) == before[o.name], \
                (o.name, rows[f"db_{o.name}"])
        assert int(rows[f"db_{s.name}"]["consul_index"]) > before[s.name]
        grown = int(stats(b)["answers"]) - answers
        # the switched scope's leader and scope reads, the replica scope's reads
        assert grown <= 2 + 3 + 2, f"{grown} answers for {3 * len(paced)} member writes"
        # a leader key gone (the session ended): held at once, followed when back
        s = paced[1]
        st, body = kv.request("DELETE", f"/v1/kv/{s.key('leader')}")
        assert st == 200, body
        b.wait_row(f"db_{s.name}", lambda r: r["state"] == "no_leader", 30,
                   "a paced scope whose leader key is gone")
        kv.put(s.key("leader"), s.leader, acquire=s.session)
        b.wait_row(f"db_{s.name}", lambda r: r["state"] == "following" and
                   int(r["port"]) == s.port_of(s.leader), 30, "the leader key back")
        # a RELOAD binding a replica entry to a paced scope reads its members
        # now, not at the end of the pace: a member record gone meanwhile
        # (not waking the paced query) is not among the replicas
        s = paced[2]
        lab.wait_until(lambda: int(stats(b)["paced"]) == len(paced), 30, 0.1,
                       "every primary-only scope paced again")
        st, body = kv.request("DELETE", f"/v1/kv/{s.key('members/c')}")
        assert st == 200, body
        b.databases[f"ro_{s.name}"] = (f"host=127.0.0.1 port=1 dbname=postgres user=postgres "
                                       f"patroni_scope={s.name} patroni_role=replica")
        b.reload()
        r = b.wait_row(f"ro_{s.name}", lambda r: r["state"] == "following", 30,
                       "the replica entry bound by RELOAD")
        assert r["member"] == "b", r
        del b.databases[f"ro_{s.name}"]
        kv.put(s.key("members/c"), member_record(s.major, s.port_of("c"), "replica", s.xlog))
        b.reload()
        # member_pace = 0 by RELOAD: every write is read again
        b.consul_settings["member_pace"] = "0"
        b.reload()
        lab.wait_until(lambda: int(stats(b)["paced"]) == 0, 30, 0.1, "no scope paced")
        # the RELOAD restarted the paced queries: wait for their fresh reads
        now = {o.name: scope_index(kv, o) for o in paced}
        lab.wait_until(lambda: all(int(b.row(f"db_{o.name}")["consul_index"]) >= now[o.name]
                                   for o in paced), 30, 0.1, "every scope read afresh")
        before = now
        for o in paced:
            o.churn_write(kv, 4)
        lab.wait_until(lambda: all(int(r["consul_index"]) > before[o.name] for o in paced
                                   for r in [b.row(f"db_{o.name}")]), 30, 0.1,
                       "every scope read at its member write")
        assert int(stats(b)["paced"]) == 0
    finally:
        b.stop()
