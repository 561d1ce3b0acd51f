"""Where `cdc_health()` and the worker's pass spend their time: `perf record` on a backend
calling `SELECT * FROM cdc_health()` in a loop, and on the background worker at interval
1s (every slot inactive, so each has an open alert), on a throwaway cluster with N slots (half logical, half physical). Prints the top
symbols (self time, and inclusive with call graphs) of each.

    /usr/bin/python3 bench/profile.py --slots 500 --seconds 20
"""

import argparse
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from pgcluster import Cluster, wait_for  # noqa: E402


def perf(pid, seconds, out, top, dwarf=False, freq=None):
    data = f"{out}.data"
    # Frame pointers miss Rust frames; DWARF unwinding (from .eh_frame) attributes them.
    freq = str(freq or (499 if dwarf else 999))
    graph = ["--call-graph", "dwarf,32768", "-F", freq] if dwarf else ["-g", "-F", freq]
    subprocess.run(["perf", "record", "-q", *graph, "-p", str(pid), "-o", data,
                    "--", "sleep", str(seconds)], check=True, stderr=subprocess.DEVNULL)
    for label, extra in (("self", ["--no-children"]), ("inclusive", ["--children"])):
        report = subprocess.run(
            ["perf", "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "1.5",
             "--sort", "symbol", *extra], capture_output=True, text=True, check=True).stdout
        lines = [ln for ln in report.splitlines() if ln.strip() and not ln.startswith("#")]
        print(f"--- {out}: {label} ---")
        print("\n".join(lines[:top]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=500)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default="/var/tmp/cdc_health/profile")
    ap.add_argument("--query", default="SELECT * FROM cdc_health()")
    ap.add_argument("--no-worker", action="store_true", help="profile the function only")
    ap.add_argument("--no-function", action="store_true", help="profile the worker only")
    ap.add_argument("--dwarf", action="store_true",
                    help="DWARF call graphs: slower to record, but Rust frames are attributed")
    ap.add_argument("--freq", type=int,
                    help="samples per second (default 499 with --dwarf, else 999); a worker "
                         "pass is a few ms, so profiling it needs several thousand")
    ap.add_argument("--pg-config", default=os.environ.get("PG_CONFIG",
                                                          "/usr/lib/postgresql/15/bin/pg_config"))
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    n = args.slots
    pg = Cluster(args.pg_config, name="profile", settings={
        "shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s", "cdc_health.inactive_warning": "0",
        "max_replication_slots": str(n + 10), "max_wal_senders": "20",
        "cdc_health.max_tracked_slots": str(n + 10)}).init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        for i in range(n):
            if i % 2:
                pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (f"p{i}",))
            else:
                pg.create_logical_slot(f"l{i}")
        # Profile steady passes: after the first ones raised every slot's alert.
        wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                                "WHERE resolved_at IS NULL") >= n // 2, timeout=120,
                 what="alerts open")
        time.sleep(3)
        worker = pg.one("SELECT pid FROM pg_stat_activity "
                        "WHERE backend_type = 'cdc_health'")
        if not args.no_worker:
            perf(worker, args.seconds, f"{args.out}-worker", args.top, args.dwarf, args.freq)
        if args.no_function:
            return

        conn = pg.connect()
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
        stop = threading.Event()
        calls = [0]

        def loop():
            while not stop.is_set():
                cur.execute(args.query)
                cur.fetchall()
                calls[0] += 1

        t = threading.Thread(target=loop)
        t.start()
        try:
            perf(backend, args.seconds, f"{args.out}-function", args.top, args.dwarf, args.freq)
        finally:
            stop.set()
            t.join()
        print(f"calls of {args.query!r} during the profile: {calls[0]}")
        conn.close()
    finally:
        pg.close()


if __name__ == "__main__":
    main()
