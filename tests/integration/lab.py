"""Test lab: a real Consul dev agent and a real Patroni/PostgreSQL cluster on loopback.

Python 3.11, stdlib + psycopg 3 only.  Everything listens on 127.0.0.1, on ports
picked from a fixed high range (25000-29999) after checking they are free
(TCP and UDP).  Every process is started in its own process group and stopped by
PID with bounded waits (SIGTERM, wait, then SIGKILL of that PID / process group).

Patroni and PostgreSQL refuse to run as root: they run as the ``postgres`` OS user
(the process is started directly as that user, so the PID we hold is Patroni's own
PID, not a runuser/su wrapper's).  Working directories are created under /tmp and
chowned to postgres.

Which Patroni runs comes from one place, $PGBC_PATRONI (patroni_install()):
``3`` (default) is bookworm's installed /usr/bin/patroni 3.0.2, ``4`` is trixie's
4.0.7 unpacked by scripts/fetch-patroni.sh into $PGBC_CACHE/patroni-4.0.7 and run
with /usr/bin/python3 and that prefix on PYTHONPATH, ``4.1`` sid's 4.1.5 the same
way (PGBC_PATRONI_PIN=tests/lab/patroni41.pin for the fetch script).  A cluster checks at start
that Patroni says the version asked for (``cluster.patroni_version``).

Typical use::

    consul = Consul(workdir, binary=consul_binary(cache_dir)).start()
    cluster = PatroniCluster(workdir2, consul).start()
    cluster.leader(); cluster.switchover(); cluster.kill9_primary()
    cluster.stop(); consul.stop()
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import os
import pwd
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
FETCH_CONSUL = REPO / "tests" / "lab" / "fetch-consul.sh"
FETCH_PATRONI = REPO / "scripts" / "fetch-patroni.sh"
PATRONI4_PIN = REPO / "tests" / "lab" / "patroni4.pin"
# PGBC_PATRONI values run from a private prefix, and the pin that says which
PATRONI_PINS = {"4": PATRONI4_PIN, "4.1": REPO / "tests" / "lab" / "patroni41.pin"}
DEFAULT_CACHE = "/var/cache/pgbouncer-consul"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# bookworm's installed Patroni (PGBC_PATRONI=3); patroni_install() picks one
PATRONI_BIN = "/usr/bin/patroni"
PATRONICTL_BIN = "/usr/bin/patronictl"
PATRONI3_VERSION = "3.0.2"
PG_USER = "postgres"
PG_PASSWORD = "postgres"
REPL_USER = "replicator"
REPL_PASSWORD = "rep-pass"

# Ports are picked at random from this range (override: PGBC_PORT_RANGE="lo-hi").
# It sits below the kernel's ephemeral range (32768+), so outgoing connections
# never take a port between our check and the server's bind.
PORT_RANGE = tuple(int(x) for x in os.environ.get("PGBC_PORT_RANGE", "25000-27999").split("-"))


# name -> seconds; filled by tests, printed in pytest's terminal summary (conftest.py)
TIMINGS: dict[str, float | str] = {}


def record_timing(name: str, value: float | str) -> None:
    TIMINGS[name] = value
    log(f"TIMING {name} = {value:.3f}s" if isinstance(value, float) else f"TIMING {name} = {value}")


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- ports

_reserved_ports: set[int] = set()
_port_lock = threading.Lock()


def _port_is_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            s.close()
    # Also refuse ports someone listens on via the wildcard address.
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            return False
    finally:
        s.close()
    return True


def free_port() -> int:
    """A TCP+UDP port on 127.0.0.1 that is free now and not handed out before
    by this process.  Picked from PORT_RANGE (below the kernel's ephemeral range,
    so outgoing connections will not grab it meanwhile)."""
    lo, hi = PORT_RANGE
    with _port_lock:
        for _ in range(2000):
            port = random.randint(lo, hi)
            if port in _reserved_ports:
                continue
            if _port_is_free(port):
                _reserved_ports.add(port)
                return port
    raise RuntimeError(f"no free port found in {lo}-{hi}")


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket()
        try:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        finally:
            s.close()
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------- processes

def pid_alive(pid: int | None) -> bool:
    """True if pid exists and is not a zombie."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _signal(pid: int, sig: int, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        pass


