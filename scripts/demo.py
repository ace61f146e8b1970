"""The main job on a local lab: a real Consul agent, a real 3-member Patroni
cluster, and the fork with consul_redirect.so in front of it.  A writer
inserts through the fork every 5 ms across a `patronictl switchover`; the
demo prints what the writer saw and SHOW CONSUL before and after, then stops
everything it started (by PID)."""

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))

import lab  # noqa: E402
from fork import Bouncer, Writer, db_line  # noqa: E402


def show_consul(bouncer):
    rows = bouncer.admin("SHOW CONSUL")
    cols = bouncer.admin_columns("SHOW CONSUL")
    table = [cols] + [["" if r[c] is None else str(r[c]) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    for r in table:
        print("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())


def main():
    work = lab.make_workdir("pgbc-demo-")
    consul = cluster = bouncer = writer = None
    try:
        print("== starting a Consul 1.8.7 dev agent on loopback")
        consul = lab.Consul(work / "consul").start()
        print(f"   {consul.url}")
        print("== starting a 3-member Patroni 3.0.2 cluster on PostgreSQL 15 (scope raddb)")
        cluster = lab.PatroniCluster(work / "patroni", consul, scope="raddb").start()
        cluster.wait_healthy()
        old = cluster.leader()
        print(f"   leader: {old}, members: {', '.join(cluster.names)}")
        with cluster.connect(old) as c:
            c.execute("create table if not exists demo (id bigserial primary key, at timestamptz default now())")
        print("== starting the fork with consul_redirect.so")
        bouncer = Bouncer(work / "bouncer", consul,
                          {"raddb": db_line("raddb"), "raddb_ro": db_line("raddb", "replica")},
                          bouncer_settings={"pool_mode": "transaction"}).start()
        lab.wait_until(lambda: all(r["state"] == "following" for r in bouncer.admin("SHOW CONSUL")),
                       15, 0.1, "SHOW CONSUL following")
        print("SHOW CONSUL before:")
        show_consul(bouncer)

        writer = Writer(bouncer.conninfo("raddb"), "insert into demo default values", interval=0.005).start()
        time.sleep(2)
        print(f"== patronictl switchover (from {old}), writer inserting every 5 ms through the fork")
        t0 = time.monotonic()
        new = cluster.switchover(use_patronictl=True)["new"]
        lab.wait_until(lambda: writer.successes_since(t0 + 0.001) > 200, 30, 0.1, "writes after the switchover")
        writer.stop()
        gap, errors = writer.longest_gap(), [e for _, e in writer.errors]
        print(f"   new leader: {new}")
        print(f"   writer: {writer.ok} inserts, longest gap {gap * 1000:.0f} ms, {len(errors)} errors")
        for e in errors[:5]:
            print(f"     error: {e}")
        print("SHOW CONSUL after:")
        show_consul(bouncer)
        return 0 if not errors else 1
    finally:
        for thing in (writer, bouncer, cluster, consul):
            if thing is not None:
                try:
                    thing.stop()
                except Exception as e:  # keep stopping the rest
                    print(f"demo: stopping {thing!r}: {e}", file=sys.stderr)
        if not os.environ.get("PGBC_KEEP"):
            subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
