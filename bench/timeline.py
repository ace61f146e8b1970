"""bench/timeline.py: the clocks bench/switchover reads one switchover from.

- ProcWriter: a writer in a process of its own (bench/writer.py), CLOCK_MONOTONIC.
- ScopeRecorder: a blocking watcher on a whole Patroni scope in Consul
  (GET /v1/kv/<ns>/<scope>/?recurse&index=N), one event per key change.
- ForkLog: PgBouncer's log (wall clock, ms) turned into fork events on the
  monotonic clock.
- Table: rows of (event, time) printed relative to two references, and
  their medians over rounds.
"""

from __future__ import annotations

import base64
import calendar
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent


def wall_to_mono_offset() -> float:
    """time.time() - time.monotonic(), read back to back (the smallest of 5)."""
    best = None
    for _ in range(5):
        a = time.monotonic()
        w = time.time()
        b = time.monotonic()
        if best is None or b - a < best[0]:
            best = (b - a, w - (a + b) / 2)
    return best[1]


# --------------------------------------------------------------------------- writers

class ProcWriter:
    """bench/writer.py in a child process; its events are read by a thread here.
    Every time is the child's CLOCK_MONOTONIC (time.monotonic() here too)."""

    def __init__(self, name: str, conninfo: str, statement: str, interval: float = 0.005,
                 retry: float = 0.0):
        self.name = name
        self.done: list[float] = []
        self.errors: list[tuple[float, str]] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "writer.py"), conninfo, statement, str(interval),
             str(retry)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            text=True, bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "o":
                self.done.append(float(rest))
            elif kind == "e":
                t, _, msg = rest.partition(" ")
                self.errors.append((float(t), msg))

    def stop(self, stop_pid=None) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            if stop_pid:
                stop_pid(self.proc.pid, timeout=5, proc=self.proc, name=f"writer {self.name}")
        self._reader.join(5)
        self.proc = None

    @property
    def ok(self) -> int:
        return len(self.done)

    def successes_since(self, t: float) -> int:
        n = 0
        for d in reversed(self.done):
            if d < t:
                break
            n += 1
        return n

    def gap(self, since: float) -> tuple[float, float] | None:
        """(last write before, first write after) the longest gap since `since`."""
        done = [d for d in self.done if d >= since]
        best = None
        for a, b in zip(done, done[1:]):
            if best is None or b - a > best[1] - best[0]:
                best = (a, b)
        return best

    def errors_between(self, a: float, b: float) -> list[tuple[float, str]]:
        return [(t, e) for t, e in self.errors if a <= t <= b]


# --------------------------------------------------------------------------- consul

def _scope_watch(port: int, prefix: str, token: str, wait: str, out) -> None:
    """Blocking recursive queries on `prefix` until stdin closes; writes
    "i <json snapshot>" once, then "c <t> <json [key, value, session, index]>"
    per change (value null: deleted), t = CLOCK_MONOTONIC on the answer."""
    base = "/v1/kv/" + urllib.parse.quote(prefix) + "?recurse"
    headers = {"X-Consul-Token": token} if token else {}
    conn = None
    index = 0
    last = None
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            path = base + (f"&index={index}&wait={wait}" if index else "")
            conn.request("GET", path, headers=headers)
            r = conn.getresponse()
            raw = r.read()
            t = time.monotonic()
            new_index = int(r.getheader("X-Consul-Index") or 0)
            if r.status == 404:
                items = []
            elif r.status == 200:
                items = json.loads(raw)
            else:
                time.sleep(0.05)
                continue
            snap = {}
            for it in items:
                v = base64.b64decode(it["Value"]).decode(errors="replace") \
                    if it.get("Value") else ""
                snap[it["Key"][len(prefix):]] = [v, it.get("Session"), it["ModifyIndex"]]
            if last is None:
                out.write("i " + json.dumps(snap) + "\n")
            else:
                for k, cur in snap.items():
                    if last.get(k) != cur:
                        out.write(f"c {t:.6f} " + json.dumps([k] + cur) + "\n")
                for k in last.keys() - snap.keys():
                    out.write(f"c {t:.6f} " + json.dumps([k, None, None, 0]) + "\n")
            out.flush()
            last = snap
            index = new_index if new_index > index else (0 if new_index < index else index)
        except (OSError, http.client.HTTPException, ValueError):
            if conn is not None:
                conn.close()
            conn = None
            index = 0
            time.sleep(0.05)


