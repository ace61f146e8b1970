"""The plugin interface of the fork, driven through the test plugin against
real PostgreSQL servers: every hook and API call, and the refusals."""

import os
import signal
import threading
import time

import psycopg
import pytest



def port_of(conn):
    return int(conn.execute("select current_setting('port')").fetchone()[0])


def db_line(pg, extra="test_tag=t1"):
    return f"app = host=127.0.0.1 port={pg.port} dbname=postgres application_name=fork-test {extra}"


def sections(bouncer, **keys):
    body = "".join(f"{k} = {v}\n" for k, v in keys.items())
    return f"[testplugin]\ncontrol_dir = {bouncer.control}\n{body}"


def started(bouncer, pg, **keys):
    bouncer.write_config(db_line(pg), sections=sections(bouncer, **keys))
    return bouncer.start()


def cl_waiting(bouncer, db):
    """Clients of db waiting in its pool (SHOW POOLS)."""
    with psycopg.connect(host="127.0.0.1", port=bouncer.port, user="postgres", dbname="pgbouncer",
                         autocommit=True, connect_timeout=5) as c:
        cur = c.execute("show pools", prepare=False)
        names = [d.name for d in cur.description]
        return sum(r[names.index("cl_waiting")] for r in cur.fetchall() if r[0] == db)


