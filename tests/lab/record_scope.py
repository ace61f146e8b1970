#!/usr/bin/python3
"""Record what a watcher of a whole Patroni scope sees in Consul during real
lab events, as data for unit tests of a pure function (tests/unit/data/recorded).

While an event happens on a real 3-member cluster (tests/integration/lab.py),
a thread runs Consul blocking queries on the scope's prefix,
``GET /v1/kv/<namespace>/<scope>/?recurse`` first without an index, then with
``&index=N`` (N the last X-Consul-Index), re-issued as soon as each answer
arrives, and keeps every answer with its arrival time.  Recording starts about
two seconds before the event and stops once the answers show a stable cluster
again: a held leader key whose member's record says master/primary, and every
other record a running replica (for pause: no record or config saying pause).

Each recording is written as <out>/patroni<version>-<event>.json:

    {"patroni": "4.0.7", "event": "switchover", "namespace": "service",
     "scope": "raddb", "members": {"n1": "127.0.0.1:PORT", ...},
     "truth": [{"t_ms": ..., "what": "leader key deleted"}, ...],
     "answers": [{"t_ms": 0, "index": 1234, "body": [...]}, ...]}

``body`` is Consul's JSON array as the agent sent it (base64 Values and all,
indented as Consul indents it; only its final newline dropped); ``t_ms``
counts milliseconds since the answer's arrival from the recording's start.
``truth`` is the timeline derived from the answers by derive_truth() (what
changed between two answers), plus "lab: ..." entries saying when the
recorder acted (switchover requested, kill -9, pause, resume).

Run as root (Patroni runs as postgres), one cluster per Patroni version:

    /usr/bin/python3 tests/lab/record_scope.py --patroni 3 --patroni 4

Patroni 4 needs scripts/fetch-patroni.sh first (test.sh runs it).  Every
server is started on 127.0.0.1 on ports lab.py picks and stopped by PID.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "integration"))

import lab  # noqa: E402

EVENTS = ("switchover", "failover", "pause")
PRIMARY_ROLES = ("master", "primary")


# --------------------------------------------------------------------------- recording

class ScopeRecorder:
    """Blocking queries on a whole scope prefix in a thread; every answer kept."""

    def __init__(self, consul: lab.Consul, prefix: str):
        self.consul, self.prefix = consul, prefix
        self.path = "/v1/kv/" + prefix + "?recurse"
        self.t0 = 0.0
        self.answers: list[dict] = []      # {"t_ms", "index", "raw"}
        self.marks: list[dict] = []        # {"t_ms", "what"}: what the lab did
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._conn: http.client.HTTPConnection | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def now_ms(self) -> int:
        return int((time.monotonic() - self.t0) * 1000)

    def mark(self, what: str) -> None:
        self.marks.append({"t_ms": self.now_ms(), "what": "lab: " + what})
        lab.log(f"record: {what}")

    def _run(self) -> None:
        index = 0
        while not self._stop.is_set():
            path = self.path + (f"&index={index}" if index else "")
            try:
                if self._conn is None:
                    # no timeout: a blocking query waits up to Consul's default
                    # 5 minutes; stop() shuts the socket down
                    self._conn = http.client.HTTPConnection("127.0.0.1", self.consul.http_port)
                self._conn.request("GET", path, headers=self.consul._headers())
                r = self._conn.getresponse()
                raw = r.read()
                t_ms = self.now_ms()
            except (OSError, http.client.HTTPException) as e:
                if self._stop.is_set():
                    break
                self.errors.append(f"{self.now_ms()} ms: GET {path}: {e!r}")
                if self._conn is not None:
                    self._conn.close()
                self._conn = None
                index = 0
                time.sleep(0.05)
                continue
            new = int(r.getheader("X-Consul-Index") or 0)
            if r.status == 200:
                json.loads(raw)                 # refuse what is not JSON at once
                with self._cond:
                    self.answers.append({"t_ms": t_ms, "index": new, "raw": raw.decode()})
                    self._cond.notify_all()
            else:
                self.errors.append(f"{t_ms} ms: GET {path}: HTTP {r.status} {raw[:200]!r}")
                time.sleep(0.05)
            # Consul's rules for blocking queries: start over when the index
            # goes backwards, never block on 0
            index = new if new >= index else 0
        if self._conn is not None:
            self._conn.close()

    def start(self) -> "ScopeRecorder":
        self.t0 = time.monotonic()
        self._thread.start()
        self.wait_for(lambda kv: True, 10, "the first answer")
        return self

    def stop(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(10)
        if self._thread.is_alive():
            raise RuntimeError("the recording thread did not stop")

    def latest(self) -> dict[str, dict] | None:
        with self._cond:
            return decode(self.answers[-1]["raw"]) if self.answers else None

    def wait_for(self, pred: Callable[[dict[str, dict]], bool], timeout: float,
                 what: str) -> int:
        """Wait until the latest answer satisfies pred; its t_ms."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for a in self.answers[seen:]:
                    if pred(decode(a["raw"])):
                        return a["t_ms"]
                seen = len(self.answers)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no answer shows {what} after {timeout} s")
                self._cond.wait(min(left, 0.5))


