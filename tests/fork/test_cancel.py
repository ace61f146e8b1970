"""Cancel requests reach the server that runs the query: while a plugin
holds the entry, and after the entry moved elsewhere."""

import threading
import time

import psycopg

from test_plugin_api import started, wait_for


def running(pg, text):
    """Whether a backend of pg runs a query containing text."""
    with pg.connect() as c:
        return c.execute("select count(*) from pg_stat_activity where state = 'active' and query like %s "
                         "and pid <> pg_backend_pid()", (f"%{text}%",)).fetchone()[0] > 0


def long_query(conn, seconds):
    """Run pg_sleep(seconds) on conn in a thread; returns (thread, result):
    result gets "canceled" (SQLSTATE 57014) or "finished"."""
    result = {}

    def run():
        try:
            conn.execute(f"select pg_sleep({seconds})")
            result["outcome"] = "finished"
        except psycopg.errors.QueryCanceled:
            result["outcome"] = "canceled"
        except psycopg.Error as e:
            result["outcome"] = f"error: {e}"

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, result


def test_cancel_reaches_a_query_while_the_entry_is_held(bouncer, pg_a):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        th, result = long_query(c, 20)
        assert wait_for(lambda: running(pg_a, "pg_sleep(20)"), 5)
        assert bouncer.command("hold app") == "ok"
        t0 = time.monotonic()
        c.cancel()
        th.join(8)
        assert result.get("outcome") == "canceled", result
        assert time.monotonic() - t0 < 8
        # the hold stops new connections for queries all the same
        assert "held=1" in bouncer.command("lookup app")
        assert not running(pg_a, "pg_sleep(20)")


def test_cancel_connection_under_hold_does_not_become_a_server(bouncer, pg_a):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        th, result = long_query(c, 20)
        assert wait_for(lambda: running(pg_a, "pg_sleep(20)"), 5)
        assert bouncer.command("hold app") == "ok"
        c.cancel()
        th.join(8)
        assert result.get("outcome") == "canceled", result
    # one server, the canceled query's: the cancel's connection was not
    # kept as a new one
    assert wait_for(lambda: "servers=1" in bouncer.command("lookup app"), 3), bouncer.command("lookup app")


def test_cancel_reaches_a_query_on_the_old_address_after_a_move(bouncer, pg_a, pg_b):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        th, result = long_query(c, 20)
        assert wait_for(lambda: running(pg_a, "pg_sleep(20)"), 5)
        # the busy connection stays until released; new ones go to B
        assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
        c.cancel()
        th.join(8)
        assert result.get("outcome") == "canceled", result
        assert int(c.execute("select current_setting('port')").fetchone()[0]) == pg_b.port


def test_cancel_reaches_the_address_of_its_query(bouncer, pg_a, pg_b):
    started(bouncer, pg_a)
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_a.port} 127.0.0.2:{pg_b.port}") == "1"
    with bouncer.connect() as ca, bouncer.connect() as cb:
        tha, ra = long_query(ca, 20)
        assert wait_for(lambda: running(pg_a, "pg_sleep(20)"), 5)
        thb, rb = long_query(cb, 21)
        assert wait_for(lambda: running(pg_b, "pg_sleep(21)"), 5)
        # twice each: round-robin alone would send one of each pair to
        # the other server
        for _ in range(2):
            cb.cancel()
            thb.join(8)
            assert rb.get("outcome") == "canceled", rb
            thb, rb = long_query(cb, 21)
            assert wait_for(lambda: running(pg_b, "pg_sleep(21)"), 5)
        assert running(pg_a, "pg_sleep(20)")
        ca.cancel()
        cb.cancel()
        tha.join(8)
        thb.join(8)
        assert ra.get("outcome") == "canceled" and rb.get("outcome") == "canceled", (ra, rb)