def _reap(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        try:
            proc.wait(timeout=0)
        except subprocess.TimeoutExpired:
            pass


def wait_pid_gone(pid: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        _reap(proc)
        if not pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stop_pid(pid: int | None, *, timeout: float = 15.0, sig: int = signal.SIGTERM,
             group: bool = True, proc: subprocess.Popen | None = None, name: str = "") -> None:
    """Send `sig` to pid (and its process group if it leads one), wait up to
    `timeout` s, then SIGKILL that pid / its process group and wait again (bounded)."""
    if not pid:
        return
    is_leader = group and _pgid(pid) == pid
    if pid_alive(pid):
        _signal(pid, sig)
        if is_leader:
            _signal(pid, sig, group=True)
        if not wait_pid_gone(pid, timeout, proc):
            log(f"{name or pid}: still alive {timeout}s after signal {sig}, SIGKILL")
            _signal(pid, signal.SIGKILL)
            wait_pid_gone(pid, 10, proc)
    if is_leader:
        # leftovers in the group (none expected): kill them too
        _signal(pid, signal.SIGKILL, group=True)
    _reap(proc)


def tcp_connections(pid: int, port: int) -> int:
    """Established TCP connections of process `pid` to 127.0.0.1:`port`
    (its socket inodes in /proc/<pid>/fd matched in /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        remote, state, inode = f[2], f[3], f[9]
        if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
            n += 1
    return n


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


class _Registry:
    """Every lab object that owns processes; stopped at interpreter exit as a last resort."""

    def __init__(self) -> None:
        self.objs: list[Any] = []
        self.lock = threading.Lock()
        atexit.register(self.stop_all)

    def add(self, obj: Any) -> None:
        with self.lock:
            if obj not in self.objs:
                self.objs.append(obj)

    def remove(self, obj: Any) -> None:
        with self.lock:
            if obj in self.objs:
                self.objs.remove(obj)

    def stop_all(self) -> None:
        for obj in reversed(list(self.objs)):
            try:
                obj.stop()
            except Exception as e:  # noqa: BLE001
                log(f"atexit: stopping {obj!r} failed: {e}")


REGISTRY = _Registry()


def make_workdir(prefix: str, owner: str | None = PG_USER) -> Path:
    """A fresh directory under /tmp, world-traversable (0755), owned by `owner`."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    if owner and os.geteuid() == 0:
        pw = pwd.getpwnam(owner)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


def chown_tree(path: Path, user: str = PG_USER) -> None:
    if os.geteuid() != 0:
        return
    pw = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for n in dirs + files:
            os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


# --------------------------------------------------------------------------- http

# Never go through an http_proxy from the environment: everything here is loopback.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_request(method: str, url: str, body: Any = None, headers: dict | None = None,
                 timeout: float = 10.0,
                 context: ssl.SSLContext | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) - never raises for HTTP error statuses.  context:
    the TLS context for https (CA, client certificate)."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        if isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    opener = _OPENER if context is None else urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers or {}), e.read() if e.fp else b""


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0,
              headers: dict | None = None,
              context: ssl.SSLContext | None = None) -> tuple[int, Any]:
    status, _, raw = http_request(method, url, body, headers=headers, timeout=timeout,
                                  context=context)
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_until(pred: Callable[[], Any], timeout: float, interval: float = 0.2,
               what: str = "condition") -> Any:
    """Poll pred() until it returns a truthy value (returned) or raise TimeoutError.
    Exceptions from pred count as 'not yet'."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}"
                               + (f" (last error: {last_exc!r})" if last_exc else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------- tls

@dataclass
class TlsFiles:
    """A throw-away CA, a server certificate for 127.0.0.1 and a client
    certificate it signed, as PEM files (readable by postgres)."""
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def client_context(self, cert: bool = True) -> ssl.SSLContext:
        """A context trusting the CA, presenting the client certificate if cert."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        if cert:
            ctx.load_cert_chain(str(self.client_cert), str(self.client_key))
        return ctx


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls_files(d: Path, owner: str | None = PG_USER) -> TlsFiles:
    """A CA, a server cert (SAN IP:127.0.0.1) and a client cert (CN lab-client) in d."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             "/CN=lab-ca", "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))
    ext = d / "server.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\nextendedKeyUsage = serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, cn in (("server", "127.0.0.1"), ("client", "lab-client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                 "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"),
                 "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
                 "-extfile", str(d / f"{name}.ext"), "-out", str(d / f"{name}.pem"))
    for f in d.iterdir():
        f.chmod(0o600 if f.suffix == ".key" else 0o644)
    if owner:
        chown_tree(d, owner)
    return TlsFiles(ca=d / "ca.pem", server_cert=d / "server.pem", server_key=d / "server.key",
                    client_cert=d / "client.pem", client_key=d / "client.key")


# --------------------------------------------------------------------------- consul

def consul_binary(cache_dir: str | os.PathLike | None = None) -> str:
    """Path of a Consul 1.8.7 binary: $PGBC_CONSUL if set, else fetched (once,
    cached) by tests/lab/fetch-consul.sh into cache_dir ($PGBC_CACHE or
    /var/cache/pgbouncer-consul)."""
    env = os.environ.get("PGBC_CONSUL")
    if env:
        if not os.access(env, os.X_OK):
            raise RuntimeError(f"PGBC_CONSUL={env} is not executable")
        return env
    cache = str(cache_dir or os.environ.get("PGBC_CACHE") or DEFAULT_CACHE)
    r = subprocess.run(["bash", str(FETCH_CONSUL), cache], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"{FETCH_CONSUL} {cache} failed (rc={r.returncode}):\n{r.stderr}")
    path = r.stdout.strip().splitlines()[-1]
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"fetch-consul.sh printed {path!r}, which is not executable")
    return path


# --------------------------------------------------------------------------- which patroni

def _pin_values(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines()
                if line and not line.startswith("#") and "=" in line)


@dataclass(frozen=True)
class PatroniInstall:
    """One Patroni: `major` as PGBC_PATRONI names it, the `version` it must
    report, and the private prefix it runs from (None: the installed one)."""
    major: str
    version: str
    prefix: Path | None = None

    def argv(self, tool: str = "patroni") -> list[str]:
        """The command line start of `patroni` or `patronictl`."""
        if self.prefix is None:
            return [PATRONI_BIN if tool == "patroni" else PATRONICTL_BIN]
        return ["/usr/bin/python3", str(self.prefix / "usr" / "bin" / tool)]

    @property
    def primary_role(self) -> str:
        """The role this Patroni writes in the leader's member record."""
        return "master" if self.major == "3" else "primary"

    def env(self) -> dict[str, str]:
        """What the environment needs beside PATH & co. to run it."""
        if self.prefix is None:
            return {}
        return {"PYTHONPATH": str(self.prefix / "usr" / "lib" / "python3" / "dist-packages")}

    def reported_version(self) -> str:
        """What `patroni --version` says, run as the postgres user as the lab runs it."""
        kw: dict[str, Any] = {}
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **self.env()}
        r = subprocess.run(self.argv("patroni") + ["--version"], env=env, cwd="/",
                           stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60, **kw)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(self.argv())} --version failed (rc={r.returncode}): "
                               f"{out}")
        return out.removeprefix("patroni ").strip()

    def check(self) -> None:
        """Raise unless this Patroni says it is `version`: a test must never
        run against another Patroni than the one asked for."""
        got = self.reported_version()
        if got != self.version:
            raise RuntimeError(f"PGBC_PATRONI={self.major} wants Patroni {self.version}, but "
                               f"{' '.join(self.argv())} --version says {got!r}")


def patroni_install(major: str | None = None) -> PatroniInstall:
    """The Patroni the lab runs: `major` or $PGBC_PATRONI, "3" (default:
    bookworm's /usr/bin/patroni 3.0.2), "4" (trixie's 4.0.7) or "4.1" (sid's
    4.1.5), both unpacked by scripts/fetch-patroni.sh into
    $PGBC_CACHE/patroni-<version>.  The install's `major` is "3" or "4"
    (what differs between Patroni's major versions)."""
    major = str(major or os.environ.get("PGBC_PATRONI") or "3")
    if major == "3":
        if not os.path.exists(PATRONI_BIN):
            raise RuntimeError(f"{PATRONI_BIN} missing: apt-get install patroni "
                               "(scripts/install-deps.sh)")
        return PatroniInstall("3", PATRONI3_VERSION)
    if major in PATRONI_PINS:
        pin = PATRONI_PINS[major]
        version = _pin_values(pin)["PATRONI_VERSION"]
        cache = Path(os.environ.get("PGBC_CACHE") or DEFAULT_CACHE)
        prefix = cache / f"patroni-{version}"
        if not (prefix / "usr" / "bin" / "patroni").exists():
            fetch = FETCH_PATRONI if pin == PATRONI4_PIN else \
                f"PGBC_PATRONI_PIN={pin} {FETCH_PATRONI}"
            raise RuntimeError(f"PGBC_PATRONI={major}: no Patroni {version} in {prefix}: "
                               f"run {fetch} {cache} (test.sh does)")
        return PatroniInstall(major.split(".")[0], version, prefix)
    raise RuntimeError(f"PGBC_PATRONI={major!r}: say 3 (Patroni {PATRONI3_VERSION}), "
                       f"4 or 4.1 (tests/lab/patroni4.pin, patroni41.pin)")


@dataclass
class KV:
    key: str
    value: str | None          # decoded (utf-8) value, None if empty
    raw: bytes | None
    modify_index: int
    create_index: int
    lock_index: int
    flags: int
    session: str | None
    index: int = 0              # X-Consul-Index of the response

    def json(self) -> Any:
        return json.loads(self.value) if self.value else None

    def __getitem__(self, k: str) -> Any:   # kv["Value"], kv["ModifyIndex"], kv["Session"]
        return {"Key": self.key, "Value": self.value, "ModifyIndex": self.modify_index,
                "CreateIndex": self.create_index, "LockIndex": self.lock_index,
                "Flags": self.flags, "Session": self.session}[k]


class ConsulError(RuntimeError):
    pass