class ScopeRecorder:
    """Every change of every key under `prefix` (e.g. "service/raddb/") as
    (monotonic time, key relative to prefix, value or None when deleted,
    session or None, ModifyIndex), from blocking recursive queries made by a
    process of its own (this file run as a script), so that the time an answer
    arrived is read without waiting for this process's GIL.
    `initial` is the first snapshot."""

    def __init__(self, consul, prefix: str, wait: str = "5s"):
        self.consul, self.prefix, self.wait = consul, prefix, wait
        self.events: list[tuple[float, str, str | None, str | None, int]] = []
        self.initial: dict = {}
        self._first = threading.Event()
        self.proc = None

    def _read(self) -> None:
        for line in self.proc.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "i":
                self.initial = json.loads(rest)
                self._first.set()
            elif kind == "c":
                t, _, js = rest.partition(" ")
                k, v, sess, idx = json.loads(js)
                self.events.append((float(t), k, v, sess, idx))

    def start(self) -> "ScopeRecorder":
        token = self.consul.token or ""
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "watch",
             str(self.consul.http_port), self.prefix, self.wait],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
            env={"PGBC_WATCH_TOKEN": token, "PATH": "/usr/bin:/bin"},
            start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._first.wait(10):
            self.stop()
            raise TimeoutError(f"no first answer for {self.prefix}?recurse")
        return self

    def stop(self, stop_pid=None) -> None:
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            if stop_pid:
                stop_pid(self.proc.pid, timeout=5, proc=self.proc, name="scope watcher")
        self._reader.join(5)
        self.proc = None

    def first(self, key: str, pred, after: float = 0.0) -> float | None:
        """Time of the first change of `key` after `after` whose (value, session)
        satisfies pred."""
        for t, k, v, s, _ in self.events:
            if k == key and t >= after and pred(v, s):
                return t
        return None


def member_role(value: str | None) -> str | None:
    try:
        return (json.loads(value) or {}).get("role") if value else None
    except ValueError:
        return None


def failover_named(value: str | None) -> bool:
    """A failover record naming a leader or candidate (not Patroni's "{}")."""
    try:
        obj = json.loads(value) if value else None
    except ValueError:
        return False
    return isinstance(obj, dict) and bool(obj.get("leader") or obj.get("member"))


# --------------------------------------------------------------------------- fork log

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\S+) \[\d+\] (\w+) (.*)$")
SOCK = r"(?P<sock>[SC])-0x[0-9a-f]+: (?P<db>[^/ ]+)/(?P<user>[^@ ]+)@(?P<host>[^ ]+):(?P<port>\d+) "
CR = r'consul_redirect: scope "(?P<scope>[^"]+)": '
PATTERNS = [
    ("announced", re.compile(CR + r'switchover from "(?P<from>[^"]*)".* announced')),
    ("no_leader", re.compile(CR + r"role primary: no member holds the leader key")),
    # one answer carries the leader key and its record: learning it is reading it
    ("new_leader", re.compile(CR + r"leader is (?P<name>\S+) \(")),
    ("leader_at", re.compile(CR + r"leader is (?P<name>\S+) \((?P<host>\S+) port (?P<port>\d+)\)")),
    ("points_at", re.compile(CR + r'database "(?P<db>[^"]+)" now points at (?P<host>\S+) port (?P<port>\d+)')),
    ("switch_over", re.compile(CR + r'switchover from "[^"]*" over \((?P<why>[^)]*)\)')),
    ("accepted_after", re.compile(CR + r'database "(?P<db>[^"]+)": server accepted after (?P<n>\d+) refused')),
    ("held", re.compile(r"database (?P<db>\S+): (?P<what>held|released) by plugin")),
    ("launch", re.compile(SOCK + r"launching new connection to server")),
    ("connected", re.compile(SOCK + r"new connection to server")),
    ("refused", re.compile(SOCK + r"plugin consul_redirect refused server: (?P<why>.*)")),
    ("closing", re.compile(SOCK + r"closing because: (?P<why>.*?) \(age=")),
    ("login_ok", re.compile(SOCK + r"server login ok")),
    # PgBouncer computes the SCRAM proof (PBKDF2, i=4096 here) between these two
    ("scram_server_first", re.compile(SOCK + r"SCRAM server-first-message")),
    ("scram_client_final", re.compile(SOCK + r"SCRAM client-final-message")),
    ("auth_ok", re.compile(SOCK + r"S: auth ok")),
]