def wait_for(pred, timeout=5.0, step=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


class Writer(threading.Thread):
    """Runs one-statement transactions through the fork until stopped."""

    def __init__(self, bouncer):
        super().__init__(daemon=True)
        self.bouncer = bouncer
        self.stop_evt = threading.Event()
        self.ports = []
        self.errors = []

    def run(self):
        with self.bouncer.connect() as c:
            while not self.stop_evt.is_set():
                try:
                    self.ports.append(port_of(c))
                    c.execute("insert into t (v) values ('w')")
                except psycopg.Error as e:
                    self.errors.append(str(e))
                time.sleep(0.005)

    def stop(self):
        self.stop_evt.set()
        self.join(10)


def test_version_names_fork_and_api(bouncer):
    from conftest import FORK
    import subprocess
    out = subprocess.run([str(FORK), "--version"], capture_output=True, text=True, check=True).stdout
    assert "pgbouncer-consul" in out.splitlines()[0]
    assert "plugin API 2" in out.splitlines()[0]
    # SHOW VERSION says the same (upstream's test_show_version relies on it)
    bouncer.write_config("", plugins="")
    bouncer.start()
    assert bouncer.admin("show version")[0][0] == out.splitlines()[0]


def test_address_swap_under_load(bouncer, pg_a, pg_b):
    started(bouncer, pg_a)
    w = Writer(bouncer)
    w.start()
    assert wait_for(lambda: len(w.ports) > 20)
    assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
    n = len(w.ports)
    assert wait_for(lambda: len(w.ports) > n + 20)
    w.stop()
    assert w.errors == []
    # every statement after the swap ran on B, none on A
    after = w.ports[n + 1:]
    assert after and set(after) == {pg_b.port}
    # the idle server connections to A were closed
    assert wait_for(lambda: pg_a.bouncer_backends() == 0, 3)
    assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "0"
    assert bouncer.command("address nosuchdb 127.0.0.1 5432") == "-1"
    row = [r for r in bouncer.admin("show databases") if r[0] == "app"][0]
    assert row[1] == "127.0.0.1" and row[2] == pg_b.port
    assert "address changed from 127.0.0.1:%d to 127.0.0.1:%d" % (pg_a.port, pg_b.port) in bouncer.log_text()


def test_swap_clears_login_retry_backoff(bouncer, pg_a, pg_b):
    # point the entry at a dead port first: the login fails, and stock
    # PgBouncer would wait server_login_retry (here an hour) before trying
    # again, so a login that gets through at all (connect_timeout bounds
    # the wait) shows the back-off was cleared; no clock is read
    dead = pg_a.port + 1 if pg_a.port + 1 != pg_b.port else pg_a.port + 2
    bouncer.write_config(f"app = host=127.0.0.1 port={dead} dbname=postgres test_tag=t1",
                         sections=sections(bouncer), login_retry=3600)
    bouncer.start()
    with pytest.raises(psycopg.OperationalError):
        with bouncer.connect() as c:
            c.execute("select 1")
    assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
    with bouncer.connect() as c:
        assert port_of(c) == pg_b.port


def test_hold_and_release(bouncer, pg_a):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        port_of(c)
    bouncer.admin("reconnect app")
    assert wait_for(lambda: pg_a.bouncer_backends() == 0, 5)
    assert bouncer.command("hold app") == "ok"
    done = threading.Event()
    result = {}

    def query():
        with bouncer.connect() as c:
            result["port"] = port_of(c)
        done.set()

    th = threading.Thread(target=query, daemon=True)
    th.start()
    assert not done.wait(1.5), "query ran while the database was held"
    assert "held=1" in bouncer.command("lookup app")
    assert "waiting=1" in bouncer.command("lookup app")
    assert pg_a.bouncer_backends() == 0, "a server connection was launched while held"
    assert bouncer.command("release app") == "ok"
    assert done.wait(5)
    assert result["port"] == pg_a.port
    assert bouncer.command("hold nosuchdb") == "error"


def test_fail_waiting_keeps_client_connected(bouncer, pg_a):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        port_of(c)
        assert bouncer.command("hold app") == "ok"
        errors = []

        def query():
            try:
                c.execute("select 1")
            except psycopg.Error as e:
                errors.append(e)

        th = threading.Thread(target=query, daemon=True)
        th.start()
        assert wait_for(lambda: "waiting=1" in bouncer.command("lookup app"), 3)
        assert bouncer.command("fail app no leader for test scope") == "1"
        th.join(5)
        assert len(errors) == 1 and "no leader for test scope" in str(errors[0])
        assert errors[0].sqlstate == "57P03"
        assert bouncer.command("release app") == "ok"
        # the same connection is still usable, simple and extended protocol
        assert port_of(c) == pg_a.port
        assert c.execute("select %s::int", (41,)).fetchone()[0] == 41


def test_fail_waiting_extended_protocol(bouncer, pg_a):
    started(bouncer, pg_a)
    with bouncer.connect() as c:
        port_of(c)
        assert bouncer.command("hold app") == "ok"
        errors = []

        def query():
            try:
                c.execute("select %s::int", (1,))
            except psycopg.Error as e:
                errors.append(e)

        th = threading.Thread(target=query, daemon=True)
        th.start()
        assert wait_for(lambda: "waiting=1" in bouncer.command("lookup app"), 3)
        assert bouncer.command("fail app held by test") == "1"
        th.join(5)
        assert len(errors) == 1 and "held by test" in str(errors[0])
        bouncer.command("release app")
        assert c.execute("select %s::int", (7,)).fetchone()[0] == 7


def test_login_waiting_for_first_server_served_after_release(bouncer, pg_a):
    # no server yet: the login itself waits for the pool's first server
    started(bouncer, pg_a)
    assert bouncer.command("hold app") == "ok"
    done = threading.Event()
    result = {}

    def login():
        with bouncer.connect() as c:
            result["port"] = port_of(c)
        done.set()

    threading.Thread(target=login, daemon=True).start()
    assert not done.wait(1.5), "login completed while held"
    assert pg_a.bouncer_backends() == 0
    assert bouncer.command("release app") == "ok"
    assert done.wait(5), "a login waiting for the first server was not served after release"
    assert result["port"] == pg_a.port


def test_fail_waiting_refuses_login_waiting_for_first_server(bouncer, pg_a):
    started(bouncer, pg_a)
    assert bouncer.command("hold app") == "ok"
    errors = []

    def login():
        try:
            with bouncer.connect() as c:
                c.execute("select 1")
        except psycopg.Error as e:
            errors.append(str(e))

    th = threading.Thread(target=login, daemon=True)
    th.start()
    # the login is queued, waiting for its first server
    assert wait_for(lambda: cl_waiting(bouncer, "app") == 1, 10)
    assert bouncer.command("fail app no server for this login") == "1"
    th.join(5)
    assert len(errors) == 1 and "no server for this login" in errors[0]


def test_reload_keeps_runtime_address(bouncer, pg_a, pg_b):
    started(bouncer, pg_a)
    assert bouncer.command(f"address app 127.0.0.1 {pg_b.port}") == "1"
    with bouncer.connect() as c:
        assert port_of(c) == pg_b.port
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        bouncer.admin("reload")
        # same address and the same server connection: nothing reconnected
        assert port_of(c) == pg_b.port
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    reloads = dict(bouncer.admin("show testplugin"))["reloads"]
    assert reloads == "2"
    # the file's own address for the entry changes: the file wins
    bouncer.write_config(db_line(pg_a).replace("host=127.0.0.1", "host=127.0.0.2"), sections=sections(bouncer))
    bouncer.admin("reload")
    with bouncer.connect() as c:
        assert port_of(c) == pg_a.port
        assert c.execute("select host(inet_server_addr())").fetchone()[0] == "127.0.0.2"


def test_show_registered_by_plugin(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a, "test_tag=alpha") + "\nother = host=127.0.0.1 dbname=postgres port=%d test_tag=beta_2" % pg_a.port,
                         sections=sections(bouncer))
    bouncer.start()
    rows = dict(bouncer.admin("show testplugin"))
    assert rows["app"] == "alpha" and rows["other"] == "beta_2"
    assert rows["reloads"] == "1"
    assert rows["last_check"] is None
    # built-in SHOW commands still answer
    assert bouncer.admin("show version")[0][0].startswith("PgBouncer 1.24.1")