class Consul:
    """A `consul agent -dev` on 127.0.0.1 with every port chosen.

    A dev agent keeps its state in memory: restart() (same ports) loses all KV data,
    sessions and services, and Raft/KV indexes restart from ~1."""

    def __init__(self, workdir: str | os.PathLike, acl_master_token: str | None = None,
                 binary: str | None = None, node: str = "lab1", datacenter: str = "dc1",
                 log_level: str = "info", extra_hcl: str | None = None,
                 role: str = "dev", bootstrap_expect: int = 0,
                 join: Iterable[str] = ()):
        """role "dev" (in memory), or "server"/"client" of a ConsulCluster:
        state in workdir/data (kept across restarts), `join` the serf-lan
        addresses to retry-join, `bootstrap_expect` the servers to wait for."""
        if role not in ("dev", "server", "client"):
            raise ValueError(f"consul role {role!r}: say dev, server or client")
        self.workdir = Path(workdir)
        self.extra_hcl = extra_hcl
        self.role, self.bootstrap_expect, self.join = role, bootstrap_expect, list(join)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary or consul_binary()
        self.token = acl_master_token
        self.node = node
        self.datacenter = datacenter
        self.log_level = log_level
        self.ports = {k: free_port() for k in
                      ("http", "dns", "serf_lan", "serf_wan", "server", "grpc")}
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / "consul.log"
        self.starts = 0

    # -- properties
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def http_port(self) -> int:
        return self.ports["http"]

    @property
    def dns_port(self) -> int:
        return self.ports["dns"]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def __repr__(self) -> str:
        return f"<Consul {self.url} pid={self.pid}>"

    # -- lifecycle
    def _cmd(self) -> list[str]:
        p = self.ports
        mode = ["-dev"] if self.role == "dev" else ["-data-dir", str(self.workdir / "data")]
        if self.role == "server":
            mode += ["-server", "-bootstrap-expect", str(self.bootstrap_expect)]
        for addr in self.join:
            mode += ["-retry-join", addr]
        if self.join:
            # agents launched together find each other's ports closed at
            # first: retry every second, not every 30 s (the default)
            mode += ["-retry-interval", "1s"]
        cmd = [self.binary, "agent", *mode, "-node", self.node, "-datacenter", self.datacenter,
               "-bind", "127.0.0.1", "-client", "127.0.0.1", "-advertise", "127.0.0.1",
               "-http-port", str(p["http"]), "-dns-port", str(p["dns"]),
               "-serf-lan-port", str(p["serf_lan"]), "-serf-wan-port", str(p["serf_wan"]),
               "-server-port", str(p["server"]), "-grpc-port", str(p["grpc"]),
               "-log-level", self.log_level]
        if self.token:
            hcl = self.workdir / "acl.hcl"
            hcl.write_text(
                'acl {\n  enabled = true\n  default_policy = "deny"\n'
                '  down_policy = "extend-cache"\n  enable_token_persistence = false\n'
                f'  tokens {{\n    master = "{self.token}"\n    agent = "{self.token}"\n  }}\n}}\n')
            cmd += ["-config-file", str(hcl)]
        if self.extra_hcl:
            extra = self.workdir / "extra.hcl"
            extra.write_text(self.extra_hcl)
            cmd += ["-config-file", str(extra)]
        return cmd

    @property
    def serf_lan_address(self) -> str:
        """What other agents -retry-join."""
        return f"127.0.0.1:{self.ports['serf_lan']}"

    @property
    def server_address(self) -> str:
        """What /v1/status/leader names when this server leads Raft."""
        return f"127.0.0.1:{self.ports['server']}"

    def start(self, timeout: float = 30.0) -> "Consul":
        self.launch()
        return self.wait_ready(timeout)

    def kill9(self) -> None:
        """SIGKILL the agent by PID: no leave, no cleanup (a crash)."""
        if self.proc is None:
            return
        pid = self.proc.pid
        _signal(pid, signal.SIGKILL)
        wait_pid_gone(pid, 10, self.proc)
        self.proc = None
        REGISTRY.remove(self)
        log(f"kill -9 consul {self.node} (pid {pid})")

    def launch(self) -> "Consul":
        """Start the process without waiting for it to serve (the servers of
        a cluster serve only once all of them run)."""
        if self.proc and self.proc.poll() is None:
            return self
        self._t0 = time.monotonic()
        logf = open(self.log_path, "ab")
        logf.write(f"\n==== start #{self.starts + 1} {time.ctime()} ====\n".encode())
        logf.flush()
        self.proc = subprocess.Popen(self._cmd(), stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     cwd=self.workdir)
        logf.close()
        self.starts += 1
        REGISTRY.add(self)
        return self

    def wait_ready(self, timeout: float = 30.0) -> "Consul":
        """Wait until the agent answers, has a Raft leader, takes a KV write
        and has registered its own node."""
        t0 = self._t0
        try:
            def ready() -> bool:
                if self.proc.poll() is not None:
                    raise ConsulError(f"consul exited rc={self.proc.returncode}; "
                                      f"log tail:\n{self.log_tail()}")
                try:
                    st, body = http_json("GET", self.url + "/v1/status/leader", timeout=2)
                except OSError:
                    return False
                if not (st == 200 and body):
                    return False
                if self.token:  # ACL system up and master token known?
                    st, _ = http_json("GET", self.url + "/v1/acl/token/self",
                                      headers={"X-Consul-Token": self.token}, timeout=2)
                    if st != 200:
                        return False
                # KV store writable?
                st, _, _ = self._kv_req("PUT", f"lab/ready/{self.node}", b"1")
                if st != 200:
                    return False
                # the agent's own node registered (sessions need it: a
                # session created before gets "Missing node registration")
                st, body = http_json("GET", f"{self.url}/v1/catalog/node/{self.node}",
                                     headers=self._headers(), timeout=2)
                return st == 200 and bool(body) and bool(body.get("Node"))
            deadline = time.monotonic() + timeout
            while not ready():
                if time.monotonic() > deadline:
                    raise ConsulError(f"consul not ready after {timeout}s; log tail:\n"
                                      f"{self.log_tail()}")
                time.sleep(0.1)
            self._kv_req("DELETE", f"lab/ready/{self.node}")
        except BaseException:
            self.stop()
            raise
        self.start_time = time.monotonic() - t0
        log(f"consul {self.role} {self.node} up at {self.url} (pid {self.pid}) in "
            f"{self.start_time:.2f}s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout=timeout, sig=signal.SIGTERM, proc=self.proc,
                 name="consul")
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        REGISTRY.remove(self)

    def restart(self, timeout: float = 30.0) -> "Consul":
        self.stop()
        for port in (self.ports["http"], self.ports["server"]):
            wait_port_free(port, 10)
        return self.start(timeout)

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    # -- HTTP helpers
    def _headers(self, token: str | None = None) -> dict:
        tok = token if token is not None else self.token
        return {"X-Consul-Token": tok} if tok else {}

    def request(self, method: str, path: str, body: Any = None, token: str | None = None,
                timeout: float = 10.0) -> tuple[int, dict, bytes]:
        return http_request(method, self.url + path, body, headers=self._headers(token),
                            timeout=timeout)

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            timeout: float = 10.0) -> Any:
        """JSON API call; raises ConsulError on a non-2xx status."""
        st, _, raw = self.request(method, path, body, token, timeout)
        if not 200 <= st < 300:
            raise ConsulError(f"{method} {path}: HTTP {st}: {raw[:300]!r}")
        return json.loads(raw) if raw else None

    def _kv_req(self, method: str, key: str, body: bytes | None = None,
                params: dict | None = None, token: str | None = None,
                timeout: float = 10.0) -> tuple[int, dict, bytes]:
        q = ("?" + urllib.parse.urlencode(params)) if params else ""
        return self.request(method, "/v1/kv/" + urllib.parse.quote(key.lstrip("/")) + q, body,
                            token=token, timeout=timeout)

    def kv_get(self, key: str, *, index: int | None = None, wait: str | None = None,
               token: str | None = None, consistent: bool = False) -> KV | None:
        """The key's KV record, or None if it does not exist (404).
        index/wait make it a blocking query.  Raises ConsulError on other errors
        (e.g. 403 Permission denied)."""
        params: dict[str, Any] = {}
        if index is not None:
            params["index"] = index
        if wait is not None:
            params["wait"] = wait
        if consistent:
            params["consistent"] = ""
        timeout = 10.0
        if wait:
            secs = float(wait.rstrip("s")) if wait.endswith("s") and not wait.endswith("ms") else 300
            timeout = secs * 17 / 16 + 5
        st, hdrs, raw = self._kv_req("GET", key, params=params, token=token, timeout=timeout)
        if st == 404:
            return None
        if st != 200:
            raise ConsulError(f"GET kv {key}: HTTP {st}: {raw[:200]!r}")
        item = json.loads(raw)[0]
        rawv = base64.b64decode(item["Value"]) if item.get("Value") else None
        return KV(key=item["Key"], raw=rawv,
                  value=rawv.decode("utf-8", errors="replace") if rawv is not None else None,
                  modify_index=item["ModifyIndex"], create_index=item["CreateIndex"],
                  lock_index=item.get("LockIndex", 0), flags=item.get("Flags", 0),
                  session=item.get("Session"),
                  index=int(_hget(hdrs, "X-Consul-Index") or 0))

    def kv_index(self, key: str, token: str | None = None) -> int:
        """X-Consul-Index for a key read (works for a missing key too)."""
        st, hdrs, _ = self._kv_req("GET", key, token=token)
        return int(_hget(hdrs, "X-Consul-Index") or 0)

    def kv_list(self, prefix: str, token: str | None = None) -> dict[str, str | None]:
        st, _, raw = self._kv_req("GET", prefix, params={"recurse": ""}, token=token)
        if st == 404:
            return {}
        if st != 200:
            raise ConsulError(f"GET kv {prefix}?recurse: HTTP {st}: {raw[:200]!r}")
        out = {}
        for item in json.loads(raw):
            v = base64.b64decode(item["Value"]).decode() if item.get("Value") else None
            out[item["Key"]] = v
        return out

    def kv_put(self, key: str, value: str | bytes | None, *, cas: int | None = None,
               acquire: str | None = None, release: str | None = None,
               token: str | None = None) -> bool:
        params: dict[str, Any] = {}
        if cas is not None:
            params["cas"] = cas
        if acquire:
            params["acquire"] = acquire
        if release:
            params["release"] = release
        body = value.encode() if isinstance(value, str) else (value or b"")
        st, _, raw = self._kv_req("PUT", key, body, params=params, token=token)
        if st != 200:
            raise ConsulError(f"PUT kv {key}: HTTP {st}: {raw[:200]!r}")
        return raw.strip() == b"true"

    def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None,
                  token: str | None = None) -> bool:
        params: dict[str, Any] = {}
        if recurse:
            params["recurse"] = ""
        if cas is not None:
            params["cas"] = cas
        st, _, raw = self._kv_req("DELETE", key, params=params, token=token)
        if st != 200:
            raise ConsulError(f"DELETE kv {key}: HTTP {st}: {raw[:200]!r}")
        return raw.strip() in (b"true", b"")

    def services(self) -> dict:
        return self.api("GET", "/v1/agent/services")

    def health_service(self, name: str, tag: str | None = None, passing: bool = False) -> list:
        q = {}
        if tag:
            q["tag"] = tag
        if passing:
            q["passing"] = ""
        return self.api("GET", f"/v1/health/service/{name}"
                        + ("?" + urllib.parse.urlencode(q) if q else ""))


