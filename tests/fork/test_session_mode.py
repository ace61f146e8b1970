"""What a pool_mode=session client gets when a plugin holds or moves its
entry.  A session keeps its server connection from login to logout, so a
hold does not stop its queries.  When the entry moves (db_set_address or
db_set_addresses without the session's address), the session ends at the
end of its current transaction, as server_fast_close = 1 would make it,
and the client, reconnecting, lands on the new address."""

import threading
import time

import psycopg
import pytest

from test_plugin_api import port_of, sections, wait_for


def start(bouncer, pg, extra=""):
    bouncer.write_config(f"app = host=127.0.0.1 port={pg.port} dbname=postgres application_name=fork-test "
                         "pool_mode=session test_tag=t1", sections=sections(bouncer), extra=extra)
    return bouncer.start()


def backend_pid(conn):
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def ended(conn, timeout=3.0):
    """Wait until the fork has closed conn's session: a statement on it
    then fails with the connection closed.  True if it did in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            conn.execute("select 1")
        except psycopg.OperationalError:
            return True
    return False


@pytest.fixture
def read_only_a(pg_a):
    """Turn pg_a into a read-only server for existing sessions too, as a
    demoted old primary is; undone after the test."""
    def demote():
        with pg_a.connect() as c:
            c.execute("alter system set default_transaction_read_only = on")
            c.execute("select pg_reload_conf()")

    yield demote
    with pg_a.connect() as c:
        c.execute("alter system reset default_transaction_read_only")
        c.execute("select pg_reload_conf()")


def test_session_keeps_its_server_while_held(bouncer, pg_a):
    start(bouncer, pg_a)
    with bouncer.connect() as s:
        pid = backend_pid(s)
        assert bouncer.command("hold app") == "ok"
        # the session's queries go on: the hold stops new servers only
        assert backend_pid(s) == pid and port_of(s) == pg_a.port
        # a new session logs in (the pool has its welcome message) and
        # its first query waits for the release
        done = threading.Event()

        def other():
            with bouncer.connect() as c:
                port_of(c)
            done.set()

        threading.Thread(target=other, daemon=True).start()
        assert not done.wait(1.0), "a new session got a server while held"
        assert "waiting=1" in bouncer.command("lookup app")
        assert bouncer.command("release app") == "ok"
        assert done.wait(5)


def test_session_on_a_removed_address_ends_between_transactions(bouncer, pg_a, pg_b, read_only_a):
    start(bouncer, pg_a)
    with bouncer.connect() as s:
        s.execute("insert into t (v) values ('session')")
        assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
        # the old primary is demoted and stays up: a session left on it
        # would fail every write from now on
        read_only_a()
        assert ended(s), "the session stayed on the old address"
    assert "database configuration changed" in bouncer.log_text()
    # reconnecting, the client writes to the new address
    with bouncer.connect() as s:
        assert port_of(s) == pg_b.port
        s.execute("insert into t (v) values ('session')")


def test_session_in_a_transaction_finishes_it_first(bouncer, pg_a, pg_b):
    start(bouncer, pg_a)
    with bouncer.connect() as s:
        s.execute("begin")
        s.execute("insert into t (v) values ('before the move')")
        pid = backend_pid(s)
        assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
        time.sleep(0.7)
        # the transaction goes on where it began, and commits there
        s.execute("insert into t (v) values ('after the move')")
        assert backend_pid(s) == pid and port_of(s) == pg_a.port
        s.execute("commit")
        assert ended(s)
    with pg_a.connect() as c:
        assert c.execute("select count(*) from t where v in ('before the move', 'after the move')").fetchone()[0] >= 2
    with bouncer.connect() as s:
        assert port_of(s) == pg_b.port


def test_session_to_an_address_still_listed_stays(bouncer, pg_a, pg_b):
    start(bouncer, pg_a)
    with bouncer.connect() as s:
        pid = backend_pid(s)
        assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
        time.sleep(0.7)
        assert backend_pid(s) == pid


def test_session_server_fast_close_ends_it_too(bouncer, pg_a, pg_b):
    # upstream's server_fast_close already ends sessions on a changed
    # entry between transactions; the move does the same without it
    start(bouncer, pg_a, "server_fast_close = 1\n")
    with bouncer.connect() as s:
        port_of(s)
        assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
        assert ended(s)
    with bouncer.connect() as s:
        assert port_of(s) == pg_b.port
