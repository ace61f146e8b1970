"""Listeners for the proxy and fault tests: a trap that records every byte a
client sends it and answers nothing, an HTTP forward proxy in front of the
real Consul agent that records the request lines it forwards, a fault proxy
that stands in for the agent and can be switched to answer badly, TCP relays
that can be cut (TcpProxy: closes; PartitionProxy: resets, as a dropped
link does, and lets a test wait for the refused reconnections), and the
process environment that points every proxy variable libcurl reads at a
trap."""

from __future__ import annotations

import http.server
import os
import socket
import threading
import time
import urllib.error
import urllib.request

import lab

# what libcurl reads (it ignores upper-case HTTP_PROXY, set anyway: some tools do not)
PROXY_VARIABLES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY",
                   "all_proxy", "ALL_PROXY")


class AgentAnswerHandler(http.server.BaseHTTPRequestHandler):
    """Request handler of the test proxies in front of the Consul agent:
    quiet, with one way to answer and one way to ask the agent."""

    def log_message(self, *a):
        pass

    def forward(self, opener, url: str):
        """(status, body, X-Consul-Index) of GET url at the agent, with the
        request's own X-Consul-Token and nothing else."""
        req = urllib.request.Request(url, headers={
            k: v for k, v in self.headers.items() if k.lower() == "x-consul-token"})
        try:
            with opener.open(req, timeout=120) as r:
                return r.status, r.read(), r.headers.get("X-Consul-Index")
        except urllib.error.HTTPError as e:
            return e.code, e.read(), e.headers.get("X-Consul-Index")

    def answer(self, status: int, body: bytes, index: str | None = None) -> None:
        try:
            self.send_response(status)
            if index:
                self.send_header("X-Consul-Index", index)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass


def proxy_environment(proxy_url: str, **extra: str) -> dict[str, str]:
    """This process's environment with every proxy variable set to proxy_url
    and no_proxy empty (as good as unset, and it survives being merged into
    another environment), so the machine's no_proxy cannot let a client
    bypass the proxy."""
    env = dict(os.environ)
    env.update({k: proxy_url for k in PROXY_VARIABLES})
    env.update(no_proxy="", NO_PROXY="")
    env.update(extra)
    return env


