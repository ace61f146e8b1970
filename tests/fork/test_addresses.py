"""An entry pointed at several addresses, each with its own port
(db_set_addresses), and what a change of an entry's addresses does to the
server connections it has: those to an address still listed stay."""

import socket
import threading
from contextlib import ExitStack

import psycopg

from test_plugin_api import port_of, sections, wait_for


def start(bouncer, hosts, port, extra=""):
    bouncer.write_config(f"app = host={hosts} port={port} dbname=postgres application_name=fork-test "
                         f"test_tag=t1 {extra}", sections=sections(bouncer))
    return bouncer.start()


def servers(bouncer):
    """(addr, port, remote_pid) of the entry's server connections."""
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="pgbouncer",
                         autocommit=True, connect_timeout=5) as c:
        cur = c.execute("show servers", prepare=False)
        names = [d.name for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    return {(r["addr"], r["port"], r["remote_pid"]) for r in rows if r["database"] == "app"}


def addresses_of(bouncer, n):
    """Open n transactions at once, so that each needs its own server
    connection; returns (host, port) of each, in the order they got them."""
    seen = []
    with ExitStack() as stack:
        for _ in range(n):
            c = stack.enter_context(bouncer.connect())
            c.execute("begin")
            seen.append(c.execute("select host(inet_server_addr()), current_setting('port')::int").fetchone())
    return seen


def database_row(bouncer):
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="pgbouncer",
                         autocommit=True, connect_timeout=5) as c:
        cur = c.execute("show databases", prepare=False)
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall() if r[0] == "app"][0]


def test_addresses_take_turns_each_on_its_port(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port)
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
    seen = addresses_of(bouncer, 4)
    assert sorted(seen) == [("127.0.0.1", pg_a.port)] * 2 + [("127.0.0.2", pg_b.port)] * 2
    row = database_row(bouncer)
    assert (row["host"], row["port"], row["load_balance_hosts"]) == ("127.0.0.1,127.0.0.2", pg_a.port, "round-robin")
    assert "host=127.0.0.1,127.0.0.2 port=%d" % pg_a.port in bouncer.command("lookup app")
    assert ("database app: address changed from 127.0.0.1:%d to 127.0.0.1:%d,127.0.0.2:%d"
            % (pg_a.port, pg_a.port, pg_b.port)) in bouncer.log_text()


def test_addresses_same_list_is_no_change_another_order_is(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port)
    a, b = f"127.0.0.1:{pg_a.port}", f"127.0.0.2:{pg_b.port}"
    assert bouncer.command(f"addresses app {a} {b}") == "1"
    addresses_of(bouncer, 2)
    before = servers(bouncer)
    assert bouncer.command(f"addresses app {a} {b}") == "0"
    # the order matters to load_balance_hosts = disable: a change, and
    # every connection stays, being to an address still listed
    assert bouncer.command(f"addresses app {b} {a}") == "1"
    assert database_row(bouncer)["port"] == pg_b.port
    assert servers(bouncer) == before


def test_addresses_disable_keeps_to_the_first(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port, "load_balance_hosts=disable")
    assert bouncer.command(f"addresses app 127.0.0.2:{pg_b.port} 127.0.0.1:{pg_a.port}") == "1"
    assert addresses_of(bouncer, 3) == [("127.0.0.2", pg_b.port)] * 3


def test_address_change_keeps_servers_to_unchanged_hosts(bouncer, pg_a):
    # a comma list from the file, one host dropped by db_set_address: the
    # connections to the host that stays are kept (before, every idle
    # connection of the entry was closed)
    start(bouncer, "127.0.0.1,127.0.0.2", pg_a.port)
    addresses_of(bouncer, 4)
    before = servers(bouncer)
    assert {s[0] for s in before} == {"127.0.0.1", "127.0.0.2"}
    assert bouncer.command(f"address app 127.0.0.2 {pg_a.port}") == "1"
    kept = {s for s in before if s[0] == "127.0.0.2"}
    assert wait_for(lambda: servers(bouncer) == kept, 3), (before, servers(bouncer))
    # a transaction now runs on one of them, no new connection
    with bouncer.connect() as c:
        assert c.execute("select pg_backend_pid()").fetchone()[0] in {s[2] for s in kept}


def test_addresses_change_keeps_servers_to_listed_addresses(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port)
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
    addresses_of(bouncer, 4)
    before = servers(bouncer)
    # same host, other port: not the same address
    assert bouncer.command(f"addresses app 127.0.0.2:{pg_b.port} 127.0.0.1:{pg_b.port}") == "1"
    kept = {s for s in before if s[0] == "127.0.0.2"}
    assert len(kept) == 2
    assert wait_for(lambda: servers(bouncer) == kept, 3), (before, servers(bouncer))
    assert wait_for(lambda: pg_a.bouncer_backends() == 0, 3)
    assert {p for _, p in addresses_of(bouncer, 4)} == {pg_b.port}


