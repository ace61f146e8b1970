"""server_tls_sslmode = verify-full with an entry of several hosts: each
server connection is verified against the one host it goes to, not the
entry's whole host list."""

import subprocess
from contextlib import ExitStack

import psycopg
import pytest

from conftest import Postgres, _own
from test_plugin_api import sections


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pg_tls(workdir):
    """A PostgreSQL server with a certificate for 127.0.0.1 and 127.0.0.2
    (IP addresses only), signed by a CA of the test's own."""
    d = workdir / "tls"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fork test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=fork test server",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1, IP:127.0.0.2\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)
    (d / "server.key").chmod(0o600)
    _own(d)
    pg = Postgres(workdir / "pg_tls").start()
    with pg.connect() as c:
        c.execute(f"alter system set ssl_cert_file = '{d}/server.crt'")
        c.execute(f"alter system set ssl_key_file = '{d}/server.key'")
        c.execute("alter system set ssl = on")
        c.execute("select pg_reload_conf()")
    pg.ca_file = d / "ca.crt"
    yield pg
    pg.stop()


def start(bouncer, pg, host, extra=""):
    bouncer.write_config(f"app = host={host} port={pg.port} dbname=postgres test_tag=t1",
                         sections=sections(bouncer),
                         extra=f"server_tls_sslmode = verify-full\nserver_tls_ca_file = {pg.ca_file}\n" + extra)
    return bouncer.start()


def tls_hosts(bouncer, n):
    """Open n transactions at once (one server connection each); the
    server address and whether TLS is on, for each."""
    seen = []
    with ExitStack() as stack:
        for _ in range(n):
            c = stack.enter_context(bouncer.connect())
            c.execute("begin")
            seen.append(c.execute("select host(inet_server_addr()), ssl from pg_stat_ssl "
                                  "where pid = pg_backend_pid()").fetchone())
    return sorted(seen)


def test_tls_verify_full_with_a_host_list(bouncer, pg_tls):
    start(bouncer, pg_tls, "127.0.0.1,127.0.0.2")
    assert tls_hosts(bouncer, 2) == [("127.0.0.1", True), ("127.0.0.2", True)]
    assert "not present in server certificate" not in bouncer.log_text()


def test_tls_verify_full_with_plugin_addresses(bouncer, pg_tls):
    start(bouncer, pg_tls, "127.0.0.1")
    assert bouncer.command(f"addresses app 127.0.0.1:{pg_tls.port} 127.0.0.2:{pg_tls.port}") == "1"
    assert tls_hosts(bouncer, 2) == [("127.0.0.1", True), ("127.0.0.2", True)]


def test_tls_verify_full_still_refuses_a_name_not_in_the_certificate(bouncer, pg_tls):
    # the login waiting for its first server is refused after 1 s
    start(bouncer, pg_tls, "localhost", "client_login_timeout = 1\n")
    with pytest.raises(psycopg.OperationalError, match="client_login_timeout"):
        with bouncer.connect() as c:
            c.execute("select 1")
    assert "name `localhost' not present in server certificate" in bouncer.log_text()