class ByteRecorder:
    """A TCP listener on 127.0.0.1 (a kernel-chosen port: nothing to race
    for) that accepts every connection, records what arrives until the
    client has sent one request head or closes, then closes without an
    answer.  wait_for() blocks until the recorded bytes satisfy a test."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self.received = b""
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"ByteRecorder(port={self.port}, connections={self.connections}, "
                f"received={self.received[:200]!r})")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._cond:
                self.connections += 1
                self._cond.notify_all()
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c: socket.socket) -> None:
        c.settimeout(10)
        got = b""
        try:
            while b"\r\n\r\n" not in got:
                data = c.recv(65536)
                if not data:
                    break
                got += data
                with self._cond:
                    self.received += data
                    self._cond.notify_all()
        except OSError:
            pass
        c.close()

    def wait_for(self, pred, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: pred(self.received), timeout)

    def reset(self) -> None:
        with self._cond:
            self.connections, self.received = 0, b""

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class ForwardProxy:
    """An HTTP forward proxy on 127.0.0.1 for plain-http URLs, passing each
    request on to the Consul agent it is given (never through a proxy of
    its own) and recording the request line and Proxy-Authorization."""

    def __init__(self, consul_url: str) -> None:
        proxy = self
        self.consul_url = consul_url
        self.request_lines: list[str] = []
        self.proxy_auth: list[str | None] = []
        self._cond = threading.Condition()
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(AgentAnswerHandler):
            def do_GET(self):
                with proxy._cond:
                    proxy.request_lines.append(self.requestline)
                    proxy.proxy_auth.append(self.headers.get("Proxy-Authorization"))
                    proxy._cond.notify_all()
                if not self.path.startswith(proxy.consul_url + "/"):
                    return self.answer(502, b"not the agent")
                try:
                    self.answer(*self.forward(opener, self.path))
                except OSError:
                    self.answer(502, b"agent unreachable")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"ForwardProxy(port={self.port}, requests={self.request_lines[-5:]})"

    def wait_request(self, prefix: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(
                lambda: any(ln.startswith(prefix) for ln in self.request_lines), timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class FaultProxy:
    """An HTTP proxy in front of the real Consul agent at consul_url (the
    plugin's url points here) that can be switched to answer every new
    request itself: "500", "429" or "503" (what Consul's rate limiting
    answers, with a Retry-After of `retry_after` if set), garbage with a good
    index, a 2 MB body, or nothing for longer than the plugin's HTTP
    timeout ("slow"); "pass" forwards.  A request already forwarded when
    the mode changes finishes as the agent answers it.  Counts requests and
    records, for each one the fault answered, when it arrived and when its
    answer started (monotonic clock)."""

    STATUS_BODIES = {"500": b"No cluster leader",
                     "429": b"request rate limit exceeded, try a less busy server",
                     "503": b"request rate limit exceeded, try again later"}

    def __init__(self, consul_url: str):
        proxy = self
        self.consul_url, self.mode, self.requests = consul_url, "pass", 0
        self.retry_after: str | None = None
        self.faulted: list[tuple[float, float, str]] = []   # (arrived, answered, mode)
        self._cond = threading.Condition()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        class Handler(AgentAnswerHandler):
            def do_GET(self):
                arrived = time.monotonic()
                proxy.requests += 1
                mode = proxy.mode
                if mode == "pass":
                    return self.answer(*self.forward(proxy._opener, proxy.consul_url + self.path))
                if mode == "slow":
                    time.sleep(12)
                    return self.answer(200, b"[]")
                # stamped before the answer goes out: the client cannot have
                # started its backoff earlier
                with proxy._cond:
                    proxy.faulted.append((arrived, time.monotonic(), mode))
                    proxy._cond.notify_all()
                if mode in proxy.STATUS_BODIES:
                    return self.status_answer(int(mode), proxy.STATUS_BODIES[mode],
                                              proxy.retry_after if mode != "500" else None)
                if mode == "garbage":
                    return self.answer(200, b"<html>not consul</html>", index="999999")
                if mode == "huge":
                    return self.answer(200, b"[" + b" " * (2 * 1024 * 1024) + b"]",
                                       index="999999")
                self.answer(500, f"fault proxy: unknown mode {mode}".encode())

            def status_answer(self, status: int, body: bytes, retry_after: str | None):
                try:
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"FaultProxy({self.url}, mode={self.mode}, requests={self.requests})"

    def wait_faulted(self, n: int, timeout: float) -> bool:
        """Wait until the fault has answered n requests in all."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.faulted) >= n, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)



class TcpProxy:
    """A TCP listener (127.0.0.1 unless `host` says another loopback address)
    that counts the connections it accepts and, given a target port, relays
    them there (to target_host): a second address for the same server (to
    tell two "members" apart), a link that can be cut (a Consul server's
    WAN RPC), or a trap that no one should reach.  cut() closes every
    relayed connection and from then on closes each new one as soon as it
    is accepted (`refused` counts them), as a link that drops does, while
    the target itself stays up; heal() relays again."""

    def __init__(self, target: int | None = None, port: int | None = None,
                 host: str = "127.0.0.1", target_host: str = "127.0.0.1"):
        self.target, self.target_host = target, target_host
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if port is None:
            port = lab.free_port()
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        self.broken = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def __repr__(self) -> str:
        return (f"TcpProxy({self.host}:{self.port}, target={self.target}, "
                f"accepted={self.accepted}, broken={self.broken}, refused={self.refused})")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            if self.target is None:
                c.close()
                continue
            if self.broken:
                self.refused += 1
                c.close()
                continue
            try:
                s = socket.create_connection((self.target_host, self.target), timeout=5)
                s.settimeout(None)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            with self._lock:
                if self.broken:         # cut() while this one was connecting
                    self.refused += 1
                    c.close()
                    s.close()
                    continue
                self._socks += [c, s]
                for a, b in ((c, s), (s, c)):
                    t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                    t.start()
                    self._threads.append(t)

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for x in (src, dst):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _drop(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def cut(self) -> None:
        with self._lock:
            self.broken = True
        self._drop()

    def heal(self) -> None:
        self.broken = False

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for x in self._socks:
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in self._threads:
            t.join(2)
        self.sock.close()
        self._drop()


# struct linger {l_onoff = 1, l_linger = 0}
_LINGER_0 = (1).to_bytes(4, "little") + (0).to_bytes(4, "little")


class PartitionProxy:
    """A TCP proxy on 127.0.0.1 (a port from lab.free_port) in front of
    target_port on 127.0.0.1, that can stand for a network partition:
    partition() resets every connection it carries (both sides, RST) and
    from then on resets each new connection as soon as it is accepted,
    counting them in `refused`, until heal().  `accepted` counts the
    connections it passed on."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = lab.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.accepted = self.refused = self.dropped = 0
        self.partitioned = False
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._done: set[tuple[socket.socket, socket.socket]] = set()
        self._cut: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Condition()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return (f"PartitionProxy({self.port} -> {self.target_port}, partitioned={self.partitioned}, "
                f"accepted={self.accepted}, refused={self.refused}, dropped={self.dropped})")

    @staticmethod
    def _reset(s: socket.socket) -> None:
        """Close s with an RST (linger 0), as a dropped connection looks to its peer."""
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
        except OSError:
            pass
        s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                if self.partitioned:
                    self.refused += 1
                    self._lock.notify_all()
                    self._reset(c)
                    continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                self._reset(c)
                continue
            up.settimeout(None)
            c.settimeout(None)
            pair = (c, up)
            with self._lock:
                if self.partitioned:        # cut off while connecting
                    self.refused += 1
                    self._reset(c)
                    self._reset(up)
                    continue
                self.accepted += 1
                self._pairs.add(pair)
                self._lock.notify_all()
            threading.Thread(target=self._pipe, args=(c, up, pair), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, c, pair), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, pair) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        with self._lock:
            cut = pair in self._cut
        if not cut:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        with self._lock:
            # the second direction to end closes the pair: with linger 0 set
            # by a partition, the close resets it
            if pair in self._done:
                self._done.discard(pair)
                self._cut.discard(pair)
                self._pairs.discard(pair)
                for s in pair:
                    s.close()
            else:
                self._done.add(pair)

    def partition(self) -> None:
        """Cut off: reset what is open, refuse what comes."""
        with self._lock:
            self.partitioned = True
            cut = self._pairs - self._cut
            self._cut |= cut
            self.dropped += len(cut)
            self._lock.notify_all()
            for pair in cut:
                for s in pair:
                    # SHUT_RD wakes the pipe threads without a FIN; their
                    # close (linger 0) sends the RST
                    try:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
                        s.shutdown(socket.SHUT_RD)
                    except OSError:
                        pass

    def heal(self) -> None:
        with self._lock:
            self.partitioned = False
            self._lock.notify_all()

    def wait(self, pred, timeout: float) -> bool:
        """Wait until pred(self) holds (read under the proxy's lock)."""
        with self._lock:
            return self._lock.wait_for(lambda: pred(self), timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()
        self.partition()