def test_show_builtin_name_refused(bouncer, pg_a):
    started(bouncer, pg_a)
    # admin.c's own SHOW names, fake_show's included, stay PgBouncer's
    for name in ("pools", "version", "state", "timezone", "client_encoding"):
        assert bouncer.command(f"register_show {name}") == "refused", name
    assert bouncer.admin("show timezone") == [("GMT",)]
    assert bouncer.command("register_show testplugin_extra") == "ok"
    assert dict(bouncer.admin("show testplugin_extra"))["reloads"] == "1"


def test_server_check_refuses_and_retries(bouncer, pg_a):
    started(bouncer, pg_a, check_query="select pg_is_in_recovery()", refuse_value="f")
    done = threading.Event()

    def query():
        try:
            with bouncer.connect() as c:
                c.execute("select 1")
                done.set()
        except psycopg.Error:
            pass

    th = threading.Thread(target=query, daemon=True)
    th.start()
    assert not done.wait(1.0), "a refused server was handed a query"
    rows = dict(bouncer.admin("show testplugin"))
    assert int(rows["refusals"]) >= 2, "refused connections were not retried"
    assert rows["last_check"] == "f"
    assert "refused server" in bouncer.log_text()
    # a refusal is not a login failure: clients are not failed with the
    # cached login error, and accepting again serves the waiting query
    bouncer.write_config(db_line(pg_a), sections=sections(bouncer, check_query="select pg_is_in_recovery()", refuse_value="t"))
    bouncer.admin("reload")
    assert done.wait(5)
    assert "server login has been failing" not in bouncer.log_text()


def test_server_check_accepts(bouncer, pg_a):
    started(bouncer, pg_a, check_query="select pg_is_in_recovery()", refuse_value="t")
    with bouncer.connect() as c:
        assert port_of(c) == pg_a.port
    rows = dict(bouncer.admin("show testplugin"))
    assert rows["checks"] == "1" and rows["refusals"] == "0" and rows["last_check"] == "f"


def test_bad_plugin_path_stops_startup(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a, ""), plugins="/nonexistent/plugin.so")
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0
    assert 'cannot load plugin "/nonexistent/plugin.so"' in out


def test_not_a_plugin_stops_startup(bouncer, pg_a):
    lib = "/usr/lib/x86_64-linux-gnu/libjson-c.so.5"
    if not os.path.exists(lib):
        import glob
        lib = glob.glob("/usr/lib/*/libjson-c.so.5")[0]
    bouncer.write_config(db_line(pg_a, ""), plugins=lib)
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0
    assert "is not a PgBouncer plugin" in out


def test_api_version_mismatch_stops_startup(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a), sections=sections(bouncer))
    rc, out = bouncer.start(env={"TEST_PLUGIN_API_VERSION": "99"}, expect_fail=True)
    assert rc != 0
    assert "was built for plugin API 99, this PgBouncer has plugin API 2" in out


def test_bad_claimed_key_at_startup(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a, "test_tag=Bad!"), sections=sections(bouncer))
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0
    assert 'database app: test_tag: invalid test_tag "Bad!"' in out
    assert f"in configuration ({bouncer.ini}:2)" in out


