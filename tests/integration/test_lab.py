"""Tests of the lab itself: real Consul 1.8.7, Patroni (PGBC_PATRONI), PostgreSQL 15.

    /usr/bin/python3 -m pytest -v tests/integration/test_lab.py      (as root)

The cluster tests share one module-scoped cluster and run in file order:
topology -> keys -> replication -> switchover -> kill -9 -> consul restart.
Each test leaves the cluster healthy (3 members, 1 leader) for the next one.
"""

from __future__ import annotations

import time
import urllib.parse

import psycopg
import pytest

import lab

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300, method="signal")]


# --------------------------------------------------------------------------- consul only

def test_consul_kv_roundtrip(fresh_consul):
    c = fresh_consul
    assert c.pid and lab.pid_alive(c.pid)
    st, body = lab.http_json("GET", c.url + "/v1/status/leader")
    assert st == 200 and body.startswith("127.0.0.1:")

    assert c.kv_get("lab/t/k") is None
    assert c.kv_put("lab/t/k", "v1") is True
    kv = c.kv_get("lab/t/k")
    assert kv.value == "v1" and kv["Value"] == "v1" and kv.session is None
    i1 = kv.modify_index
    assert c.kv_put("lab/t/k", "v2") is True
    kv2 = c.kv_get("lab/t/k")
    assert kv2.value == "v2" and kv2.modify_index > i1
    # CAS with a stale index must fail
    assert c.kv_put("lab/t/k", "v3", cas=i1) is False
    assert c.kv_get("lab/t/k").value == "v2"
    assert c.kv_put("lab/t/k", "v3", cas=kv2.modify_index) is True
    assert c.kv_list("lab/t/") == {"lab/t/k": "v3"}

    # a blocking query returns when the key changes: with the old index it
    # can only answer v4 once the put is made (its wait bounds the test)
    idx = c.kv_get("lab/t/k").modify_index
    import threading
    threading.Timer(0.5, lambda: c.kv_put("lab/t/k", "v4")).start()
    got = c.kv_get("lab/t/k", index=idx, wait="30s")
    assert got.value == "v4" and got.modify_index > idx

    # sessions lock keys
    sid = c.api("PUT", "/v1/session/create", {"TTL": "10s", "Behavior": "delete"})["ID"]
    assert c.kv_put("lab/t/lock", "me", acquire=sid) is True
    assert c.kv_get("lab/t/lock").session == sid

    assert c.kv_delete("lab/t/k")
    assert c.kv_get("lab/t/k") is None


def test_consul_restart_loses_state(fresh_consul):
    c = fresh_consul
    for i in range(20):
        c.kv_put(f"lab/r/{i}", str(i))
    before = c.kv_get("lab/r/19").modify_index
    ports = dict(c.ports)
    pid = c.pid
    t0 = time.monotonic()
    c.restart()
    lab.record_timing("consul_restart", time.monotonic() - t0)
    assert c.ports == ports and c.pid != pid and not lab.pid_alive(pid)
    assert c.kv_get("lab/r/0") is None, "a dev agent must lose its KV data on restart"
    after = c.kv_index("lab/r/0")
    assert 0 < after < before, f"index must go backwards after a dev restart: {before} -> {after}"


def test_consul_acl(acl_consul):
    c = acl_consul
    assert c.token
    c.kv_put("service/raddb/leader", "n1")
    assert c.kv_get("service/raddb/leader").value == "n1"
    # anonymous is denied (default_policy deny)
    st, _, _ = c.request("GET", "/v1/kv/service/raddb/leader", token="")
    assert st == 403
    # an unknown token is refused
    st, _, body = c.request("GET", "/v1/kv/service/raddb/leader", token="00000000-0000-0000-0000-000000000000")
    assert st == 403, body
    with pytest.raises(lab.ConsulError):
        c.kv_get("service/raddb/leader", token="")


