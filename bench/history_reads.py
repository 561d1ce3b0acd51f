"""History: 14 days of cdc_health.slot_history for 100 slots at the default history interval
(a row per slot per minute: the most it writes, for slots whose figures keep moving).

The 14 days are inserted at full resolution with generate_series (what 0.1.0 kept, and what an
upgrade from it starts with); the worker then rolls them up as it does every day (rows older
than `history_full_retention`, 1 day, to one per slot per 15 minutes; older than
`history_15min_retention`, 3 days, to one per hour), and the WAL and time that takes are
measured. Then the rows, bytes and read times per resolution, and the same reads as the peer:
`cdc_health.history(slot, now() - '1 day')` and `cdc_health.sparkline(slot)`.

Peer: the same 14 days x 100 slots, one sample per minute, backfilled into Prometheus (promtool
tsdb create-blocks-from openmetrics) as the exporter's slot metric; the same reads there: the raw
samples of the last day of one slot (`metric{slot_name=...}[1d]`), and a 48-point range query
(what the sparkline draws); and its storage.

    /usr/bin/python3 bench/history_reads.py --days 14 --slots 100 --repeat 30
"""

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

from common import RUN_DIR, Cluster, PG15_CONFIG, free_port, log, stats, stop_process, wait_until
from peer import PROMETHEUS, get_json

METRIC = "pg_replication_slots_pg_wal_lsn_diff"

FILL = """
INSERT INTO cdc_health.history_slots (slot_name, slot_type, database)
SELECT 'slot_' || s, 'logical', 'postgres' FROM generate_series(0, %(slots)s - 1) s;
INSERT INTO cdc_health.history_samples
    (sampled_at, retained_wal_bytes, flush_lag_bytes, safe_wal_size, current_lsn, restart_lsn,
     confirmed_flush_lsn, slot_id, kind, status, wal_status, active)
SELECT ts, r, r / 2, 50000000 - r, ('0/0'::pg_lsn + c), ('0/0'::pg_lsn + (c - r)),
       ('0/0'::pg_lsn + (c - r / 2)), h.id, 0, 0, 0, h.id %% 10 = 0
FROM generate_series(now() - make_interval(days => %(days)s), now(), interval '1 minute') ts,
     cdc_health.history_slots h,
     LATERAL (SELECT abs(hashint8(extract(epoch FROM ts)::bigint * 1000 + h.id)) %% 33554432
                     AS r,
                     extract(epoch FROM ts - (now() - make_interval(days => %(days)s)))::bigint
                      * 100000 + 100000000 AS c) v
"""

# Rows still waiting for a rollup that is due (checked once at the end: it reads the table).
BEHIND = """
SELECT count(*) FROM cdc_health.history_samples
WHERE (kind = 0 AND sampled_at < now() - interval '1 day 15 minutes')
   OR (kind = 2 AND sampled_at < now() - interval '3 days 1 hour')
"""

# Both steps at their horizon: what the bench waits for, without reading the table.
CAUGHT_UP = """
SELECT bool_and(rolled_until >= now() - CASE kind WHEN 2 THEN interval '1 day 15 minutes'
                                                  ELSE interval '3 days 1 hour' END)
FROM cdc_health.history_rollups
"""

PER_RESOLUTION = """
SELECT kind, count(*), sum(pg_column_size(h.*)) FROM cdc_health.history_samples h
GROUP BY kind ORDER BY kind
"""

READS = {
    "history": "SELECT * FROM cdc_health.history(%s, now() - interval '1 day')",
    # What the peer's read returns: a time and the retained WAL per sample.
    "history_pairs": "SELECT sampled_at, retained_wal_bytes "
                     "FROM cdc_health.history(%s, now() - interval '1 day')",
    "history_3d": "SELECT * FROM cdc_health.history(%s, now() - interval '3 days')",
    "history_all": "SELECT * FROM cdc_health.history(%s, '-infinity')",
    "sparkline": "SELECT cdc_health.sparkline(%s)",
}


