"""One mirror freshness probe through the cdc_health_clickhouse wrapper against the same
aggregate sent straight to ClickHouse with curl, on 1,000,000 and 10,000,000 rows; and what a
naive scan through a plain foreign table costs.

    /usr/bin/python3 bench/mirror_probe.py [--rows 1000000 10000000] [--trials 15]

Bytes are the HTTP bodies (the SQL sent, the answer received); times are medians of wall time
as the client sees it (psql-like client for the wrapper, curl's own time_total for curl).
"""

import argparse
import json
import subprocess
import time

from common import PG15_CONFIG, Cluster, log, stats
from common import ROOT  # noqa: F401  (puts tests/ on sys.path)
from chserver import ClickHouse

AGGREGATE = "SELECT count() AS n, max(at) AS newest FROM default.{table}"
WIRE = "\nFORMAT TabSeparatedWithNamesAndTypes"


def curl(ch, sql):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{size_upload}",
         "-H", "X-ClickHouse-User: default", "--data-binary", sql, ch.url + "/"],
        check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


def timed(cur, sql):
    start = time.perf_counter()
    cur.execute(sql)
    cur.fetchall()
    return time.perf_counter() - start


def measure(pg_config=PG15_CONFIG, rows=(1_000_000, 10_000_000), trials=15, naive_trials=2):
    results = {"rows": {}, "trials": trials}
    ch = ClickHouse(name="bench-ch").start()
    pg = Cluster(pg_config, name="bench-probe").init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        pg.sql(f"CREATE SERVER ch FOREIGN DATA WRAPPER cdc_health_clickhouse "
               f"OPTIONS (url '{ch.url}', timeout '600s')")
        pg.sql("CREATE USER MAPPING FOR PUBLIC SERVER ch OPTIONS (user 'default')")
        conn = pg.connect()
        cur = conn.cursor()
        for n in rows:
            table = f"big_{n}"
            log(f"mirror probe: filling a {n:,}-row ClickHouse table")
            ch.query(f"CREATE TABLE default.{table} (id UInt64, at DateTime) "
                     f"ENGINE = MergeTree ORDER BY id")
            ch.query(f"INSERT INTO default.{table} SELECT number, "
                     f"toDateTime(1700000000 + intDiv(number, 10)) FROM numbers({n})", timeout=600)
            agg = AGGREGATE.format(table=table)
            pg.sql(f"CREATE FOREIGN TABLE agg_{n} (n bigint, newest timestamptz) SERVER ch "
                   f"OPTIONS (query '{agg}')")
            pg.sql(f"CREATE FOREIGN TABLE scan_{n} (id bigint, at timestamptz) SERVER ch "
                   f"OPTIONS (table 'default.{table}')")
            pg.sql(f"SELECT cdc_health.add_freshness_check('{table}', 'scan_{n}', 'at', "
                   f"'100 years')")
            # Warm both paths (ClickHouse's caches, the backend's catalog caches).
            timed(cur, f"SELECT * FROM agg_{n}")
            curl(ch, agg + WIRE)
            wrapper, direct, probe = [], [], []
            direct_bytes = None
            for _ in range(trials):
                wrapper.append(timed(cur, f"SELECT * FROM agg_{n}"))
                t, down, up = curl(ch, agg + WIRE)
                direct.append(t)
                direct_bytes = (up, down)
                cur.execute(f"SELECT cdc_health.check_mirror('{table}')")
                cur.execute(f"SELECT probe_ms, probe_bytes FROM cdc_health.mirrors() "
                            f"WHERE name = '{table}'")
                ms, probe_bytes = cur.fetchone()
                probe.append(ms / 1000)
            naive = [timed(cur, f"SELECT count(*), max(at) FROM scan_{n}")
                     for _ in range(naive_trials)]
            sent = len((agg + WIRE).encode())
            results["rows"][n] = {
                "wrapper_query_option": stats(wrapper),
                "curl_direct": stats(direct),
                "check_mirror_probe": stats(probe),
                "naive_scan": stats(naive),
                "bytes_sent": sent,
                "wrapper_bytes_received": probe_bytes,
                "curl_bytes": {"sent": direct_bytes[0], "received": direct_bytes[1]},
                "ratio_median": (stats(wrapper)["median"] / stats(direct)["median"]),
            }
            log(f"mirror probe {n:,}: wrapper {stats(wrapper)['median'] * 1000:.1f} ms, "
                f"curl {stats(direct)['median'] * 1000:.1f} ms, "
                f"naive scan {stats(naive)['median']:.1f} s")
            ch.query(f"DROP TABLE default.{table}")
        conn.close()
        results["clickhouse"] = ch.query("SELECT version()").strip()
    finally:
        pg.close()
        ch.destroy()
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--trials", type=int, default=15)
    ap.add_argument("--pg-config", default=PG15_CONFIG)
    args = ap.parse_args()
    print(json.dumps(measure(args.pg_config, args.rows, args.trials), indent=2))


if __name__ == "__main__":
    main()
