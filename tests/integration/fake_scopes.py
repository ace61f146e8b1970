"""Fake Patroni scopes in a real Consul agent, written as Patroni 3.0.2 and
4.0.7 write them (a leader key held by a session, three member records,
status, config), leader changes, and Patroni-like churn (member records
rewritten with a new WAL position).  Shared by bench/scale and the scale
tests.  The bench's own HTTP connections come from 127.0.0.2, so they do not
count against the agent's per-client connection limit that the fork, on
127.0.0.1, is measured against."""

from __future__ import annotations

import http.client
import json
import threading
import time

NAMESPACE = "service"
SOURCE = ("127.0.0.2", 0)


class KVClient:
    """A keep-alive HTTP/1.1 connection to the agent for the bench's own writes."""

    def __init__(self, port: int):
        self.port = port
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30,
                                          source_address=SOURCE)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=body)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = self._connect()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def put(self, key: str, value: str, **params: str) -> None:
        q = "&".join(f"{k}={v}" for k, v in params.items())
        st, body = self.request("PUT", f"/v1/kv/{key}" + (f"?{q}" if q else ""), value.encode())
        if st != 200 or body.strip() != b"true":
            raise RuntimeError(f"PUT {key}: {st} {body[:200]!r}")

    def session(self, name: str) -> str:
        st, body = self.request("PUT", "/v1/session/create",
                                json.dumps({"Name": name, "TTL": "86400s",
                                            "LockDelay": "0s"}).encode())
        if st != 200:
            raise RuntimeError(f"session create: {st} {body[:200]!r}")
        return json.loads(body)["ID"]

    def close(self) -> None:
        self.conn.close()


def member_record(major: int, pg_port: int, role: str, xlog: int) -> str:
    rec = {"conn_url": f"postgres://127.0.0.1:{pg_port}/postgres",
           "api_url": f"http://127.0.0.1:{pg_port + 1}/patroni",
           "state": "running", "timeline": 1, "xlog_location": xlog}
    if major == 3:
        rec.update(role="master" if role == "primary" else "replica", version="3.0.2")
    else:
        rec.update(role=role, version="4.0.7")
        if role != "primary":
            rec.update(state="streaming", replication_state="streaming")
    return json.dumps(rec)


class Scope:
    """One fake Patroni cluster: members a (leader at first) and c on server A's
    port, b on server B's; a leader key held by a session."""

    def __init__(self, name: str, major: int, ports: tuple[int, int]):
        self.name, self.major, self.ports = name, major, ports
        self.leader = "a"
        self.session = ""
        self.xlog = 1000

    def port_of(self, member: str) -> int:
        return self.ports[1] if member == "b" else self.ports[0]

    def key(self, rest: str) -> str:
        return f"{NAMESPACE}/{self.name}/{rest}"

    def write(self, kv: KVClient) -> None:
        self.session = kv.session(f"{self.name}-a")
        for m in "abc":
            kv.put(self.key(f"members/{m}"), member_record(
                self.major, self.port_of(m), "primary" if m == self.leader else "replica", self.xlog))
        kv.put(self.key("leader"), self.leader, acquire=self.session)
        kv.put(self.key("initialize"), "7000000000000000001")
        kv.put(self.key("config"), json.dumps({"ttl": 30, "loop_wait": 10}))

    def churn_write(self, kv: KVClient, i: int) -> None:
        """The i-th write of a Patroni loop: member records in turn, then status."""
        self.xlog += 4096
        slot = i % 4
        if slot == 3:
            kv.put(self.key("status"), json.dumps({"optime": self.xlog, "slots": {}}))
            return
        m = "abc"[slot]
        kv.put(self.key(f"members/{m}"), member_record(
            self.major, self.port_of(m), "primary" if m == self.leader else "replica", self.xlog))

    def switch(self, kv: KVClient) -> int:
        """Move the leader key to the member on the other server; its port."""
        self.leader = "b" if self.leader != "b" else "a"
        kv.put(self.key("leader"), self.leader, acquire=self.session)
        return self.port_of(self.leader)


class Churn:
    """Writes `rate` writes/s spread over `scopes`, in a thread of its own, on
    its own connection; counts what it wrote."""

    def __init__(self, port: int, scopes: list[Scope], rate: float):
        self.kv = KVClient(port)
        self.scopes, self.rate = scopes, rate
        self.written = 0
        self.started = 0.0
        self.lock = threading.Lock()    # switch() and churn share the scope objects
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Churn":
        if self.rate > 0 and self.scopes:
            self.started = time.monotonic()
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.kv.close()

    def achieved(self) -> float:
        dt = time.monotonic() - self.started if self.started else 0
        return self.written / dt if dt > 0 else 0.0

    def _run(self) -> None:
        interval = 1.0 / self.rate
        nxt = time.monotonic()
        i = 0
        while not self._stop.is_set():
            s = self.scopes[i % len(self.scopes)]
            with self.lock:
                s.churn_write(self.kv, i // len(self.scopes))
            self.written += 1
            i += 1
            nxt += interval
            delay = nxt - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