def test_addresses_busy_server_to_removed_address_closes_when_released(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port)
    with bouncer.connect() as c:
        c.execute("begin")
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        assert bouncer.command(f"addresses app 127.0.0.1:{pg_b.port}") == "1"
        # the transaction goes on where it began
        assert port_of(c) == pg_a.port
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
        c.execute("commit")
    assert wait_for(lambda: pg_a.bouncer_backends() == 0, 3)
    with bouncer.connect() as c:
        assert port_of(c) == pg_b.port


def test_addresses_drop_a_login_to_a_removed_address(bouncer, pg_a):
    # a "server" that accepts the TCP connection and never answers: the
    # fork's login to it stays in progress until the list drops it
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(8)
    mute.settimeout(10)
    try:
        bouncer.write_config(f"app = host=127.0.0.1 port={mute.getsockname()[1]} dbname=postgres "
                             f"application_name=fork-test test_tag=t1",
                             sections=sections(bouncer), extra="server_connect_timeout = 60\n")
        bouncer.start()
        done = threading.Event()
        result = {}

        def query():
            with bouncer.connect() as c:
                result["port"] = port_of(c)
            done.set()

        threading.Thread(target=query, daemon=True).start()
        peer, _ = mute.accept()
        assert not done.wait(0.5)
        assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port}") == "1"
        assert done.wait(5), "the login to the removed address was not dropped"
        assert result["port"] == pg_a.port
        peer.settimeout(5)
        while peer.recv(4096):
            pass
        peer.close()
    finally:
        mute.close()


def test_addresses_bad_arguments(bouncer, pg_a):
    start(bouncer, "127.0.0.1", pg_a.port)
    good = f"127.0.0.1:{pg_a.port}"
    for args in ("", "-:5432", "none:5432", "a,b:5432", "127.0.0.1:0", "127.0.0.1:65536",
                 f"{good} {good}"):
        assert bouncer.command(f"addresses app {args}") == "-1", args
    assert bouncer.command(f"addresses nosuchdb {good}") == "-1"
    # the comma list of db_set_address may not have an empty host either
    assert bouncer.command(f"address app 127.0.0.1,,127.0.0.2 {pg_a.port}") == "-1"
    assert bouncer.command(f"address app 127.0.0.1,127.0.0.1 {pg_a.port}") == "-1"
    assert "host=127.0.0.1 port=%d" % pg_a.port in bouncer.command("lookup app")


def test_addresses_survive_reload(bouncer, pg_a, pg_b):
    start(bouncer, "127.0.0.1", pg_a.port)
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
    addresses_of(bouncer, 2)
    before = servers(bouncer)
    bouncer.admin("reload")
    assert servers(bouncer) == before
    assert database_row(bouncer)["host"] == "127.0.0.1,127.0.0.2"
    assert sorted(addresses_of(bouncer, 2)) == [("127.0.0.1", pg_a.port), ("127.0.0.2", pg_b.port)]
    # the file's own address for the entry changes: the file wins
    bouncer.write_config(f"app = host=127.0.0.2 port={pg_a.port} dbname=postgres application_name=fork-test "
                         "test_tag=t1", sections=sections(bouncer))
    bouncer.admin("reload")
    assert addresses_of(bouncer, 2) == [("127.0.0.2", pg_a.port)] * 2


def test_server_check_told_each_address(bouncer, pg_a, pg_b):
    bouncer.write_config(f"app = host=127.0.0.1 port={pg_a.port} dbname=postgres test_tag=t1",
                         sections=sections(bouncer, check_query="select pg_is_in_recovery()", refuse_value="t"))
    bouncer.start()
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
    with bouncer.connect() as c1:
        c1.execute("begin")
        assert dict(bouncer.admin("show testplugin"))["last_check_addr"] == f"127.0.0.1:{pg_a.port}"
        with bouncer.connect() as c2:
            c2.execute("begin")
            assert dict(bouncer.admin("show testplugin"))["last_check_addr"] == f"127.0.0.2:{pg_b.port}"


def test_server_check_told_the_host_as_named(bouncer, pg_a):
    # a name, not the address it resolved to
    bouncer.write_config(f"app = host=localhost port={pg_a.port} dbname=postgres test_tag=t1",
                         sections=sections(bouncer, check_query="select pg_is_in_recovery()", refuse_value="t"))
    bouncer.start()
    with bouncer.connect() as c:
        assert port_of(c) == pg_a.port
    assert dict(bouncer.admin("show testplugin"))["last_check_addr"] == f"localhost:{pg_a.port}"