def timed(fn, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def sizes(pg):
    return pg.sql("SELECT pg_total_relation_size('cdc_health.history_samples') "
                  "+ pg_total_relation_size('cdc_health.history_slots'), "
                  "pg_relation_size('cdc_health.history_samples'), "
                  "pg_indexes_size('cdc_health.history_samples')")[0]


def cdc_health_side(pg_config, days, slots, repeat):
    pg = Cluster(pg_config, name="bench-history", settings={
        "shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s"}
    ).init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        start = time.time()
        pg.sql(FILL, {"days": days, "slots": slots})
        pg.sql("VACUUM ANALYZE cdc_health.history_samples")
        fill_secs = time.time() - start
        full_rows = pg.one("SELECT count(*) FROM cdc_health.history_samples")
        full_size = sizes(pg)
        # As after an upgrade from 0.1.0: the steps look for their first rows.
        pg.sql("UPDATE cdc_health.history_rollups SET rolled_until = NULL")
        pg.sql("CHECKPOINT")
        lsn0 = pg.one("SELECT pg_current_wal_lsn()::text")
        passes0 = pg.one("SELECT passes FROM cdc_health.worker_status()")
        t0 = time.time()
        wait_until(lambda: pg.one(CAUGHT_UP), timeout=1800, interval=1.0,
                   what="the worker to roll the history up")
        rollup_secs = time.time() - t0
        rollup_wal = pg.one("SELECT pg_current_wal_lsn() - %s::pg_lsn", (lsn0,))
        rollup_passes = pg.one("SELECT passes FROM cdc_health.worker_status()") - passes0
        left = pg.one(BEHIND)
        assert left == 0, f"{left} rows were not rolled up"
        # Freed space is what tomorrow's rows are written into: VACUUM FULL shows the size
        # the table keeps at the steady state, with plain VACUUM's below for comparison.
        pg.sql("VACUUM ANALYZE cdc_health.history_samples")
        vacuumed = sizes(pg)
        pg.sql("VACUUM FULL ANALYZE cdc_health.history_samples")
        size = sizes(pg)
        per_kind = pg.sql(PER_RESOLUTION)
        rows = sum(r[1] for r in per_kind)
        conn = pg.connect()
        cur = conn.cursor()
        names = [f"slot_{random.randrange(slots)}" for _ in range(repeat)]
        out = {}
        for key, query in READS.items():
            got = []

            def read():
                cur.execute(query, (names[len(got) % repeat],))
                got.append(cur.fetchall())
            timed(read, 3)  # warm caches
            got.clear()
            out[key] = stats(timed(read, repeat))
            out[f"{key}_rows_returned"] = statistics.median(len(g) for g in got)
            if key == "sparkline":
                out["sparkline_example"] = got[0][0][0]
        conn.close()
        names_of = {0: "full", 1: "full (transitions)", 2: "15min", 3: "1h"}
        return {**out, "rows": rows, "total_bytes": size[0], "table_bytes": size[1],
                "index_bytes": size[2], "bytes_per_row": size[0] / rows,
                "vacuumed_bytes": vacuumed[0], "fill_seconds": fill_secs,
                "full_rows": full_rows, "full_bytes": full_size[0],
                "rollup_seconds": rollup_secs, "rollup_wal_bytes": float(rollup_wal),
                "rollup_passes": rollup_passes, "rolled_days": max(days - 1, 0),
                "per_resolution": [{"resolution": names_of[k], "rows": n, "row_bytes": int(b)}
                                   for k, n, b in per_kind]}
    finally:
        pg.close()


def peer_side(days, slots, repeat):
    """The same history in Prometheus."""
    base = tempfile.mkdtemp(prefix="bench-prom-history-", dir=RUN_DIR)
    proc = None
    try:
        now = int(time.time()) // 60 * 60
        start = now - days * 86400
        data = os.path.join(base, "data")
        t0 = time.time()
        # One OpenMetrics file per day: promtool re-reads its input once per 2h block.
        rnd = random.Random(1)
        for day in range(days):
            path = os.path.join(base, f"day{day}.om")
            with open(path, "w") as f:
                f.write(f"# TYPE {METRIC} gauge\n")
                lines = []
                for ts in range(start + day * 86400, min(now + 1, start + (day + 1) * 86400), 60):
                    for i in range(slots):
                        lines.append(f'{METRIC}{{database="postgres",instance="127.0.0.1:9187",'
                                     f'job="postgres",server="127.0.0.1:5432",slot_name="slot_{i}"}}'
                                     f' {rnd.randrange(33554432)} {ts}\n')
                f.writelines(lines)
                f.write("# EOF\n")
            subprocess.run(["/usr/bin/promtool", "tsdb", "create-blocks-from", "openmetrics", "-q",
                            path, data], check=True, stdout=subprocess.DEVNULL)
            os.remove(path)
        fill_secs = time.time() - t0
        size = 0
        for root, _, files in os.walk(data):
            size += sum(os.path.getsize(os.path.join(root, f)) for f in files)
        samples = (days * 86400 // 60) * slots
        port = free_port()
        log_file = open(os.path.join(base, "prometheus.log"), "w")
        with open(os.path.join(base, "prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 15s\n")
        proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={os.path.join(base, 'prometheus.yml')}",
             f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log_file)
        api = f"http://127.0.0.1:{port}/api/v1"

        def ready():
            try:
                return get_json(f"{api}/status/buildinfo", timeout=2)["status"] == "success"
            except OSError:
                return False
        wait_until(ready, timeout=120, what="prometheus with the backfilled history")
        names = [f"slot_{random.randrange(slots)}" for _ in range(repeat)]
        got = {"h": [], "s": []}

        def raw_day():
            q = f'{METRIC}{{slot_name="{names[len(got["h"]) % repeat]}"}}[1d]'
            r = get_json(f"{api}/query?" + urllib.parse.urlencode({"query": q, "time": now}))
            got["h"].append(sum(len(x["values"]) for x in r["data"]["result"]))

        def range_48():
            q = f'max_over_time({METRIC}{{slot_name="{names[len(got["s"]) % repeat]}"}}[30m])'
            r = get_json(f"{api}/query_range?" + urllib.parse.urlencode(
                {"query": q, "start": now - 86400, "end": now, "step": 1800}))
            got["s"].append(sum(len(x["values"]) for x in r["data"]["result"]))

        timed(raw_day, 3)
        timed(range_48, 3)
        got = {"h": [], "s": []}
        h = timed(raw_day, repeat)
        s = timed(range_48, repeat)
        return {"samples": samples, "total_bytes": size, "bytes_per_sample": size / samples,
                "fill_seconds": fill_secs, "history": stats(h), "sparkline": stats(s),
                "history_rows_returned": statistics.median(got["h"]),
                "sparkline_points": statistics.median(got["s"])}
    finally:
        if proc is not None:
            stop_process(proc, 20)
        shutil.rmtree(base, ignore_errors=True)


def measure(pg_config, days, slots, repeat):
    log(f"  history: {days} days x {slots} slots, cdc_health")
    ours = cdc_health_side(pg_config, days, slots, repeat)
    log(f"  history: {days} days x {slots} slots, Prometheus (backfilled)")
    peer = peer_side(days, slots, repeat)
    return {"days": days, "slots": slots, "repeat": repeat, "cdc": ours, "peer": peer}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg-config", default=PG15_CONFIG)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--slots", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--no-peer", action="store_true")
    args = parser.parse_args()
    if args.no_peer:
        x = cdc_health_side(args.pg_config, args.days, args.slots, args.repeat)
        print({k: v for k, v in x.items() if k != "sparkline_example"})
        print(x["sparkline_example"])
        return 0
    r = measure(args.pg_config, args.days, args.slots, args.repeat)
    for side in ("cdc", "peer"):
        x = r[side]
        print(f"{side}: history median {x['history']['median'] * 1e3:.2f} ms "
              f"(p95 {x['history']['p95'] * 1e3:.2f}, {x['history_rows_returned']:.0f} rows); "
              f"sparkline median {x['sparkline']['median'] * 1e3:.2f} ms; "
              f"storage {x['total_bytes'] / 2**20:.1f} MB; fill {x['fill_seconds']:.0f}s")
    c = r["cdc"]
    print(f"rollup: {c['rollup_wal_bytes'] / 2**20:.1f} MB of WAL, {c['rollup_seconds']:.0f} s, "
          f"{c['rollup_passes']} passes; per resolution {c['per_resolution']}")
    print(c["sparkline_example"])


if __name__ == "__main__":
    sys.exit(main())
