"""What the integration tests watch while the lab breaks: the pooler's
SHOW CONSUL row through a fault (States), a writer through the fork
(start_writer) and the figures both leave (report), shared by the test
modules that run Patroni switchovers and Consul faults under a writer."""

from __future__ import annotations

import re
import threading
import time

import lab
from fork import Bouncer, Writer

# the table start_writer inserts into (create_writes_table)
WRITES = "faultw"


def create_writes_table(cluster: lab.PatroniCluster) -> None:
    with cluster.connect(autocommit=True) as c:
        c.execute(f"create table if not exists {WRITES} (id bigserial primary key, "
                  "t timestamptz default clock_timestamp(), port int default inet_server_port())")


class States:
    """Samples the raddb row of SHOW CONSUL every 20 ms in a thread and
    keeps each change of (state, member, last_error): the pooler's state
    through a fault."""

    def __init__(self, b: Bouncer):
        self.b = b
        self.seen: list[tuple[float, str, str | None, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        last = None
        while True:
            try:
                r = self.b.row("raddb")
            except Exception:  # noqa: BLE001  (a busy console: sample again)
                if self._stop.wait(0.02):
                    return
                continue
            cur = (r["state"], r["member"], r["last_error"])
            if cur != last:
                self.seen.append((time.monotonic(), *cur))
                last = cur
            if self._stop.wait(0.02):
                return

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(5)
        return self.names()

    def names(self) -> list[str]:
        """The states in the order seen, repeats folded."""
        out: list[str] = []
        for _, state, member, _ in self.seen:
            s = f"{state}({member})"
            if not out or out[-1] != s:
                out.append(s)
        return out


def start_writer(b: Bouncer, n: int = 50) -> Writer:
    w = Writer(b.conninfo("raddb"), f"insert into {WRITES} default values").start()
    lab.wait_until(lambda: w.ok >= n or w.errors, 30, 0.02, f"{n} writes through the fork")
    assert w.errors == [], w.errors
    return w


def report(name: str, w: Writer, states: States, since: float) -> None:
    """Print what the clients saw and the pooler's states; keep the figures."""
    gap = w.longest_gap(since)
    lab.record_timing(f"{name}_longest_write_gap", gap)
    lab.record_timing(f"{name}_client_errors", f"{len(w.errors)} {w.errors[:3]}")
    lab.record_timing(f"{name}_writes", f"{w.successes_since(since)}")
    lab.record_timing(f"{name}_pooler_states", " -> ".join(states.names()))


def log_lines(b: Bouncer, pattern: str) -> list[str]:
    return [ln for ln in b.logfile_text().splitlines() if re.search(pattern, ln)]
