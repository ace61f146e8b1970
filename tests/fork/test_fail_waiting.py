"""Failing waiting queries (the plugin API's fail_waiting): the client must
stay in step with the protocol and be timed afresh when it retries."""

import signal
import threading
import time

import psycopg
import pytest

from test_plugin_api import db_line, port_of, sections, wait_for


def start(bouncer, pg, extra=""):
    bouncer.write_config(db_line(pg), sections=sections(bouncer), extra=extra)
    return bouncer.start()


def query_in_thread(conn, sql, params=None, **kw):
    """Run sql on conn in a thread; returns (thread, errors list)."""
    errors = []

    def run():
        try:
            conn.execute(sql, params, **kw)
        except psycopg.Error as e:
            errors.append(e)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th, errors


def finished(th, bouncer, what):
    """Wait (bounded) for the query thread; if the client hangs, kill the
    fork so that its connection fails and the test can end, then fail."""
    th.join(10)
    if th.is_alive():
        bouncer.stop(signal.SIGKILL)
        th.join(10)
        pytest.fail(what)


def waiting(bouncer):
    return "waiting=1" in bouncer.command("lookup app")


def test_fail_waiting_large_parse_keeps_the_protocol_in_step(bouncer, pg_a):
    # a named Parse larger than pkt_buf is buffered whole for prepared
    # statement tracking: failing it must not skip the bytes after it
    start(bouncer, pg_a)
    with bouncer.connect() as c:
        port_of(c)
        assert bouncer.command("hold app") == "ok"
        big = "select %s::int /* " + "x" * 20000 + " */"
        th, errors = query_in_thread(c, big, (1,), prepare=True)
        assert wait_for(lambda: waiting(bouncer), 5)
        assert bouncer.command("fail app held by test") == "1"
        finished(th, bouncer, "the client hangs: the fork swallowed what followed the Parse")
        assert len(errors) == 1 and "held by test" in str(errors[0]), errors
        assert bouncer.command("release app") == "ok"
        assert c.execute("select %s::int", (7,)).fetchone()[0] == 7
        assert c.execute(big, (8,), prepare=True).fetchone()[0] == 8


def test_fail_waiting_times_a_retry_afresh(bouncer, pg_a):
    # query_wait_timeout counts from when the waiting query began: a retry
    # after a failed query must not inherit the first query's start
    start(bouncer, pg_a, extra="query_wait_timeout = 3\n")
    with bouncer.connect() as c:
        port_of(c)
        assert bouncer.command("hold app") == "ok"
        th, errors = query_in_thread(c, "select 1")
        assert wait_for(lambda: waiting(bouncer), 5)
        assert bouncer.command("fail app no leader yet") == "1"
        finished(th, bouncer, "the failed query never returned")
        assert len(errors) == 1 and "no leader yet" in str(errors[0]), errors
        # more than query_wait_timeout after the first query began ...
        time.sleep(3.5)
        th, errors = query_in_thread(c, "select 2")
        assert wait_for(lambda: waiting(bouncer), 5)
        # ... the retry has waited 1 s of its 3: the janitor (3 runs a
        # second) must leave it alone
        time.sleep(1.0)
        assert "query_wait_timeout" not in bouncer.log_text()
        assert waiting(bouncer)
        assert bouncer.command("fail app no leader yet") == "1"
        finished(th, bouncer, "the failed retry never returned")
        assert len(errors) == 1 and "no leader yet" in str(errors[0]), errors
        assert bouncer.command("release app") == "ok"
        assert c.execute("select 3").fetchone()[0] == 3
