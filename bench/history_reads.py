"""History reads: 14 days of cdc_health.slot_history for 100 slots at the default history
interval (a row per slot per minute: the most it writes, for slots whose figures keep moving),
synthetic rows inserted with generate_series; time of
cdc_health.history(slot, now() - '1 day') and of cdc_health.sparkline(slot) (its default last
day), and the storage it takes.

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
INSERT INTO cdc_health.slot_history
SELECT ts, 'slot_' || s, 'logical', 'postgres', 'reserved', s %% 10 = 0, 'ok',
       r, r / 2, 50000000 - r, ('0/0'::pg_lsn + c), ('0/0'::pg_lsn + (c - r)),
       ('0/0'::pg_lsn + (c - r / 2))
FROM generate_series(now() - make_interval(days => %(days)s), now(), interval '1 minute') ts,
     generate_series(0, %(slots)s - 1) s,
     LATERAL (SELECT (abs(hashint8(extract(epoch FROM ts)::bigint * 1000 + s)) %% 33554432)::numeric
                     AS r,
                     (extract(epoch FROM ts - (now() - make_interval(days => %(days)s)))::bigint
                      * 100000)::numeric + 100000000 AS c) v
"""


def timed(fn, repeat):
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def cdc_health_side(pg_config, days, slots, repeat):
    pg = Cluster(pg_config, name="bench-history").init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        start = time.time()
        pg.sql(FILL, {"days": days, "slots": slots})
        pg.sql("VACUUM ANALYZE cdc_health.slot_history")
        fill_secs = time.time() - start
        rows = pg.one("SELECT count(*) FROM cdc_health.slot_history")
        size = pg.sql("SELECT pg_total_relation_size('cdc_health.slot_history'), "
                      "pg_relation_size('cdc_health.slot_history'), "
                      "pg_indexes_size('cdc_health.slot_history')")[0]
        conn = pg.connect()
        cur = conn.cursor()
        names = [f"slot_{random.randrange(slots)}" for _ in range(repeat)]
        got = {}

        def history():
            cur.execute("SELECT * FROM cdc_health.history(%s, now() - interval '1 day')",
                        (names[len(got.setdefault("h", [])) % repeat],))
            got["h"].append(len(cur.fetchall()))

        def sparkline():
            cur.execute("SELECT cdc_health.sparkline(%s)",
                        (names[len(got.setdefault("s", [])) % repeat],))
            got["s"].append(cur.fetchone()[0])

        timed(history, 3)
        timed(sparkline, 3)  # warm caches
        got.clear()
        h = timed(history, repeat)
        s = timed(sparkline, repeat)
        conn.close()
        return {"rows": rows, "total_bytes": size[0], "table_bytes": size[1],
                "index_bytes": size[2], "bytes_per_row": size[0] / rows,
                "fill_seconds": fill_secs, "history": stats(h), "sparkline": stats(s),
                "history_rows_returned": statistics.median(got["h"]),
                "sparkline_example": got["s"][0]}
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
    args = parser.parse_args()
    r = measure(args.pg_config, args.days, args.slots, args.repeat)
    for side in ("cdc", "peer"):
        x = r[side]
        print(f"{side}: history median {x['history']['median'] * 1e3:.1f} ms "
              f"(p95 {x['history']['p95'] * 1e3:.1f}, {x['history_rows_returned']:.0f} rows); "
              f"sparkline median {x['sparkline']['median'] * 1e3:.1f} ms; "
              f"storage {x['total_bytes'] / 2**20:.1f} MB; fill {x['fill_seconds']:.0f}s")
    print(r["cdc"]["sparkline_example"])


if __name__ == "__main__":
    sys.exit(main())