class ConsulCluster:
    """A real Consul datacenter on loopback: `servers` server agents
    (Raft, bootstrap-expect) and one client agent per name in `clients`,
    each with its own ports and data dir, as in production where every
    host talks to its local client agent.  raft_multiplier 1 gives
    production election times (LAB.md: the default 5 took 17 s)."""

    def __init__(self, workdir: str | os.PathLike, binary: str | None = None,
                 servers: int = 3, clients: Iterable[str] = ("client1",),
                 datacenter: str = "dc1", log_level: str = "info",
                 server_hcl: str = "", node_prefix: str = ""):
        """server_hcl: more configuration for the servers only (WAN
        federation); node_prefix goes before every node name (node names
        are unique across WAN-joined datacenters)."""
        self.workdir = Path(workdir)
        self.datacenter = datacenter
        binary = binary or consul_binary()
        hcl = "performance {\n  raft_multiplier = 1\n}\n"
        self.servers = [Consul(self.workdir / f"s{i + 1}", binary=binary,
                               node=f"{node_prefix}s{i + 1}",
                               datacenter=datacenter, log_level=log_level,
                               extra_hcl=hcl + server_hcl,
                               role="server", bootstrap_expect=servers)
                        for i in range(servers)]
        joins = [s.serf_lan_address for s in self.servers]
        for s in self.servers:
            s.join = [a for a in joins if a != s.serf_lan_address]
        self.clients = {n: Consul(self.workdir / n, binary=binary, node=f"{node_prefix}{n}",
                                  datacenter=datacenter, log_level=log_level,
                                  extra_hcl=hcl, role="client", join=joins)
                        for n in clients}
        self.start_time: float | None = None

    def __repr__(self) -> str:
        return (f"<ConsulCluster servers={[s.node for s in self.servers]} "
                f"clients={list(self.clients)}>")

    def agents(self) -> list[Consul]:
        return [*self.servers, *self.clients.values()]

    def client(self, name: str) -> Consul:
        return self.clients[name]

    def start(self, timeout: float = 60.0) -> "ConsulCluster":
        t0 = time.monotonic()
        try:
            for a in self.agents():
                a.launch()
            for a in self.agents():
                a.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        self.start_time = time.monotonic() - t0
        log(f"consul cluster up in {self.start_time:.1f}s: leader {self.leader().node}")
        return self

    def stop(self) -> None:
        for a in reversed(self.agents()):
            a.stop()

    def leader(self, via: Consul | None = None) -> Consul:
        """The server that leads Raft now, as `via` (default: any running
        agent) sees it; raises ConsulError while there is none."""
        for a in ([via] if via else self.agents()):
            if a.proc is None:
                continue
            try:
                st, body = http_json("GET", a.url + "/v1/status/leader", timeout=2)
            except OSError:
                continue
            for s in self.servers:
                if st == 200 and body == s.server_address:
                    return s
        raise ConsulError("no consul raft leader")

    def wait_leader(self, not_node: str | None = None, timeout: float = 60.0) -> Consul:
        """Wait for a Raft leader (other than the server named not_node) that
        every running agent agrees on."""
        def agreed() -> Consul | None:
            seen = {self.leader(a).node for a in self.agents() if a.proc is not None}
            if len(seen) == 1 and not_node not in seen:
                return self.leader()
            return None
        return wait_until(agreed, timeout, 0.1, f"a consul raft leader other than {not_node}")


# the site of each member of a Patroni cluster whose DCS is a federation's
# global datacenter (issue 14: two in dc1, one in dc2)
FEDERATION_SITES = {"n1": "dc1", "n2": "dc1", "n3": "dc2"}