def test_consul_dns(fresh_consul):
    """The DNS port answers (services are resolvable over UDP on dns_port)."""
    import socket
    import struct
    c = fresh_consul
    q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in "consul.service.consul".split(".")) + b"\0"
    q += struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    try:
        s.sendto(q, ("127.0.0.1", c.dns_port))
        resp, _ = s.recvfrom(4096)
    finally:
        s.close()
    assert resp[:2] == b"\x12\x34"
    ancount = struct.unpack(">H", resp[6:8])[0]
    assert ancount >= 1 and socket.inet_aton("127.0.0.1") in resp


# --------------------------------------------------------------------------- cluster

def _cluster_roles(cluster):
    view = cluster.cluster_view()
    return {m["name"]: (m["role"], m["state"]) for m in view["members"]}


def test_cluster_has_leader_and_two_replicas(patroni_cluster):
    cl = patroni_cluster
    roles = _cluster_roles(cl)
    assert len(roles) == 3, roles
    leaders = [n for n, (r, _) in roles.items() if r == "leader"]
    replicas = [n for n, (r, s) in roles.items() if r == "replica" and s in ("running", "streaming")]
    assert len(leaders) == 1 and len(replicas) == 2, roles
    assert cl.leader() == leaders[0]
    for name, info in cl.members().items():
        assert lab.pid_alive(info["pid"]) and lab.pid_alive(info["postmaster_pid"]), info
    with cl.connect(leaders[0], autocommit=True) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
        assert conn.execute("show shared_buffers").fetchone()[0] == "16MB"
        assert conn.execute("show data_checksums").fetchone()[0] == "on"
    for r in replicas:
        with cl.connect(r, autocommit=True) as conn:
            assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is True
    # every member runs as postgres, never root
    for info in cl.members().values():
        for pid in (info["pid"], info["postmaster_pid"]):
            uid = int(open(f"/proc/{pid}/status").read().split("Uid:")[1].split()[0])
            assert uid != 0


def test_patroni_version_is_the_one_asked_for(patroni_cluster):
    """The cluster runs the Patroni PGBC_PATRONI names, and one that says
    another version is refused before anything starts."""
    cl = patroni_cluster
    assert cl.patroni_version == lab.patroni_install().version
    assert cl.install.reported_version() == cl.patroni_version
    wrong = lab.PatroniInstall(cl.install.major, "0.0.1", cl.install.prefix)
    with pytest.raises(RuntimeError, match=r"wants Patroni 0\.0\.1, but .* says '"
                       + cl.patroni_version.replace(".", r"\.")):
        wrong.check()


def test_consul_keys_describe_cluster(patroni_cluster, consul):
    cl = patroni_cluster
    leader = cl.leader()
    kv = consul.kv_get("service/raddb/leader")
    assert kv is not None and kv.value == leader and kv.session, kv
    # the leader key is held by the leader's session named <scope>-<name>
    sess = consul.api("GET", f"/v1/session/info/{kv.session}")
    assert sess and sess[0]["Name"] == f"raddb-{leader}", sess
    for name, info in cl.members().items():
        rec = consul.kv_get(f"service/raddb/members/{name}").json()
        url = urllib.parse.urlsplit(rec["conn_url"])
        assert (url.scheme, url.hostname, url.port) == ("postgres", "127.0.0.1", info["port"]), rec
        assert rec["api_url"] == f"http://127.0.0.1:{info['api_port']}/patroni"
        assert rec["state"] == "running"
        if name == leader:
            assert rec["role"] == cl.primary_role, rec
        else:
            assert rec["role"] == "replica", rec
        assert rec["version"] == cl.patroni_version, rec
    assert consul.kv_get("service/raddb/initialize").value.isdigit()
    cfg = consul.kv_get("service/raddb/config").json()
    # as asked: Patroni 4 rewrites timings that break its ttl rule
    assert (cfg["ttl"], cfg["loop_wait"], cfg["retry_timeout"]) == (20, 2, cl.retry_timeout)
    # register_service: true -> Consul service raddb, tags by role
    def tags_ok():
        svcs = consul.services()
        return all(
            f"raddb/{n}" in svcs
            and ("primary" in svcs[f"raddb/{n}"]["Tags"]) == (n == leader)
            for n in cl.names)
    lab.wait_until(tags_ok, 30, 0.5, "service registrations")
    prim = consul.health_service("raddb", tag="primary")
    assert [e["Service"]["Port"] for e in prim] == [cl.members()[leader]["port"]]