def decode(raw: str | list) -> dict[str, dict]:
    """An answer (its text, or its parsed body) as {key relative to the scope:
    {"value": decoded str or None, "session", "modify"}}."""
    out = {}
    for item in (json.loads(raw) if isinstance(raw, str) else raw):
        v = base64.b64decode(item["Value"]).decode() if item.get("Value") else None
        out[item["Key"].split("/", 2)[2]] = {"value": v, "session": item.get("Session"),
                                             "modify": item["ModifyIndex"]}
    return out


def member_json(kv: dict[str, dict], name: str) -> dict | None:
    rec = kv.get(f"members/{name}")
    try:
        return json.loads(rec["value"]) if rec and rec["value"] else None
    except ValueError:
        return None


def stable(kv: dict[str, dict], not_leader: str | None = None) -> bool:
    """A held leader key (not `not_leader`), its member's record master/primary
    and running, every other record a running replica, no failover pending."""
    lk = kv.get("leader")
    if not lk or not lk["session"] or not lk["value"] or lk["value"] == not_leader:
        return False
    fo = kv.get("failover")
    if fo and fo["value"] not in (None, "", "{}"):
        return False
    names = [k.split("/", 1)[1] for k in kv if k.startswith("members/")]
    for n in names:
        rec = member_json(kv, n) or {}
        want = PRIMARY_ROLES if n == lk["value"] else ("replica",)
        if rec.get("state") != "running" or rec.get("role") not in want:
            return False
    return lk["value"] in names


def paused(kv: dict[str, dict]) -> bool:
    cfg = kv.get("config")
    try:
        return bool(json.loads(cfg["value"]).get("pause")) if cfg and cfg["value"] else False
    except ValueError:
        return False


def members_paused(kv: dict[str, dict]) -> list[bool]:
    return [bool((member_json(kv, k.split("/", 1)[1]) or {}).get("pause"))
            for k in kv if k.startswith("members/")]


# --------------------------------------------------------------------------- truth

MEMBER_FIELDS = ("role", "state", "replication_state", "pause")


def _member_summary(rec: dict | None) -> dict:
    return {f: rec.get(f) for f in MEMBER_FIELDS} if rec else {}


def _describe_member(name: str, rec: dict, before: dict | None = None) -> str:
    parts = [f"says {rec.get('role')}", rec.get("state") or "no state"]
    if rec.get("replication_state"):
        parts.append(f"replication_state {rec['replication_state']}")
    elif before and before.get("replication_state"):
        parts.append("no replication_state")
    if rec.get("pause"):
        parts.append("pause")
    elif before and before.get("pause"):
        parts.append("no pause")
    return f"{name} record " + ", ".join(parts)