def test_bad_section_value_at_startup(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a), sections="[testplugin]\ncontrol_dir = relative/dir\n")
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0
    assert '[testplugin] control_dir: must be an absolute path, not "relative/dir"' in out
    assert "parameter control_dir in configuration" in out


def test_unclaimed_keys_fail_as_upstream(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a, "test_tag=x nosuchkey=1"), sections=sections(bouncer))
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0 and "unrecognized connection parameter: nosuchkey" in out
    bouncer.write_config(db_line(pg_a), sections=sections(bouncer) + "[nosuchsection]\na = b\n")
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0 and 'invalid section "nosuchsection"' in out


def test_plugin_reload_refusal_at_startup(bouncer, pg_a):
    # the plugin refuses the configuration as a whole
    bouncer.write_config(db_line(pg_a), sections=sections(bouncer, refuse_config="yes"))
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0 and "configuration refused: refuse_config is set" in out


def test_plugin_reload_refusal_keeps_previous(bouncer, pg_a):
    started(bouncer, pg_a)
    bouncer.write_config(db_line(pg_a, "test_tag=t9"), sections=sections(bouncer, refuse_config="yes"))
    bouncer.admin("reload")
    assert "configuration refused: refuse_config is set" in bouncer.log_text()
    assert dict(bouncer.admin("show testplugin"))["app"] == "t1"


def test_bad_claimed_key_on_reload_keeps_previous(bouncer, pg_a):
    started(bouncer, pg_a)
    assert dict(bouncer.admin("show testplugin"))["app"] == "t1"
    bouncer.write_config(db_line(pg_a, "test_tag=t2") + "\nbroken = host=127.0.0.1 test_tag=NOPE", sections=sections(bouncer))
    # as for any bad value in 1.24, RELOAD logs the error and keeps going
    bouncer.admin("reload")
    assert "config file loading failed" in bouncer.log_text()
    rows = dict(bouncer.admin("show testplugin"))
    assert rows["app"] == "t1" and rows["reloads"] == "1"
    assert 'database broken: test_tag: invalid test_tag "NOPE"' in bouncer.log_text()
    # a good file is taken again
    bouncer.write_config(db_line(pg_a, "test_tag=t3"), sections=sections(bouncer))
    bouncer.admin("reload")
    assert dict(bouncer.admin("show testplugin"))["app"] == "t3"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_shutdown_hook_runs_on_signals(bouncer, pg_a, sig):
    started(bouncer, pg_a)
    bouncer.stop(sig)
    assert (bouncer.control / "shutdown").read_text() == "shutdown called\n"


def test_fork_without_plugins_refuses_plugin_keys(bouncer, pg_a):
    bouncer.write_config(db_line(pg_a), plugins="")
    rc, out = bouncer.start(expect_fail=True)
    assert rc != 0 and "unrecognized connection parameter: test_tag" in out


def show_config(bouncer, key):
    return [r[1] for r in bouncer.admin("show config") if r[0] == key][0]


def test_get_setting_as_show_config_prints_it(bouncer, pg_a):
    started(bouncer, pg_a)
    assert bouncer.command("setting query_wait_timeout") == "value=120" == "value=" + show_config(bouncer, "query_wait_timeout")
    assert bouncer.command("setting pool_mode") == "value=transaction"
    assert bouncer.command("setting listen_port") == f"value={bouncer.port}"
    # an unset one (NULL in SHOW CONFIG) is empty
    assert show_config(bouncer, "auth_user") is None
    assert bouncer.command("setting auth_user") == "value="
    # the current value: SET on the console, then RELOAD of the file
    bouncer.admin("set query_wait_timeout = '0.5'")
    assert bouncer.command("setting query_wait_timeout") == "value=0.5"
    bouncer.write_config(db_line(pg_a), sections=sections(bouncer), extra="query_wait_timeout = 45\n")
    bouncer.admin("reload")
    assert bouncer.command("setting query_wait_timeout") == "value=45"


def test_get_setting_unknown_or_too_long(bouncer, pg_a):
    started(bouncer, pg_a)
    assert bouncer.command("setting no_such_setting") == "false"
    # a plugin's own section is not PgBouncer's
    assert bouncer.command("setting control_dir") == "false"
    # "120" needs 4 bytes with its NUL
    assert bouncer.command("setting query_wait_timeout 3") == "false"
    assert bouncer.command("setting query_wait_timeout 4") == "value=120"
