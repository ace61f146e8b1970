"""The PostgreSQL wire protocol from a raw socket, as an attacker speaks it:
startup packets and messages built byte by byte, a SCRAM-SHA-256 client, and
a fake PostgreSQL server whose answers each test writes.  Loopback only."""

import base64
import hashlib
import hmac
import os
import socket
import struct
import threading

PROTOCOL_3 = 196608
SSL_REQUEST = 80877103


def message(kind, body=b""):
    """One protocol message: a type byte, then the length and the body."""
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return (s if isinstance(s, bytes) else s.encode()) + b"\0"


def startup_packet(params, version=PROTOCOL_3):
    body = struct.pack("!I", version) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


def connect(port, timeout=10):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.settimeout(timeout)
    return s


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def read_message(sock):
    """(type, body) of the next message, or None at end of stream."""
    head = recv_exact(sock, 5)
    if head is None:
        return None
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    body = recv_exact(sock, length - 4)
    if body is None:
        return None
    return kind, body


def read_until(sock, kinds):
    """Messages up to and including the first whose type is in kinds, or up
    to the end of the stream; returns them all."""
    seen = []
    while True:
        try:
            m = read_message(sock)
        except (ConnectionResetError, socket.timeout):
            return seen
        if m is None:
            return seen
        seen.append(m)
        if m[0] in kinds:
            return seen


def auth_code(m):
    return struct.unpack("!I", m[1][:4])[0] if m and m[0] == b"R" else None


def error_text(msgs):
    """The M field of the first ErrorResponse among msgs, or None."""
    for kind, body in msgs:
        if kind == b"E":
            for field in body.split(b"\0"):
                if field[:1] == b"M":
                    return field[1:].decode(errors="replace")
    return None


# --- SCRAM-SHA-256, client and server sides (RFC 5802 / 7677) -------------

def _hmac(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def scram_secret(password, salt=None, iterations=4096):
    """A PostgreSQL SCRAM-SHA-256 verifier for password."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
    server = _hmac(salted, b"Server Key")
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


class ScramClient:
    """The client half of one SCRAM exchange."""

    def __init__(self, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"

    def initial_response(self):
        data = ("n,," + self.first_bare).encode()
        return message(b"p", cstr("SCRAM-SHA-256") + struct.pack("!I", len(data)) + data)

    def final_response(self, server_first, with_nonce=True):
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(),
                                     base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = _hmac(salted, b"Client Key")
        without_proof = "c=biws,r=" + attrs["r"] if with_nonce else "c=biws"
        auth_message = ",".join([self.first_bare, server_first, without_proof]).encode()
        signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        return message(b"p", (without_proof + ",p=" + base64.b64encode(proof).decode()).encode())


def sasl_data(m):
    """The SCRAM text inside an AuthenticationSASLContinue/Final message."""
    return m[1][4:].decode()


# --- a fake PostgreSQL server ----------------------------------------------

def login_ok_messages():
    """What a server sends after authentication: AuthenticationOk, the usual
    ParameterStatus set, BackendKeyData and ReadyForQuery."""
    out = message(b"R", struct.pack("!I", 0))
    for k, v in [("server_version", "15.0"), ("client_encoding", "UTF8"), ("server_encoding", "UTF8"),
                 ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC"), ("integer_datetimes", "on"),
                 ("standard_conforming_strings", "on")]:
        out += message(b"S", cstr(k) + cstr(v))
    return out + message(b"K", struct.pack("!II", 1, 2)) + message(b"Z", b"I")


def read_startup(conn):
    """The startup packet's parameters (answering SSLRequest with N)."""
    while True:
        head = recv_exact(conn, 8)
        if head is None:
            return None
        length, code = struct.unpack("!II", head)
        if code == SSL_REQUEST:
            conn.sendall(b"N")
            continue
        body = recv_exact(conn, length - 8) or b""
        parts = body.split(b"\0")
        return {parts[i].decode(): parts[i + 1].decode() for i in range(0, len(parts) - 1, 2) if parts[i]}


class FakeServer:
    """A listener on 127.0.0.1 that runs handler(conn, startup_params) in a
    thread for every connection the pooler makes to it."""

    def __init__(self, handler):
        self.handler = handler
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.startups = []
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(60)
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            params = read_startup(conn)
            if params is None:
                return
            self.startups.append(params)
            self.handler(conn, params)
        except OSError:
            pass

    def close(self):
        self.stopping = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass
