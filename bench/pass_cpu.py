"""The worker's CPU per pass on a quiet server, for comparing two builds: a fresh cluster
with N slots (half logical, half physical reserving WAL, none consumed, so every one has an
open alert), left alone for `--settle` seconds so the first history rows and alert raises
are over, then `--windows` windows of `--window` seconds; prints the median CPU per pass
and every window's. bench/scale.py measures right after the alerts open (the figures in
BENCHMARKS.md section 3b); this one measures the steady state only.

    /usr/bin/python3 bench/pass_cpu.py --slots 500 2000
"""

import argparse
import statistics
import time

from common import PG15_CONFIG, Cluster, cpu_seconds, log


def measure(pg_config, n, settle, windows, window):
    pg = Cluster(pg_config, name="bench-pass-cpu", settings={
        "shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
        "cdc_health.inactive_warning": "0",
        "max_replication_slots": str(n + 10), "max_wal_senders": "20",
        "cdc_health.max_tracked_slots": str(max(4096, n + 10))}).init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        for i in range(n):
            if i % 2:
                pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (f"p{i}",))
            else:
                pg.create_logical_slot(f"l{i}")
        time.sleep(settle)
        pid = pg.one("SELECT pid FROM cdc_health.worker_status()")
        per_pass = []
        for _ in range(windows):
            passes0, cpu0 = pg.one("SELECT passes FROM cdc_health.worker_status()"), cpu_seconds(pid)[0]
            time.sleep(window)
            passes = pg.one("SELECT passes FROM cdc_health.worker_status()") - passes0
            per_pass.append((cpu_seconds(pid)[0] - cpu0) / passes * 1e3)
        return per_pass
    finally:
        pg.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--settle", type=float, default=90.0)
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--window", type=float, default=15.0)
    ap.add_argument("--pg-config", default=PG15_CONFIG)
    args = ap.parse_args()
    for n in args.slots:
        log(f"  pass CPU: {n} slots")
        ms = measure(args.pg_config, n, args.settle, args.windows, args.window)
        print(f"{n:5d} slots | worker CPU per pass: median {statistics.median(ms):.2f} ms "
              f"({' '.join(f'{m:.2f}' for m in ms)}), "
              f"{statistics.median(ms) / 10 / 10:.3f} % of a core at interval 10s", flush=True)


if __name__ == "__main__":
    main()