class ForkLog:
    """PgBouncer's logfile.  PgBouncer stamps lines with the wall clock in ms
    (format_time_ms: "YYYY-MM-DD HH:MM:SS.mmm TZ", the ms truncated); the fork
    runs with TZ=UTC so the stamp is read without a zone database.  Each stamp
    gets +0.5 ms (the middle of its ms) and is moved to the monotonic clock."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def events(self, since: int, offset: float) -> list[tuple[float, str, dict]]:
        """(monotonic time, kind, fields) of every known line after byte `since`.
        offset: wall - monotonic."""
        with open(self.path, "rb") as f:
            f.seek(since)
            data = f.read().decode(errors="replace")
        out = []
        for line in data.splitlines():
            m = LINE.match(line)
            if not m:
                continue
            stamp, ms, tz, _level, msg = m.groups()
            if tz not in ("UTC", "GMT"):
                raise RuntimeError(f"pgbouncer log stamp in zone {tz}: run it with TZ=UTC")
            wall = calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) \
                + int(ms) / 1000 + 0.0005
            for kind, rx in PATTERNS:
                pm = rx.search(msg)
                if pm:
                    out.append((wall - offset, kind, pm.groupdict()))
                    break
        return out


PG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{3}) (\S+) \[\d+\] \w+:  (.*)$")
PATRONI_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+: (.*)$")
MEMBER_PATTERNS = [
    ("switchover_request", re.compile(r"received switchover request")),
    ("demoting", re.compile(r"manual failover: demoting myself|Demoting self")),
    ("checkpoint_start", re.compile(r"checkpoint starting: immediate force wait")),
    ("fast_shutdown", re.compile(r"received fast shutdown request")),
    ("shut_down", re.compile(r"database system is shut down")),
    ("key_released", re.compile(r"Leader key released")),
    ("took_lock", re.compile(r"promoted self to leader|acquired session lock as a leader")),
    ("promote_request", re.compile(r"received promote request")),
    ("recovery_complete", re.compile(r"archive recovery complete")),
    ("ready", re.compile(r"database system is ready to accept connections")),
]


class MemberLogs:
    """The members' patroni.log files, where lab.py's Patroni writes its own
    lines (asctime: local time, ms after a comma) and PostgreSQL's (%m: ms, in
    log_timezone, which the bench sets to UTC)."""

    def __init__(self, paths: dict[str, Path]):
        self.paths = {n: Path(p) for n, p in paths.items()}

    def mark(self) -> dict[str, int]:
        out = {}
        for n, p in self.paths.items():
            try:
                out[n] = p.stat().st_size
            except OSError:
                out[n] = 0
        return out

    def events(self, marks: dict[str, int], offset: float) -> list[tuple[float, str, str]]:
        """(monotonic time, member, kind), in time order."""
        out = []
        for n, p in self.paths.items():
            try:
                with open(p, "rb") as f:
                    f.seek(marks.get(n, 0))
                    data = f.read().decode(errors="replace")
            except OSError:
                continue
            for line in data.splitlines():
                m = PG_LINE.match(line)
                if m:
                    stamp, ms, tz, msg = m.groups()
                    if tz not in ("UTC", "GMT"):
                        continue
                    wall = calendar.timegm(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
                else:
                    m = PATRONI_LINE.match(line)
                    if not m:
                        continue
                    stamp, ms, msg = m.groups()
                    wall = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S"))
                wall += int(ms) / 1000 + 0.0005
                for kind, rx in MEMBER_PATTERNS:
                    if rx.search(msg):
                        out.append((wall - offset, n, kind))
                        break
        out.sort()
        return out


def first_member_event(ev, member, kind, after=float("-inf")):
    return next((t for t, n, k in ev if n == member and k == kind and t >= after), None)


def first_event(events, kind, after=float("-inf"), **match):
    for t, k, f in events:
        if k == kind and t >= after and all(str(f.get(a)) == str(b) for a, b in match.items()):
            return t, f
    return None, None


# --------------------------------------------------------------------------- tables

class Table:
    """Rows (label, monotonic time or None, note), printed as ms after two
    references.  Rows keep their label across rounds, for the medians."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float | None, str]] = []

    def add(self, label: str, t: float | None, note: str = "") -> None:
        self.rows.append((label, t, note))

    def relative(self, ref: float | None) -> dict[str, float | None]:
        return {label: (None if t is None or ref is None else (t - ref) * 1000)
                for label, t, _ in self.rows}


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v:+.1f}"


def print_table(title: str, table: Table, ref1: float | None, ref1_name: str,
                ref2: float | None, ref2_name: str) -> None:
    w = max(len(r[0]) for r in table.rows) + 2
    print(title)
    print(f"  {'event':<{w}}{ref1_name:>16}{ref2_name:>18}  note")
    for label, t, note in table.rows:
        a = None if t is None or ref1 is None else (t - ref1) * 1000
        b = None if t is None or ref2 is None else (t - ref2) * 1000
        print(f"  {label:<{w}}{fmt_ms(a):>16}{fmt_ms(b):>18}  {note}")


def print_medians(title: str, rounds: list[tuple[Table, float | None, float | None]],
                  ref1_name: str, ref2_name: str) -> None:
    """Per label, the median over rounds of its time after each reference."""
    labels: list[str] = []
    for table, _, _ in rounds:
        for label, _, _ in table.rows:
            if label not in labels:
                labels.append(label)
    rel1 = [table.relative(r1) for table, r1, _ in rounds]
    rel2 = [table.relative(r2) for table, _, r2 in rounds]
    w = max(len(x) for x in labels) + 2
    print(title)
    print(f"  {'event':<{w}}{ref1_name:>16}{ref2_name:>18}  rounds")
    for label in labels:
        a = [r[label] for r in rel1 if r.get(label) is not None]
        b = [r[label] for r in rel2 if r.get(label) is not None]
        print(f"  {label:<{w}}{fmt_ms(statistics.median(a) if a else None):>16}"
              f"{fmt_ms(statistics.median(b) if b else None):>18}  {len(a)}")


def median_or_none(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


if __name__ == "__main__" and sys.argv[1:2] == ["watch"]:
    import os
    # the watch blocks in Consul: a thread ends the process when stdin closes
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    _scope_watch(int(sys.argv[2]), sys.argv[3], os.environ.get("PGBC_WATCH_TOKEN", ""),
                 sys.argv[4], sys.stdout)
