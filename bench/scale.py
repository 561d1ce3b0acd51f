"""Many slots: the background worker's CPU per pass and `cdc_health()` latency at 500, 1,000
and 2,000 slots, with the plain catalog query beside it. One cluster grows through the slot
counts (half logical, half physical reserving WAL; every logical slot inactive, so each has
an open `inactive` alert and a reminder clock); at each count the worker runs at interval 1s
for `--window` seconds and its CPU comes from /proc; the floor is measured as in
bench/function_latency.py.

    /usr/bin/python3 bench/scale.py --slots 500 1000 2000 --window 30
"""

import argparse
import json
import time

from common import PG15_CONFIG, Cluster, cpu_seconds, log, wait_until
from function_latency import CDC_HEALTH, CDC_HEALTH_SAME, PLAIN, floors, growing, timed


def measure(pg_config, counts, window, repeat):
    top = max(counts)
    pg = Cluster(pg_config, name="bench-scale", settings={
        "shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
        "cdc_health.inactive_warning": "0",
        "max_replication_slots": str(top + 100), "max_wal_senders": "20",
        "cdc_health.max_tracked_slots": str(max(4096, top + 100))}).init().start()
    out = []
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        conn = pg.connect()
        cur = conn.cursor()
        for n in growing(pg, counts):
            log(f"  scale: {n} slots")
            wait_until(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                                      "WHERE resolved_at IS NULL AND finding = 'inactive'")
                       >= n // 2, timeout=120, what=f"{n} slots: alerts open")
            pid = pg.one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'cdc_health'")
            passes0 = pg.one("SELECT passes FROM cdc_health.worker_status()")
            cpu0 = cpu_seconds(pid)[0]
            time.sleep(window)
            passes = pg.one("SELECT passes FROM cdc_health.worker_status()") - passes0
            cpu = cpu_seconds(pid)[0] - cpu0
            timed(cur, CDC_HEALTH, 10)
            plain = timed(cur, PLAIN, repeat)
            ours = timed(cur, CDC_HEALTH, repeat)
            same = timed(cur, CDC_HEALTH_SAME, repeat)
            floor, floor_same = floors(cur, repeat)
            per_pass = cpu / passes if passes else None
            out.append({"slots": n, "passes": passes, "worker_cpu_s": cpu,
                        "cpu_per_pass_ms": per_pass * 1e3 if per_pass else None,
                        # A pass's CPU, once per 10 s, as a share of one core.
                        "cpu_share_at_10s_pct": per_pass / 10 * 100 if per_pass else None,
                        "plain_ms": plain[0] * 1e3, "cdc_ms": ours[0] * 1e3,
                        "cdc_p95_ms": ours[1] * 1e3, "cdc_same_columns_ms": same[0] * 1e3,
                        "floor_ms": floor[0] * 1e3, "floor_same_columns_ms": floor_same[0] * 1e3})
        conn.close()
    finally:
        pg.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-config", default=PG15_CONFIG)
    parser.add_argument("--slots", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = measure(args.pg_config, args.slots, args.window, args.repeat)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        print(f"{r['slots']:5d} slots | worker {r['cpu_per_pass_ms']:.1f} ms CPU per pass "
              f"({r['passes']} passes), {r['cpu_share_at_10s_pct']:.3f} % of a core at 10s | "
              f"cdc_health() {r['cdc_ms']:.2f} ms (p95 {r['cdc_p95_ms']:.2f}), 7 columns "
              f"{r['cdc_same_columns_ms']:.2f} ms, plain query {r['plain_ms']:.2f} ms, floor "
              f"{r['floor_ms']:.2f} ms (7 columns {r['floor_same_columns_ms']:.2f} ms)")


if __name__ == "__main__":
    main()