def test_replication(patroni_cluster):
    cl = patroni_cluster
    leader = cl.leader()
    with cl.connect(leader, autocommit=True) as conn:
        conn.execute("create table if not exists lab_t (id serial primary key, who text, "
                     "at timestamptz default now())")
        conn.execute("insert into lab_t (who) values ('replication-test')")
    for r in cl.names:
        if r == leader:
            continue
        def seen(r=r):
            with cl.connect(r, autocommit=True) as c:
                return c.execute("select count(*) from lab_t where who = 'replication-test'"
                                 ).fetchone()[0] == 1
        lab.wait_until(seen, 30, 0.2, f"row replicated to {r}")


def test_switchover(patroni_cluster, consul):
    cl = patroni_cluster
    cl.wait_healthy(60)
    old = cl.leader()
    old_kv = cl.leader_kv()
    with cl.connect(old, autocommit=True) as conn:
        conn.execute("create table if not exists lab_t (id serial primary key, who text, "
                     "at timestamptz default now())")
        conn.execute("insert into lab_t (who) values ('before-switchover')")
    candidate = sorted(n for n in cl.names if n != old)[0]
    with lab.KeyRecorder(consul, cl.leader_key) as rec:
        res = cl.switchover(candidate=candidate)
        lab.wait_until(lambda: rec.events and rec.events[-1][1] == res["new"], 30, 0.05,
                       "the recorder sees the new leader key")
    new = res["new"]
    assert new == candidate != old
    assert cl.leader() == new
    values = [v for _, v, _ in rec.events]
    assert values[0] == old and values[-1] == new, rec.events
    new_kv = cl.leader_kv()
    assert new_kv.session and new_kv.session != old_kv.session
    gaps = rec.gaps()
    gap = sum(d for _, d in gaps if d is not None)
    lab.record_timing("switchover_total(POST->new leader writable)", res["seconds"])
    lab.record_timing("switchover_leader_key_gap", gap)
    lab.record_timing("switchover_key_sequence", " -> ".join(str(v) for v in values))
    # writes continue on the new primary, and earlier writes are there
    with psycopg.connect(cl.dsn(new), autocommit=True) as conn:
        assert conn.execute("select pg_is_in_recovery()").fetchone()[0] is False
        conn.execute("insert into lab_t (who) values ('after-switchover')")
        assert conn.execute("select count(*) from lab_t where who in "
                            "('before-switchover', 'after-switchover')").fetchone()[0] == 2
    # the old primary comes back as a read-only replica
    def old_is_replica():
        with psycopg.connect(cl.dsn(old, connect_timeout=2), autocommit=True) as c:
            return c.execute("select pg_is_in_recovery()").fetchone()[0]
    lab.wait_until(old_is_replica, 60, 0.2, f"{old} back as a replica")
    with psycopg.connect(cl.dsn(old), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("insert into lab_t (who) values ('must-fail')")
    t0 = time.monotonic()
    cl.wait_healthy(90)
    lab.record_timing("switchover_old_primary_rejoined", time.monotonic() - t0)


def test_switchover_patronictl(patroni_cluster, consul):
    cl = patroni_cluster
    cl.wait_healthy(60)
    old = cl.leader()
    with lab.KeyRecorder(consul, cl.leader_key) as rec:
        res = cl.switchover(use_patronictl=True)
        lab.wait_until(lambda: rec.events and rec.events[-1][1] == res["new"], 30, 0.05,
                       "the recorder sees the new leader key")
    assert res["status"] == 0 and res["new"] != old, res
    assert [v for _, v, _ in rec.events][0] == old and rec.events[-1][1] == res["new"]
    assert cl.leader_address() == ("127.0.0.1", cl.members()[res["new"]]["port"])
    lab.record_timing("switchover_patronictl_total", res["seconds"])
    with psycopg.connect(cl.dsn(res["new"]), autocommit=True) as conn:
        conn.execute("insert into lab_t (who) values ('after-patronictl-switchover')")
    cl.wait_healthy(90)


def test_pause_keeps_leader_key(patroni_cluster, consul):
    cl = patroni_cluster
    leader = cl.leader()
    cl.pause()
    try:
        assert consul.kv_get(cl.member_key(leader)).json().get("pause") is True
        assert cl.leader() == leader
    finally:
        cl.resume()
    assert consul.kv_get(cl.member_key(leader)).json().get("pause") is None
    cl.wait_healthy(60)


def test_kill9_primary_fails_over(patroni_cluster, consul):
    cl = patroni_cluster
    cl.wait_healthy(60)
    old = cl.leader()
    with lab.KeyRecorder(consul, cl.leader_key) as rec:
        info = cl.kill9_primary()
        assert info["name"] == old
        assert not lab.pid_alive(info["patroni_pid"]) and not lab.pid_alive(info["postmaster_pid"])
        new = cl.wait_for_leader(not_in=[old], timeout=cl.ttl + 30)
    elapsed = time.monotonic() - info["time"]
    key_gone = next((t for t, v, _ in rec.events if v is None), None)
    lab.record_timing("kill9_new_writable_leader", elapsed)
    if key_gone:
        lab.record_timing("kill9_leader_key_expired_after", key_gone - info["time"])
    # how long it took is recorded above (bench/ compares speed); the wait
    # for the new leader is bounded by ttl + 30
    assert new != old
    with psycopg.connect(cl.dsn(new), autocommit=True) as conn:
        conn.execute("insert into lab_t (who) values ('after-kill9')")
    # bring the killed member back: it must rejoin as a replica (pg_rewind)
    t0 = time.monotonic()
    cl.start_member(old)
    cl.wait_healthy(120)
    lab.record_timing("kill9_old_primary_rejoined", time.monotonic() - t0)
    assert cl.leader() == new
    def has_row():
        with cl.connect(old, autocommit=True) as c:
            return c.execute("select count(*) from lab_t where who = 'after-kill9'"
                             ).fetchone()[0] == 1
    lab.wait_until(has_row, 30, 0.2, "rejoined member has the new rows")


def test_consul_restart_leader_reacquired(patroni_cluster, consul):
    cl = patroni_cluster
    cl.wait_healthy(60)
    old = cl.leader()
    old_kv = cl.leader_kv()
    t0 = time.monotonic()
    consul.restart()
    t_up = time.monotonic()
    lab.wait_until(lambda: cl.leader(), cl.ttl + 40, 0.05, "leader key re-created")
    t_key = time.monotonic()
    now = cl.leader()
    new_kv = cl.leader_kv()
    lab.record_timing("consul_restart_down", t_up - t0)
    lab.record_timing("consul_restart_leader_key_back_after_agent_up", t_key - t_up)
    lab.record_timing("consul_restart_leader_before_after", f"{old} -> {now}")
    lab.record_timing("consul_restart_leader_modify_index",
                      f"{old_kv.modify_index} -> {new_kv.modify_index}")
    assert new_kv.session and new_kv.session != old_kv.session
    # members re-register their keys too
    lab.wait_until(lambda: all(consul.kv_get(cl.member_key(n)) for n in cl.names), 60, 0.2,
                   "member keys re-created")
    leader = cl.wait_for_leader(timeout=60)
    t_w = time.monotonic()
    lab.record_timing("consul_restart_writable_leader_after_agent_up", t_w - t_up)
    with psycopg.connect(cl.dsn(leader), autocommit=True) as conn:
        conn.execute("insert into lab_t (who) values ('after-consul-restart')")
    cl.wait_healthy(120)
