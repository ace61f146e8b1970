"""Replication connections through the fork, where a change of their
entry closes them."""

import time

import psycopg

from test_plugin_api import sections, wait_for


def test_fast_close_closes_a_replication_server_once(bouncer, pg_a):
    # 1.24.1 closed it twice (server_fast_close, then the replication
    # check) and stopped with "bad server state"
    bouncer.write_config(f"app = host=127.0.0.1 port={pg_a.port} dbname=postgres test_tag=t1",
                         sections=sections(bouncer), extra="server_fast_close = 1\n")
    bouncer.start()
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="app",
                         replication="database", autocommit=True, connect_timeout=5) as c:
        assert c.execute("IDENTIFY_SYSTEM").fetchone()
        bouncer.admin("reconnect app")
        assert wait_for(lambda: "closing because: database configuration changed" in bouncer.log_text(), 3)
    time.sleep(0.5)
    assert bouncer.proc.poll() is None, bouncer.log_text()[-2000:]
    assert "bad server state" not in bouncer.log_text()
    assert bouncer.admin("show version")
