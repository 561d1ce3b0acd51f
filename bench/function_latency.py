"""Latency of `SELECT * FROM cdc_health()` against the plain catalog query monitoring tools
run, side by side on the same cluster, at several slot counts.

    /usr/bin/python3 bench/function_latency.py --slots 10 100 500 --repeat 200
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from pgcluster import Cluster  # noqa: E402

PLAIN = """SELECT slot_name, slot_type, active, wal_status, safe_wal_size,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) AS retained,
       pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS flush_lag
FROM pg_replication_slots"""
CDC_HEALTH = "SELECT * FROM cdc_health()"
# The plain query's seven columns from cdc_health(): the cost of the assessment itself, without
# the client decoding eleven more columns (the jsonb detail most of all).
CDC_HEALTH_SAME = """SELECT slot_name, slot_type, active, wal_status, safe_wal_size,
       retained_wal_bytes, flush_lag_bytes FROM cdc_health()"""
# The floor: the same rows with nothing computed, a copy of cdc_health()'s own output in a
# temporary table; what returning 18 columns (or 7) costs the server and the client alone.
FLOOR = "SELECT * FROM cdc_health_floor"
FLOOR_SAME = """SELECT slot_name, slot_type, active, wal_status, safe_wal_size,
       retained_wal_bytes, flush_lag_bytes FROM cdc_health_floor"""


def timed(cur, query, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        cur.execute(query)
        cur.fetchall()
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def floors(cur, repeat):
    """The floor, all columns and the 7: cdc_health()'s output copied into a table, read back."""
    cur.execute("DROP TABLE IF EXISTS cdc_health_floor")
    cur.execute("CREATE TEMP TABLE cdc_health_floor AS SELECT * FROM cdc_health()")
    cur.execute("ANALYZE cdc_health_floor")
    return timed(cur, FLOOR, repeat), timed(cur, FLOOR_SAME, repeat)


def add_slots(pg, start, end):
    """Slots start..end: half logical, half physical (reserved), so both kinds are assessed."""
    for i in range(start, end):
        if i % 2:
            pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (f"p{i}",))
        else:
            pg.create_logical_slot(f"l{i}")


def growing(pg, counts):
    """Yields each count once the cluster has that many slots (added, never dropped)."""
    made = 0
    for n in counts:
        add_slots(pg, made, n)
        made = n
        yield n


def run(pg_config, counts, repeat, preload):
    settings = {"max_replication_slots": str(max(counts) + 10), "max_wal_senders": "20",
                "cdc_health.max_tracked_slots": str(max(counts) + 10)}
    if preload:
        settings["shared_preload_libraries"] = "'cdc_health'"
    pg = Cluster(pg_config, name="bench-fn", settings=settings).init().start()
    results = []
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        conn = pg.connect()
        cur = conn.cursor()
        for n in growing(pg, counts):
            time.sleep(2 if preload else 0)  # a worker pass with every slot tracked
            timed(cur, CDC_HEALTH, 20)  # warm up caches
            plain = timed(cur, PLAIN, repeat)
            ours = timed(cur, CDC_HEALTH, repeat)
            same = timed(cur, CDC_HEALTH_SAME, repeat)
            floor, floor_same = floors(cur, repeat)
            results.append((n, plain, ours, same, floor, floor_same))
        conn.close()
    finally:
        pg.close()
    return results


def measure(pg_config, counts, repeat):
    """Median and p95 (seconds) of both queries per slot count, worker running and not."""
    out = []
    for preload in (True, False):
        for n, plain, ours, same, floor, floor_same in run(pg_config, counts, repeat, preload):
            out.append({"worker": preload, "slots": n, "repeat": repeat,
                        "plain": {"median": plain[0], "p95": plain[1]},
                        "cdc": {"median": ours[0], "p95": ours[1]},
                        "cdc_same_columns": {"median": same[0], "p95": same[1]},
                        "floor": {"median": floor[0], "p95": floor[1]},
                        "floor_same_columns": {"median": floor_same[0],
                                               "p95": floor_same[1]}})
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-config", default="/usr/lib/postgresql/15/bin/pg_config")
    parser.add_argument("--slots", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    for preload in (True, False):
        mode = "worker running" if preload else "not preloaded"
        for n, plain, ours, same, floor, floor_same in run(args.pg_config, args.slots,
                                                          args.repeat, preload):
            print(f"{mode:>14} | {n:4d} slots | plain {plain[0] * 1e3:6.2f} ms | "
                  f"cdc_health() * {ours[0] * 1e3:6.2f} ms (p95 {ours[1] * 1e3:6.2f}), "
                  f"{ours[0] / plain[0]:.2f}x plain, floor {floor[0] * 1e3:6.2f} ms | "
                  f"7 columns {same[0] * 1e3:6.2f} ms, {same[0] / plain[0]:.2f}x plain, "
                  f"floor {floor_same[0] * 1e3:6.2f} ms")


if __name__ == "__main__":
    main()
