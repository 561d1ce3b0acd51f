"""Fault-to-NOTIFY latency of cdc_health's worker: a real consumer is killed and the time
until the `raised` notification for `inactive` arrives on a real LISTEN connection is taken.

    /usr/bin/python3 bench/detection_latency.py --interval 1s --trials 20

`cdc_health.inactive_warning` is 0, so the figure is the detection delay itself, beyond the
finding's own threshold.
"""

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from pgcluster import Cluster, wait_for  # noqa: E402


def percentile(values, p):
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def seconds(setting):
    """'1s', '10s', '500ms' as seconds."""
    if setting.endswith("ms"):
        return float(setting[:-2]) / 1000
    return float(setting.rstrip("s"))


def measure(pg_config, interval, trials):
    settings = {"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": interval,
                "cdc_health.inactive_warning": "0", "cdc_health.alert_holddown": "0"}
    pg = Cluster(pg_config, name="bench-latency", settings=settings).init().start()
    try:
        pg.sql("CREATE EXTENSION cdc_health")
        listener = pg.listen()
        latencies = []
        for i in range(trials):
            slot = f"latency_{i}"
            pg.create_logical_slot(slot)
            consumer = pg.recvlogical(slot)
            passes = pg.one("SELECT passes FROM cdc_health.worker_status()")
            wait_for(lambda: pg.one("SELECT passes FROM cdc_health.worker_status()") >= passes + 2,
                     timeout=120, what="the worker to see the consumer")
            listener.drain()
            listener.received.clear()
            # Faults do not wait for the worker: strike at a random phase of its interval.
            time.sleep(random.uniform(0, seconds(interval)))
            consumer.kill()
            _, waited = listener.wait(timeout=120, event="raised", subject=f"slot:{slot}",
                                      finding="inactive")
            latencies.append(waited)
            pg.children.remove(consumer)
            pg.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        listener.close()
        return latencies
    finally:
        pg.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-config", default="/usr/lib/postgresql/15/bin/pg_config")
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    lat = measure(args.pg_config, args.interval, args.trials)
    print(f"interval {args.interval}, {len(lat)} trials: median {statistics.median(lat):.2f}s, "
          f"p95 {percentile(lat, 95):.2f}s, min {min(lat):.2f}s, max {max(lat):.2f}s")


if __name__ == "__main__":
    main()
