#!/usr/bin/python3
"""bench/writer.py: one writer of bench/switchover, in a process of its own so
that its clock readings never wait for another thread's GIL.

    writer.py CONNINFO STATEMENT INTERVAL_S RETRY_S

Runs STATEMENT on one autocommit connection every INTERVAL_S seconds; after an
error it reconnects RETRY_S seconds later (0: at once, a tight loop).  Prints one
line per event on stdout, with CLOCK_MONOTONIC (the same clock in every process):
    o <t>            a write committed (t taken when the server's answer arrived)
    e <t> <message>  an error (first line of it)
Stops when its stdin closes.
"""

import sys
import threading
import time

import psycopg


def main() -> int:
    conninfo, statement = sys.argv[1], sys.argv[2]
    interval, retry = float(sys.argv[3]), float(sys.argv[4])
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()
    threading.Thread(target=watch_stdin, daemon=True).start()
    out = sys.stdout
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = psycopg.connect(conninfo, autocommit=True)
            conn.execute(statement)
            t = time.monotonic()
            out.write(f"o {t:.6f}\n")
            out.flush()
            pause = interval
        except psycopg.Error as e:
            t = time.monotonic()
            msg = (str(e).strip().splitlines() or [type(e).__name__])[0]
            out.write(f"e {t:.6f} {msg}\n")
            out.flush()
            try:
                if conn is not None:
                    conn.close()
            except psycopg.Error:
                pass
            conn = None
            pause = retry
        if pause > 0:
            stop.wait(pause)
    if conn is not None:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