def derive_truth(answers: list[dict]) -> list[dict]:
    """What changed between consecutive answers, in words a reader can follow:
    leader key deleted / now nX / re-acquired by another session, failover key
    written / cleared / deleted, a member record's role, state,
    replication_state or pause changing, the record appearing or going away,
    config's pause, a new history entry, sync written."""
    truth: list[dict] = []
    prev: dict[str, dict] | None = None
    for a in answers:
        kv = decode(a["raw"] if "raw" in a else a["body"])
        t = a["t_ms"]

        def say(what: str) -> None:
            truth.append({"t_ms": t, "what": what})
        if prev is None:
            lk = kv.get("leader")
            say(f"first answer: leader key {lk['value'] if lk else 'absent'}, "
                + ", ".join(_describe_member(k.split("/", 1)[1],
                                             member_json(kv, k.split("/", 1)[1]) or {})
                            for k in sorted(kv) if k.startswith("members/")))
            prev = kv
            continue
        # leader
        old, new = prev.get("leader"), kv.get("leader")
        if old and not new:
            say("leader key deleted")
        elif new and (not old or new["value"] != old["value"]):
            say(f"leader key now {new['value']}")
        elif new and old and new["session"] != old["session"]:
            say(f"leader key {new['value']} held by another session")
        # failover
        old, new = prev.get("failover"), kv.get("failover")
        if old and not new:
            say("failover key deleted")
        elif new and (not old or new["modify"] != old["modify"]):
            v = new["value"] or ""
            say("failover key cleared ({})" if v.strip() in ("", "{}")
                else f"failover key written: {v}")
        # members
        names = sorted({k.split("/", 1)[1] for k in list(prev) + list(kv)
                        if k.startswith("members/")})
        for n in names:
            before, after = member_json(prev, n), member_json(kv, n)
            if before is not None and after is None:
                say(f"{n} record deleted")
            elif after is not None and before is None:
                say(_describe_member(n, after) + " (record created)")
            elif after is not None and _member_summary(after) != _member_summary(before):
                say(_describe_member(n, after, before))
        # config pause, history, sync
        if paused(kv) != paused(prev):
            say("config says pause" if paused(kv) else "config no longer says pause")
        old, new = prev.get("history"), kv.get("history")
        if new and (not old or new["modify"] != old["modify"]):
            try:
                last = json.loads(new["value"] or "[]")[-1]
                say(f"history key: timeline {last[0]} ended at {last[1]}")
            except (ValueError, IndexError, TypeError):
                say("history key written")
        old, new = prev.get("sync"), kv.get("sync")
        if new and (not old or new["modify"] != old["modify"]):
            say(f"sync key written: {new['value']}")
        prev = kv
    return truth


# --------------------------------------------------------------------------- events

def record_event(cluster: lab.PatroniCluster, event: str, out: Path,
                 lead_in: float = 2.0, settle_timeout: float = 120.0) -> Path:
    cluster.wait_healthy(timeout=120)
    rec = ScopeRecorder(cluster.consul, cluster.prefix).start()
    try:
        rec.wait_for(lambda kv: stable(kv) and not paused(kv), 60, "a stable cluster")
        time.sleep(lead_in)
        old = cluster.leader()
        if event == "switchover":
            rec.mark(f"POST /switchover leader={old} (REST API of {old})")
            res = cluster.switchover()
            rec.mark(f"lab sees {res['new']} writable")
            rec.wait_for(lambda kv: stable(kv, not_leader=old), settle_timeout,
                         "a stable cluster with a new leader")
        elif event == "failover":
            info = cluster.kill9_primary()
            rec.marks.append({"t_ms": int((info["time"] - rec.t0) * 1000),
                              "what": f"lab: kill -9 {old} (patroni pid {info['patroni_pid']}, "
                                      f"postmaster pid {info['postmaster_pid']})"})
            rec.wait_for(lambda kv: stable(kv, not_leader=old), settle_timeout,
                         "a stable cluster with a new leader")
        elif event == "pause":
            rec.mark("PATCH /config {\"pause\": true}")
            cluster.pause()
            rec.wait_for(lambda kv: paused(kv) and all(members_paused(kv)), settle_timeout,
                         "config and every record saying pause")
            time.sleep(3 * cluster.loop_wait)
            rec.mark("PATCH /config {\"pause\": null}")
            cluster.resume()
            rec.wait_for(lambda kv: not paused(kv) and not any(members_paused(kv))
                         and stable(kv), settle_timeout, "pause gone everywhere")
        else:
            raise ValueError(f"unknown event {event!r}")
        rec.mark("stable again: recording stops")
    finally:
        rec.stop()
    if rec.errors:
        lab.log("record: errors while recording:\n  " + "\n  ".join(rec.errors))
    if event == "failover":
        cluster.start_member(old)
        cluster.wait_healthy(timeout=120)
    return write_recording(cluster, event, rec, out)


