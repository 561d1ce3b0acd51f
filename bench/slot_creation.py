"""Time from a blocking transaction's end to the logical slot creation it blocked finishing,
with cdc_health's worker nudging (standby snapshots) and without the extension preloaded.

    /usr/bin/python3 bench/slot_creation.py --trials 10 [--pg-config .../pg_config]
"""

import argparse
import os
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from pgcluster import Cluster, wait_for  # noqa: E402

WITH = {"shared_preload_libraries": "'cdc_health'", "cdc_health.interval": "1s",
        "cdc_health.unblock_after": "1s"}


def trial(pg, i):
    blocker = pg.connect(autocommit=False)
    blocker.cursor().execute("SELECT txid_current()")
    done = {}

    def create():
        pg.sql("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (f"c{i}",))
        done["at"] = time.monotonic()

    t = threading.Thread(target=create, daemon=True)
    t.start()
    wait_for(lambda: pg.one("SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event = 'transactionid'"), what="creation to wait")
    time.sleep(3)  # long enough for the nudge to start (unblock_after 1s)
    ended = time.monotonic()
    blocker.commit()
    t.join(60)
    blocker.close()
    pg.sql("SELECT pg_drop_replication_slot(%s)", (f"c{i}",))
    return done["at"] - ended


def run(pg_config, settings, trials, extension):
    pg = Cluster(pg_config, name="bench-creation", settings=settings).init().start()
    try:
        if extension:
            pg.sql("CREATE EXTENSION cdc_health")
        return [trial(pg, i) for i in range(trials)]
    finally:
        pg.close()


def measure(pg_config, trials):
    """Blocker end to slot created (seconds), with cdc_health's worker and without."""
    out = {}
    for label, settings, ext in [("with", WITH, True), ("without", {}, False)]:
        out[label] = run(pg_config, settings, trials, ext)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pg-config", default="/usr/lib/postgresql/15/bin/pg_config")
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    for label, settings, ext in [("with cdc_health", WITH, True), ("without", {}, False)]:
        t = run(args.pg_config, settings, args.trials, ext)
        print(f"{label}: {len(t)} trials, blocker end to slot created: median "
              f"{statistics.median(t) * 1000:.0f} ms, max {max(t) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