class ConsulFederation:
    """Several Consul datacenters on loopback, WAN-joined: one
    ConsulCluster per name in `datacenters` (one server each, CI's cost),
    and in each the client agents `clients` names ({dc: [names]}).  The
    first datacenter ("global", Patroni's DCS in issue 14) is the one the
    others join over the WAN.

    Breaking the WAN link to it: a Consul 1.8 server forwards a request for
    another datacenter (?dc=) over server RPC to a server of that
    datacenter found in the WAN serf pool, at the member's WAN address
    (advertise_addr_wan) and the RPC port its tags carry (ports.server).
    So the first datacenter's server advertises WAN_ADDR (another loopback
    address) and binds its serf WAN gossip there itself, while its RPC port
    listens on 127.0.0.1 only; a proxy_traps.TcpProxy on WAN_ADDR:<rpc port>
    carries the other datacenters' RPC to it (`wan_relay`).  relay.cut()
    then breaks cross-datacenter RPC to it for real, while the server keeps
    running, serving its own datacenter and gossiping over the WAN (so the
    others still list it: the forwarded requests fail, as over a link that
    drops connections).  Stopping the server instead would also stop
    Patroni's DCS."""

    WAN_ADDR = "127.0.0.2"

    def __init__(self, workdir: str | os.PathLike, binary: str | None = None,
                 datacenters: Iterable[str] = ("global", "dc1", "dc2"),
                 clients: dict[str, Iterable[str]] | None = None, log_level: str = "info"):
        from proxy_traps import TcpProxy   # proxy_traps imports lab
        self.workdir = Path(workdir)
        binary = binary or consul_binary()
        names = list(datacenters)
        clients = clients or {}
        first = ConsulCluster(self.workdir / names[0], binary=binary, servers=1,
                              clients=tuple(clients.get(names[0], ())), datacenter=names[0],
                              log_level=log_level, node_prefix=f"{names[0]}-",
                              server_hcl=f'advertise_addr_wan = "{self.WAN_ADDR}"\n'
                                         f'serf_wan = "{self.WAN_ADDR}"\n')
        hub = first.servers[0]
        join = f"{self.WAN_ADDR}:{hub.ports['serf_wan']}"
        wan_hcl = f'retry_join_wan = ["{join}"]\nretry_interval_wan = "1s"\n'
        self.dcs: dict[str, ConsulCluster] = {names[0]: first}
        for n in names[1:]:
            self.dcs[n] = ConsulCluster(self.workdir / n, binary=binary, servers=1,
                                        clients=tuple(clients.get(n, ())), datacenter=n,
                                        log_level=log_level, node_prefix=f"{n}-",
                                        server_hcl=wan_hcl)
        self.wan_relay = TcpProxy(hub.ports["server"], port=hub.ports["server"],
                                  host=self.WAN_ADDR)
        self.start_time: float | None = None
        self.federation_time: float | None = None

    def __repr__(self) -> str:
        return f"<ConsulFederation {list(self.dcs)} relay={self.wan_relay!r}>"

    def server(self, dc: str) -> Consul:
        return self.dcs[dc].servers[0]

    def client(self, dc: str, name: str) -> Consul:
        return self.dcs[dc].client(name)

    def agents(self) -> list[Consul]:
        return [a for c in self.dcs.values() for a in c.agents()]

    def datacenters_seen(self, via: Consul) -> list[str]:
        st, body = http_json("GET", via.url + "/v1/catalog/datacenters", timeout=5)
        return sorted(body) if st == 200 and isinstance(body, list) else []

    def wait_federated(self, timeout: float = 60.0) -> None:
        """Until every server's /v1/catalog/datacenters lists them all."""
        want = sorted(self.dcs)
        servers = [c.servers[0] for c in self.dcs.values()]
        wait_until(lambda: all(self.datacenters_seen(s) == want for s in servers), timeout,
                   0.2, f"every server listing the datacenters {want}")

    def start(self, timeout: float = 60.0) -> "ConsulFederation":
        t0 = time.monotonic()
        try:
            for a in self.agents():
                a.launch()
            for a in self.agents():
                a.wait_ready(timeout)
            t1 = time.monotonic()
            self.wait_federated(timeout)
            self.federation_time = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        self.start_time = time.monotonic() - t0
        log(f"consul federation {list(self.dcs)} up in {self.start_time:.1f}s "
            f"(WAN-joined {self.federation_time:.1f}s after the agents)")
        return self

    def stop(self) -> None:
        """Every agent at once: a client agent leaves its datacenter on
        SIGTERM, which took 4-5 s each here, one after the other 20 s."""
        self.wan_relay.close()
        threads = [threading.Thread(target=a.stop, daemon=True) for a in self.agents()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)


def _hget(hdrs: dict, name: str) -> str | None:
    for k, v in hdrs.items():
        if k.lower() == name.lower():
            return v
    return None


class KeyRecorder:
    """Records every change of a Consul key as (monotonic time, value-or-None,
    modify_index), in a thread.  mode="watch" (default) uses blocking queries
    (?index=N&wait=...), so a delete followed by a re-create a few ms later is
    still seen; mode="poll" polls every `interval` s.  Used to measure the
    "no leader" gap during switchover/failover."""

    def __init__(self, consul: Consul, key: str, interval: float = 0.01,
                 mode: str = "watch", wait: str = "5s"):
        self.consul, self.key, self.interval, self.mode, self.wait = \
            consul, key, interval, mode, wait
        self.events: list[tuple[float, str | None, int]] = []
        self.errors = 0
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last: tuple[str | None, int] = ("<unset>", -1)
        base = "/v1/kv/" + urllib.parse.quote(self.key)
        conn: http.client.HTTPConnection | None = None
        index = 0
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.consul.http_port,
                                                      timeout=30)
                path = base
                if self.mode == "watch" and index > 0:
                    path += f"?index={index}&wait={self.wait}"
                conn.request("GET", path, headers=self.consul._headers())
                r = conn.getresponse()
                raw = r.read()
                self.requests += 1
                new_index = int(r.getheader("X-Consul-Index") or 0)
                if r.status == 404:
                    cur: tuple[str | None, int] = (None, 0)
                elif r.status == 200:
                    item = json.loads(raw)[0]
                    v = base64.b64decode(item["Value"]).decode() if item.get("Value") else ""
                    cur = (v, item["ModifyIndex"])
                else:
                    self.errors += 1
                    cur = last
                    time.sleep(0.05)
                if cur != last:
                    self.events.append((time.monotonic(), cur[0], cur[1]))
                    last = cur
                # blocking-query rules: reset when the index goes backwards, never 0
                index = new_index if new_index > index else (0 if new_index < index else index)
                if index < 1:
                    index = 0
            except (OSError, http.client.HTTPException, ValueError):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                index = 0
                self._stop.wait(0.05)
            if self.mode == "poll" or index == 0:
                self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def start(self) -> "KeyRecorder":
        self._thread.start()
        wait_until(lambda: self.events, 5, 0.01, "first key sample")
        return self

    def stop(self) -> list[tuple[float, str | None, int]]:
        """Stops the recorder.  A watch blocked in Consul is not interrupted:
        the thread (a daemon) ends at its next wake-up, at most `wait` later."""
        self._stop.set()
        self._thread.join(0.2 if self.mode == "watch" else 5)
        return list(self.events)

    def __enter__(self) -> "KeyRecorder":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def gaps(self) -> list[tuple[float, float | None]]:
        """[(start, duration)] of intervals where the key was absent (duration None if
        it never came back)."""
        out = []
        for i, (t, v, _) in enumerate(self.events):
            if v is None:
                nxt = next((t2 for t2, v2, _ in self.events[i + 1:] if v2 is not None), None)
                out.append((t, (nxt - t) if nxt is not None else None))
        return out


# --------------------------------------------------------------------------- patroni