def write_recording(cluster: lab.PatroniCluster, event: str, rec: ScopeRecorder,
                    out: Path) -> Path:
    truth = timeline(rec.answers, rec.marks)
    members = {n: f"127.0.0.1:{cluster.member(n).port}" for n in cluster.names}
    head = {"patroni": cluster.patroni_version, "event": event,
            "namespace": cluster.namespace, "scope": cluster.scope, "members": members}
    lines = ["{"]
    lines += [f"{json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append('"truth": [')
    lines.append(",\n".join(json.dumps(e) for e in truth))
    lines.append("],")
    lines.append('"answers": [')
    # body: Consul's answer as it came (one line of JSON)
    lines.append(",\n".join(f'{{"t_ms": {a["t_ms"]}, "index": {a["index"]}, '
                            f'"body": {a["raw"].strip()}}}' for a in rec.answers))
    lines.append("]")
    lines.append("}")
    text = "\n".join(lines) + "\n"
    doc = json.loads(text)                  # what a reader gets back
    assert [a["body"] for a in doc["answers"]] == [json.loads(a["raw"]) for a in rec.answers]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"patroni{cluster.patroni_version}-{event}.json"
    path.write_text(text)
    lab.log(f"record: {path}: {len(rec.answers)} answers, {len(text) // 1024} KiB")
    for e in truth:
        lab.log(f"    {e['t_ms']:7d} ms  {e['what']}")
    return path


def timeline(answers: list[dict], marks: list[dict]) -> list[dict]:
    # sorted() is stable: at one t_ms, what the answers show comes first
    return sorted(derive_truth(answers) + marks, key=lambda e: e["t_ms"])


def retruth(path: Path) -> None:
    """Derive a recording's truth again from its answers (after a change to
    derive_truth), keeping its "lab: ..." entries and every other byte."""
    text = path.read_text()
    doc = json.loads(text)
    marks = [e for e in doc["truth"] if e["what"].startswith("lab: ")]
    lines = text.split("\n")
    start = lines.index('"truth": [')
    end = lines.index("],", start)
    lines[start + 1:end] = [",\n".join(json.dumps(e) for e in timeline(doc["answers"], marks))]
    new = "\n".join(lines)
    assert json.loads(new)["answers"] == doc["answers"]
    path.write_text(new)
    lab.log(f"record: {path}: truth derived again")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patroni", action="append", choices=("3", "4"),
                    help="record on this Patroni (repeatable; default: $PGBC_PATRONI or 3)")
    ap.add_argument("--event", action="append", choices=EVENTS,
                    help="record this event (repeatable; default: all, in this order: "
                         + ", ".join(EVENTS) + ")")
    ap.add_argument("--scope", default="raddb")
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "unit" / "data" / "recorded")
    ap.add_argument("--retruth", type=Path, nargs="+", metavar="FILE",
                    help="derive the truth of these recordings again; record nothing")
    args = ap.parse_args(argv)
    if args.retruth:
        for path in args.retruth:
            retruth(path)
        return 0
    # the failover last: it ends with restarting the killed member
    order = ("switchover", "pause", "failover")
    events = sorted(set(args.event or EVENTS), key=order.index)
    for major in args.patroni or [None]:
        work = lab.make_workdir("pgbc-record-")
        consul = lab.Consul(work / "consul").start()
        cluster = None
        ok = False
        try:
            cluster = lab.PatroniCluster(work / "patroni", consul, scope=args.scope,
                                         patroni=major).start()
            for event in events:
                record_event(cluster, event, args.out)
            ok = True
        finally:
            if cluster is not None:
                cluster.stop()
            consul.stop()
        # the logs stay after a failure, as the lab's fixtures keep them
        if ok and not os.environ.get("PGBC_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            lab.log(f"record: keeping {work} (logs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