@dataclass
class Member:
    name: str
    port: int
    api_port: int
    dir: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen | None = None
    starts: int = 0
    scheme: str = "http"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def yml(self) -> Path:
        return self.dir / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.dir / "patroni.log"

    @property
    def socket_dir(self) -> Path:
        return self.dir

    @property
    def api_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.api_port}"

    @property
    def pid(self) -> int | None:
        """Patroni's PID (the process started as postgres, no wrapper)."""
        return self.proc.pid if self.proc and self.proc.poll() is None else None

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first.strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def as_dict(self) -> dict:
        return {"name": self.name, "host": self.host, "port": self.port,
                "api_port": self.api_port, "api_url": self.api_url, "pid": self.pid,
                "postmaster_pid": self.postmaster_pid(), "data_dir": str(self.data_dir),
                "socket_dir": str(self.socket_dir), "yml": str(self.yml),
                "log": str(self.log_path)}


def _yaml(obj: Any, indent: int = 0) -> str:
    """Tiny YAML emitter for the config (JSON scalars are valid YAML)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(_yaml(v, indent + 1))
            else:
                lines.append(f"{pad}{k}: {json.dumps(v)}")
    elif isinstance(obj, list):
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                sub = _yaml(v, indent + 1).lstrip()
                lines.append(f"{pad}- {sub}")
            else:
                lines.append(f"{pad}- {json.dumps(v)}")
    else:
        lines.append(pad + json.dumps(obj))
    return "\n".join(lines)


class PatroniCluster:
    """`members` Patroni + PostgreSQL 15 members on loopback, DCS = `consul`.
    The Patroni is `patroni` ("3" or "4"), else $PGBC_PATRONI (patroni_install);
    `patroni_version` is the version it runs, checked at start.

    Keys in Consul: service/<scope>/leader (member name, session-locked),
    service/<scope>/members/<name> (JSON with conn_url/api_url/role/state), ...
    The leader's record says role "master" (3.x) or "primary" (4.x), see
    primary_role; who leads is the leader key's to say, not the records'.
    """

    def __init__(self, workdir: str | os.PathLike, consul: Consul, scope: str = "raddb",
                 members: int = 3, namespace: str = "service", ttl: int = 20,
                 loop_wait: int = 2, retry_timeout: int | None = None,
                 names: Iterable[str] | None = None, pg_parameters: dict | None = None,
                 register_service: bool = True, patroni: str | None = None,
                 restapi_auth: tuple[str, str] | None = None,
                 restapi_tls: TlsFiles | None = None,
                 tags: dict[str, dict] | None = None,
                 member_consul: dict[str, str] | None = None):
        """restapi_auth: (username, password) Patroni's REST API asks of unsafe
        calls (PATCH /config, switchover, restart...); restapi_tls: https with
        verify_client required (a client certificate for every call).  The
        lab's own REST calls, Patroni's and patronictl's use both.  tags:
        per member, the `tags:` of its patroni.yml (written into its record).
        member_consul: per member, the Consul URL its patroni.yml names
        (e.g. a proxy in front of `consul`, to cut that member off); a
        member not named talks to consul.url.  The lab's own calls always
        go to `consul`."""
        self.workdir = Path(workdir)
        self.restapi_auth = restapi_auth
        self.restapi_tls = restapi_tls
        self.consul = consul
        self.scope = scope
        self.namespace = namespace.strip("/")
        self.install = patroni_install(patroni)
        if retry_timeout is None:
            # 4.x refuses loop_wait + 2 * retry_timeout > ttl and silently
            # rewrites the values in `config` (LAB.md): 9 fits ttl 20, loop_wait 2
            retry_timeout = 9 if self.install.major == "4" else 5
        if self.install.major == "4" and loop_wait + 2 * retry_timeout > ttl:
            raise ValueError(f"Patroni {self.install.version} would rewrite loop_wait "
                             f"{loop_wait} + 2 * retry_timeout {retry_timeout} > ttl {ttl}")
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.register_service = register_service
        # per member: `tags:` of its patroni.yml, which Patroni writes into its record
        self.tags = dict(tags or {})
        self.member_consul = dict(member_consul or {})
        self.pg_parameters = {
            "shared_buffers": "16MB", "max_connections": 50, "wal_level": "replica",
            "hot_standby": "on", "max_wal_senders": 10, "max_replication_slots": 10,
            "wal_log_hints": "on", "wal_keep_size": "64MB", "max_worker_processes": 8,
            "checkpoint_timeout": "5min", "log_min_messages": "warning",
        }
        self.pg_parameters.update(pg_parameters or {})
        names = list(names) if names else [f"n{i + 1}" for i in range(members)]
        unknown = sorted(set(self.member_consul) - set(names))
        if unknown:
            raise ValueError(f"member_consul names {unknown}, not members of {names}")
        self._members: dict[str, Member] = {}
        for n in names:
            self._members[n] = Member(name=n, port=free_port(), api_port=free_port(),
                                      dir=self.workdir / n,
                                      scheme="https" if restapi_tls else "http")
        self.start_time: float | None = None
        self._write_configs()

    def __repr__(self) -> str:
        return f"<PatroniCluster {self.scope} {list(self._members)} patroni {self.patroni_version}>"

    # -- which patroni
    @property
    def patroni_version(self) -> str:
        return self.install.version

    @property
    def primary_role(self) -> str:
        """What this Patroni writes as the leader's role in its member record."""
        return self.install.primary_role

    def patronictl_argv(self, *args: str, member: str | None = None) -> list[str]:
        """`patronictl -c <member's yml> ARGS` for this cluster's Patroni; run
        it as postgres with patroni_env()."""
        yml = self._members[member or next(iter(self._members))].yml
        return self.install.argv("patronictl") + ["-c", str(yml), *args]

    def patronictl(self, *args: str, member: str | None = None,
                   timeout: float = 60.0) -> subprocess.CompletedProcess:
        """Run patronictl as postgres; the CompletedProcess (text), whatever its rc."""
        p = self._popen_as_pg(self.patronictl_argv(*args, member=member),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=str(self.workdir))
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_pid(p.pid, timeout=5, proc=p, name="patronictl")
            raise
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    # -- keys
    @property
    def prefix(self) -> str:
        return f"{self.namespace}/{self.scope}/" if self.namespace else f"{self.scope}/"

    @property
    def leader_key(self) -> str:
        return self.prefix + "leader"

    def member_key(self, name: str) -> str:
        return self.prefix + "members/" + name

    # -- config
    def config_for(self, m: Member) -> dict:
        consul_cfg: dict[str, Any] = {"url": self.member_consul.get(m.name, self.consul.url),
                                      "register_service": self.register_service}
        if self.consul.token:
            consul_cfg["token"] = self.consul.token
        return {
            "scope": self.scope,
            "namespace": f"/{self.namespace}/",
            "name": m.name,
            "log": {"level": "INFO",
                    "format": "%(asctime)s %(levelname)s: %(message)s"},
            "restapi": {"listen": f"127.0.0.1:{m.api_port}",
                        "connect_address": f"127.0.0.1:{m.api_port}",
                        **self._restapi_hardening()[0]},
            **({"ctl": self._restapi_hardening()[1]} if self.restapi_tls else {}),
            "consul": consul_cfg,
            "bootstrap": {
                "dcs": {
                    "ttl": self.ttl, "loop_wait": self.loop_wait,
                    "retry_timeout": self.retry_timeout,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {"use_pg_rewind": True, "use_slots": True,
                                   "parameters": self.pg_parameters},
                },
                "initdb": [{"encoding": "UTF8"}, "data-checksums"],
                "pg_hba": ["local all all trust",
                           f"host replication {REPL_USER} 127.0.0.1/32 md5",
                           "host all all 127.0.0.1/32 md5"],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{m.port}",
                "connect_address": f"127.0.0.1:{m.port}",
                "data_dir": str(m.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(m.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": PG_USER, "password": PG_PASSWORD},
                    "replication": {"username": REPL_USER, "password": REPL_PASSWORD},
                },
                "parameters": {"unix_socket_directories": str(m.socket_dir)},
                "pg_hba": ["local all all trust",
                           f"host replication {REPL_USER} 127.0.0.1/32 md5",
                           "host all all 127.0.0.1/32 md5"],
            },
            "watchdog": {"mode": "off"},
            **({"tags": self.tags[m.name]} if self.tags.get(m.name) else {}),
        }

    def _restapi_hardening(self) -> tuple[dict, dict]:
        """(restapi keys, ctl section) for restapi_auth and restapi_tls."""
        restapi: dict[str, Any] = {}
        ctl: dict[str, Any] = {}
        if self.restapi_auth:
            restapi["authentication"] = {"username": self.restapi_auth[0],
                                         "password": self.restapi_auth[1]}
        t = self.restapi_tls
        if t:
            restapi.update(certfile=str(t.server_cert), keyfile=str(t.server_key),
                           cafile=str(t.ca), verify_client="required")
            ctl.update(insecure=False, cacert=str(t.ca), certfile=str(t.client_cert),
                       keyfile=str(t.client_key))
        return restapi, ctl

    def _write_configs(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.workdir, 0o755)
        for m in self._members.values():
            m.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(m.dir, 0o755)   # others (e.g. a pgbouncer user) may use the socket
            m.yml.write_text(_yaml(self.config_for(m)) + "\n")
            m.log_path.touch()
        chown_tree(self.workdir)

    # -- process control
    def _env(self) -> dict:
        return self.patroni_env()

    def patroni_env(self) -> dict:
        """The environment Patroni and patronictl run with (as postgres)."""
        pw = pwd.getpwnam(PG_USER)
        return {"PATH": f"{PG_BIN}:/usr/local/bin:/usr/bin:/bin", "HOME": pw.pw_dir,
                "USER": PG_USER, "LOGNAME": PG_USER, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "PYTHONUNBUFFERED": "1", **self.install.env()}

    def _popen_as_pg(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            kw.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        return subprocess.Popen(argv, env=self._env(), stdin=subprocess.DEVNULL, **kw)

    def start_member(self, name: str) -> Member:
        m = self._members[name]
        if m.proc and m.proc.poll() is None:
            return m
        # A postmaster left over from a killed Patroni would block the port.
        self._kill_postmaster(m)
        logf = open(m.log_path, "ab")
        logf.write(f"\n==== lab: start #{m.starts + 1} {time.ctime()} ====\n".encode())
        logf.flush()
        m.proc = self._popen_as_pg(self.install.argv("patroni") + [str(m.yml)], stdout=logf,
                                   stderr=subprocess.STDOUT, start_new_session=True,
                                   cwd=str(m.dir))
        logf.close()
        m.starts += 1
        REGISTRY.add(self)
        return m

    def _kill_postmaster(self, m: Member, sig: int = signal.SIGKILL, timeout: float = 10) -> None:
        pm = m.postmaster_pid()
        if pm:
            _signal(pm, sig)
            if not wait_pid_gone(pm, timeout):
                _signal(pm, signal.SIGKILL)
                wait_pid_gone(pm, 5)
        # backends of a SIGKILLed postmaster exit by themselves (postmaster death);
        # wait for the port to be released so the member can start again
        wait_port_free(m.port, 10)

    def stop_member(self, name: str, timeout: float = 30.0) -> None:
        """Graceful stop (SIGTERM Patroni: it shuts Postgres down and, if it is the
        leader, releases the leader key), bounded; then SIGKILL Patroni and the
        postmaster (by PID from postmaster.pid) if they are still there."""
        m = self._members[name]
        pm = m.postmaster_pid()
        if m.proc is not None:
            stop_pid(m.proc.pid, timeout=timeout, sig=signal.SIGTERM, proc=m.proc,
                     name=f"patroni {name}")
            m.proc = None
        pm = m.postmaster_pid() or (pm if pid_alive(pm) else None)
        if pm:
            # Patroni died without stopping postgres: fast shutdown, then SIGKILL.
            log(f"{name}: postmaster {pm} survived patroni; stopping it")
            _signal(pm, signal.SIGINT)
            if not wait_pid_gone(pm, 15):
                _signal(pm, signal.SIGKILL)
                wait_pid_gone(pm, 5)
            wait_port_free(m.port, 10)

    def kill9_member(self, name: str) -> dict:
        """SIGKILL the member's Patroni and its postmaster (by PID), no cleanup."""
        m = self._members[name]
        pm = m.postmaster_pid()
        ppid = m.pid
        if ppid:
            os.kill(ppid, signal.SIGKILL)
        if pm:
            os.kill(pm, signal.SIGKILL)
        if ppid:
            wait_pid_gone(ppid, 10, m.proc)
        m.proc = None
        if pm:
            wait_pid_gone(pm, 10)
        log(f"kill -9 {name}: patroni pid {ppid}, postmaster pid {pm}")
        return {"name": name, "patroni_pid": ppid, "postmaster_pid": pm,
                "time": time.monotonic()}

    def kill9_primary(self) -> dict:
        name = self.leader()
        if not name:
            raise RuntimeError("no leader to kill")
        return self.kill9_member(name)

    def start(self, timeout: float = 90.0) -> "PatroniCluster":
        self.install.check()
        fresh = not any((m.data_dir / "PG_VERSION").exists() for m in self._members.values())
        if fresh:
            # a reused Consul may still hold an old cluster's keys (initialize, config)
            self.consul.kv_delete(self.prefix, recurse=True)
        t0 = time.monotonic()
        try:
            for n in self._members:
                self.start_member(n)
            self.wait_healthy(timeout=timeout)
            self.check_member_versions()
        except BaseException:
            log("cluster start failed; log tails:\n" + self.log_tails())
            self.stop()
            raise
        self.start_time = time.monotonic() - t0
        log(f"patroni {self.patroni_version} cluster {self.scope} healthy in "
            f"{self.start_time:.1f}s: "
            f"leader={self.leader()} members={ {n: m.port for n, m in self._members.items()} }")
        return self

    def check_member_versions(self) -> None:
        """Every running member's record names the Patroni version asked for
        (what each running process wrote itself)."""
        def versions() -> dict:
            return {n: (self.member_record(n) or {}).get("version")
                    for n, m in self._members.items() if m.pid}
        try:
            wait_until(lambda: set(versions().values()) == {self.patroni_version}, 30, 0.2,
                       f"member records of Patroni {self.patroni_version}")
        except TimeoutError:
            raise RuntimeError(f"asked for Patroni {self.patroni_version}, member records "
                               f"say {versions()}") from None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop every member (replicas first, then the leader), bounded."""
        try:
            leader = self.leader()
        except Exception:  # noqa: BLE001  (consul may be down)
            leader = None
        order = sorted(self._members, key=lambda n: n == leader)
        threads = []
        for n in order[:-1]:
            t = threading.Thread(target=self._safe_stop, args=(n, timeout))
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout + 30)
        if order:
            self._safe_stop(order[-1], timeout)
        REGISTRY.remove(self)

    def _safe_stop(self, name: str, timeout: float) -> None:
        try:
            self.stop_member(name, timeout)
        except Exception as e:  # noqa: BLE001
            log(f"stop {name}: {e!r}")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- state
    def members(self) -> dict[str, dict]:
        return {n: m.as_dict() for n, m in self._members.items()}

    def member(self, name: str) -> Member:
        return self._members[name]

    @property
    def names(self) -> list[str]:
        return list(self._members)

    def leader(self) -> str | None:
        kv = self.consul.kv_get(self.leader_key)
        return kv.value if kv else None

    def leader_address(self) -> tuple[str, int] | None:
        """(host, port) of the leader per Consul: conn_url of members/<leader>."""
        name = self.leader()
        rec = self.member_record(name) if name else None
        if not rec:
            return None
        u = urllib.parse.urlsplit(rec["conn_url"])
        return u.hostname, u.port

    def pause(self, timeout: float = 30.0) -> None:
        """`patronictl pause`: PATCH /config {"pause": true} (leader key is kept)."""
        self._patch_config({"pause": True}, timeout)

    def resume(self, timeout: float = 30.0) -> None:
        self._patch_config({"pause": None}, timeout)

    def _patch_config(self, body: dict, timeout: float) -> None:
        name = self.leader() or next(n for n, m in self._members.items() if m.pid)
        st, resp = self.rest(name, "/config", "PATCH", body, timeout=10)
        if st != 200:
            raise RuntimeError(f"PATCH /config {body} -> {st}: {resp}")
        want = bool(body.get("pause"))
        wait_until(lambda: all(bool((self.rest(n, "/patroni", timeout=2)[1] or {}).get("pause"))
                               == want for n, m in self._members.items() if m.pid),
                   timeout, 0.2, f"pause={want} on all members")

    def leader_kv(self) -> KV | None:
        return self.consul.kv_get(self.leader_key)

    def member_record(self, name: str) -> dict | None:
        kv = self.consul.kv_get(self.member_key(name))
        return kv.json() if kv else None

    def rest_credentials(self) -> dict:
        """http_json keyword arguments with the REST API's basic auth and TLS."""
        kw: dict[str, Any] = {}
        if self.restapi_auth:
            token = base64.b64encode(":".join(self.restapi_auth).encode()).decode()
            kw["headers"] = {"Authorization": f"Basic {token}"}
        if self.restapi_tls:
            kw["context"] = self.restapi_tls.client_context()
        return kw

    def rest(self, name: str, path: str, method: str = "GET", body: Any = None,
             timeout: float = 5.0) -> tuple[int, Any]:
        return http_json(method, self._members[name].api_url + path, body, timeout=timeout,
                         **self.rest_credentials())

    def cluster_view(self) -> dict | None:
        """GET /cluster from the first member that answers."""
        for m in self._members.values():
            if m.pid is None:
                continue
            try:
                st, body = http_json("GET", m.api_url + "/cluster", timeout=2,
                                     **self.rest_credentials())
                if st == 200 and isinstance(body, dict):
                    return body
            except OSError:
                continue
        return None

    def health(self) -> tuple[bool, str]:
        """(healthy?, description).  Healthy = the Consul leader key names a running
        member that is Patroni's leader and is writable per its REST API, every
        running member shows up in /cluster as running, and the leader streams to
        all running replicas."""
        running = [n for n, m in self._members.items() if m.pid]
        leader = self.leader()
        if not leader:
            return False, "no leader key"
        view = self.cluster_view()
        if not view:
            return False, "no /cluster answer"
        ms = {m["name"]: m for m in view.get("members", [])}
        bad = [f"{n}:{ms.get(n, {}).get('role')}/{ms.get(n, {}).get('state')}"
               for n in running if ms.get(n, {}).get("state") not in ("running", "streaming")]
        if bad:
            return False, f"not running: {bad}"
        if ms.get(leader, {}).get("role") != "leader":
            return False, f"leader key={leader} but /cluster says {ms.get(leader)}"
        st, body = self.rest(leader, "/primary", timeout=2)
        if st != 200:
            return False, f"{leader} /primary -> {st}"
        streaming = {r.get("application_name") for r in (body or {}).get("replication", [])
                     if r.get("state") == "streaming"}
        missing = [n for n in running if n != leader and n not in streaming]
        if missing:
            return False, f"not streaming from {leader}: {missing}"
        return True, f"leader={leader} replicas={sorted(streaming)}"

    def wait_healthy(self, timeout: float = 90.0) -> str:
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            for n, m in self._members.items():
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"patroni {n} exited rc={m.proc.returncode}:\n"
                                       + self.log_tail(n))
            try:
                ok, last = self.health()
            except Exception as e:  # noqa: BLE001
                ok, last = False, repr(e)
            if ok:
                return last
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not healthy after {timeout}s: {last}\n"
                                   + self.log_tails())
            time.sleep(0.5)

    def wait_for_leader(self, not_in: Iterable[str] = (), timeout: float = 60.0,
                        writable: bool = True) -> str:
        """Wait until the Consul leader key names a member not in `not_in`; with
        writable=True also until that member accepts a write (not in recovery).
        Returns the leader's name."""
        excluded = set(not_in)

        def check() -> str | None:
            name = self.leader()
            if not name or name in excluded:
                return None
            if writable and not self.is_writable(name):
                return None
            return name
        return wait_until(check, timeout, 0.1,
                          f"leader not in {sorted(excluded)} (writable={writable})")

    def is_writable(self, name: str) -> bool:
        import psycopg
        try:
            with psycopg.connect(self.dsn(name, connect_timeout=2), autocommit=True) as c:
                return not c.execute("select pg_is_in_recovery()").fetchone()[0]
        except psycopg.Error:
            return False

    def dsn(self, member: str | None = None, dbname: str = "postgres",
            connect_timeout: int = 5) -> str:
        m = self._members[member or self.leader()]
        return (f"host=127.0.0.1 port={m.port} user={PG_USER} password={PG_PASSWORD} "
                f"dbname={dbname} connect_timeout={connect_timeout}")

    def connect(self, member: str | None = None, **kw: Any):
        import psycopg
        return psycopg.connect(self.dsn(member), **kw)

    # -- operations
    def switchover(self, candidate: str | None = None, timeout: float = 60.0,
                   use_patronictl: bool = False) -> dict:
        """Planned switchover via the leader's REST API (POST /switchover
        {"leader", "candidate"}), or `patronictl switchover --force`.
        Returns {"old", "new", "status", "body", "seconds"} once Consul names a new,
        writable leader."""
        old = self.leader()
        if not old:
            raise RuntimeError("no leader: cannot switch over")
        t0 = time.monotonic()
        if use_patronictl:
            # --leader: 4.x dropped --master; 3.0.2 takes both
            args = ["switchover", "--leader", old, "--force"]
            if candidate:
                args += ["--candidate", candidate]
            r = self.patronictl(*args, member=old, timeout=timeout)
            status, body = r.returncode, r.stdout + r.stderr
            if status != 0:
                raise RuntimeError(f"patronictl switchover failed rc={status}: {body}")
        else:
            payload = {"leader": old}
            if candidate:
                payload["candidate"] = candidate
            status, body = self.rest(old, "/switchover", "POST", payload, timeout=timeout)
            if status not in (200, 202):
                raise RuntimeError(f"POST /switchover {payload} -> {status}: {body}")
        new = self.wait_for_leader(not_in=[old], timeout=timeout)
        if candidate and new != candidate:
            raise RuntimeError(f"switchover to {candidate} gave leader {new}")
        return {"old": old, "new": new, "status": status, "body": body,
                "seconds": time.monotonic() - t0}

    # -- logs
    def log_tail(self, name: str, n: int = 30) -> str:
        try:
            lines = self._members[name].log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def log_tails(self, n: int = 15) -> str:
        return "\n".join(f"--- {name} ({m.log_path}) ---\n{self.log_tail(name, n)}"
                         for name, m in self._members.items())
