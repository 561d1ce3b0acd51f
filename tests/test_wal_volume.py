"""The volume holding pg_wal, for real: pg_wal on a small tmpfs of its own (initdb -X) filled
by real writes behind an abandoned slot with no budget (max_slot_wal_keep_size = -1) until
the server stops; the archiver failing on a real archive_command and working again."""

import os
import threading
import time

import psycopg2
import pytest

from pgcluster import Listener, wait_for

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    # A dozen segment files' worth at the test's write rate: used space climbs a segment at a
    # time, and a fit over a few steps swings with their phase.
    "cdc_health.forecast_window": "60s",
    "wal_sender_timeout": "'60s'",
}


def usage(pg, **kw):
    conn = pg.connect(**kw)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM cdc_health.wal_usage()")
            cols = [d[0] for d in cur.description]
            return dict(zip(cols, cur.fetchone()))
    finally:
        conn.close()


def open_alert(pg, subject, finding):
    return pg.one("SELECT id FROM cdc_health.alerts WHERE subject = %s AND finding = %s "
                  "AND resolved_at IS NULL", (subject, finding))


class SteadyWriter(threading.Thread):
    """About `mb_per_sec` of WAL a second in rows of 1 kB, at an even pace, until it fails
    (the server stopped) or is told to stop."""

    def __init__(self, pg, mb_per_sec):
        super().__init__(daemon=True)
        self.pg, self.mb_per_sec = pg, mb_per_sec
        self.halt = threading.Event()
        self.failed_at = None

    def run(self):
        try:
            conn = self.pg.connect()
            cur = conn.cursor()
            cur.execute("CREATE TABLE IF NOT EXISTS filler (v text)")
            tick = 0.25
            rows = int(self.mb_per_sec * 1024 * tick * 0.85)  # a 1 kB row is ~1.2 kB of WAL
            next_at = time.monotonic()
            while not self.halt.is_set():
                cur.execute("INSERT INTO filler SELECT repeat('x', 1000) "
                            "FROM generate_series(1, %s)", (rows,))
                next_at += tick
                self.halt.wait(max(0.0, next_at - time.monotonic()))
        except psycopg2.Error:
            self.failed_at = time.monotonic()


def test_the_volume_filling_behind_an_abandoned_slot_is_forecast_and_alerted(
        small_volume, make_cluster):
    volume = small_volume(320)
    pg = make_cluster(waldir=os.path.join(volume, "pg_wal"), settings=WORKER)
    pg.create_logical_slot("abandoned")
    first = usage(pg)
    assert os.path.realpath(first["wal_directory"]) == os.path.join(volume, "pg_wal"), first
    assert first["disk_total_bytes"] == 320 * 2**20, first
    assert first["status"] == "ok" and first["largest_slot"] == "abandoned", first

    # Any role may LISTEN: the volume's figures are pg_monitor's (wal_usage()), not theirs.
    pg.sql("CREATE ROLE outsider LOGIN")
    outsider = Listener(pg.connect(user="outsider"), "cdc_health")
    writer = SteadyWriter(pg, 3.0)
    writer.start()
    try:
        alert = wait_for(lambda: open_alert(pg, "server:wal", "wal_disk_full_soon"),
                         timeout=120, what="wal_disk_full_soon")
        raised = time.monotonic()
        seen = usage(pg)
        eta = seen["eta_to_full"].total_seconds()
        assert seen["disk_free_bytes"] >= seen["disk_total_bytes"] / 4, seen
        assert seen["largest_slot"] == "abandoned", seen
        assert seen["status"] in ("warning", "critical"), seen
        assert "abandoned" in seen["remediation"], seen
        assert pg.one("SELECT remediation FROM cdc_health.alerts WHERE id = %s", (alert,)) \
            .startswith("Slot abandoned holds")
        public, _ = outsider.wait(timeout=10, event="raised", finding="wal_disk_full_soon")
        assert "wal_usage()" in public["summary"] and " MB" not in public["summary"], public
        assert not public.get("remediation") and "disk_free_bytes" not in str(public), public
        outsider.close()
        # The forecast counts down.
        time.sleep(10)
        later = usage(pg)["eta_to_full"].total_seconds()
        assert later < eta, (eta, later)

        # The abandoned slot says the same: without a budget, the volume is its limit (its
        # forecast starts a forecast window after its last progress, its creation).
        slot = wait_for(lambda: (lambda r: r if "budget_exhaustion_soon" in r["findings"]
                                 else None)(pg.health("abandoned")),
                        timeout=60, what="budget_exhaustion_soon on the slot")
        assert "volume holding pg_wal" in slot["summary"], slot["summary"]
        assert slot["eta_to_lost"] is not None, slot
        assert "pg_drop_replication_slot('abandoned')" in slot["remediation"], slot

        # Until the volume is full: the server can no longer add a WAL segment and stops.
        segment = 16 * 2**20

        def full():
            st = os.statvfs(volume)
            return writer.failed_at or (st.f_bavail * st.f_frsize < segment and time.monotonic())

        full_at = wait_for(full, timeout=600, interval=0.2, what="the volume to fill")
        actual = full_at - raised
        print(f"wal_disk_full_soon raised with {seen['disk_free_bytes'] >> 20} of "
              f"{seen['disk_total_bytes'] >> 20} MB free, forecast full in {eta:.0f} s; "
              f"full {actual:.0f} s later")
        assert abs(eta - actual) <= 0.3 * actual, \
            f"forecast {eta:.0f} s, filled in {actual:.0f} s"
    finally:
        writer.halt.set()
        writer.join(30)


def test_a_failing_archive_command_is_alerted_and_resolves_when_it_works(make_cluster):
    pg = make_cluster(settings={**WORKER, "archive_mode": "on", "archive_command": "'false'"})
    archive = os.path.join(pg.base, "archive")
    os.mkdir(archive)
    os.chmod(archive, 0o777)
    pg.grow_wal(2)
    alert = wait_for(lambda: open_alert(pg, "server:archiver", "archive_failing"), timeout=60,
                     what="archive_failing")
    row = pg.sql("SELECT summary, remediation, detail FROM cdc_health.alerts WHERE id = %s",
                 (alert,))[0]
    failing = pg.one("SELECT last_failed_wal FROM pg_stat_archiver")
    assert failing in row[0] and "archive_command" in row[1], row
    assert row[2]["failed_count"] >= 1, row
    assert usage(pg)["archive_pending_segments"] >= 1

    pg.set_config(archive_command=f"cp %p {archive}/%f")
    wait_for(lambda: pg.one("SELECT resolved_at IS NOT NULL FROM cdc_health.alerts "
                            "WHERE id = %s", (alert,)), timeout=90,
             what="archive_failing to resolve")
    assert os.listdir(archive), "the archiver copied segments"


def test_wal_usage_is_for_pg_monitor(make_cluster):
    pg = make_cluster(settings={"wal_sender_timeout": "'60s'"})
    pg.sql("CREATE ROLE nobody LOGIN")
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    with pytest.raises(psycopg2.Error) as denied:
        usage(pg, user="nobody")
    assert denied.value.pgcode == "42501"
    seen = usage(pg, user="watcher")
    assert seen["disk_total_bytes"] > 0 and seen["wal_bytes"] >= 16 * 2**20, seen
    assert seen["status"] == "ok" and seen["eta_to_full"] is None


def test_budget_advice_weighs_the_peak_rate_and_the_longest_outage_against_the_volume(
        small_volume, make_cluster):
    volume = small_volume(1024)
    pg = make_cluster(waldir=os.path.join(volume, "pg_wal"),
                      settings={**WORKER, "max_slot_wal_keep_size": "'2GB'",
                                "max_wal_size": "'64MB'", "min_wal_size": "'32MB'",
                                "cdc_health.history_interval": "1s"})
    before = {r[0]: r for r in pg.sql("SELECT * FROM cdc_health.budget_advice()")}
    assert before["recommended"][2] is None and "two hours" in before["recommended"][7], before
    pg.sql("SELECT pg_create_physical_replication_slot('feed', true)")
    slot_id = wait_for(lambda: pg.one("SELECT id FROM cdc_health.history_slots "
                                      "WHERE slot_name = 'feed'"), what="the slot's history")
    # Four hours of a row a minute, as the worker writes them, five hours ago: WAL written at
    # 100, 300, 50 and 50 MB an hour; the consumer away for 40 minutes in the third hour.
    pg.sql("""
        INSERT INTO cdc_health.history_samples
            (sampled_at, retained_wal_bytes, current_lsn, restart_lsn, slot_id, kind, status,
             wal_status, active)
        SELECT date_trunc('hour', now()) - interval '5 hours' + make_interval(mins => m),
               0, '0/0'::pg_lsn + lsn, '0/0'::pg_lsn + lsn, %(id)s, 0, 0, 0,
               NOT (m >= 140 AND m < 180)
        FROM (SELECT m, (1048576::bigint * (CASE WHEN m < 60 THEN 100 * m
                                         WHEN m < 120 THEN 6000 + 300 * (m - 60)
                                         ELSE 24000 + 50 * (m - 120) END) / 60)::bigint AS lsn
              FROM generate_series(0, 239) m) s
    """, {"id": slot_id})
    rows = {r[0]: r for r in pg.sql("SELECT * FROM cdc_health.budget_advice()")}
    setting, value, budget, survives, leaves, per_hour, outage, summary = rows["recommended"]
    assert 290 * 2**20 <= per_hour <= 300 * 2**20, per_hour
    assert outage.total_seconds() == 40 * 60, outage
    # Twice the longest outage (80 min) at ~297 MB/h is ~396 MB, rounded down to 64 MB.
    assert (value, budget) == ("384MB", 384 * 2**20), rows["recommended"]
    assert 75 * 60 <= survives.total_seconds() <= 80 * 60, survives
    assert leaves > 0 and "times the longest outage seen (40min)" in summary, summary
    # What it recommends is a value the server takes.
    pg.set_config(max_slot_wal_keep_size=value)
    wait_for(lambda: pg.one("SHOW max_slot_wal_keep_size") == "384MB", what="the reload")

    current = {r[0]: r for r in pg.sql("SELECT * FROM cdc_health.budget_advice()")}["current"]
    assert current[1:3] == ("384MB", 384 * 2**20), current
    pg.set_config(max_slot_wal_keep_size="2GB")
    wait_for(lambda: pg.one("SHOW max_slot_wal_keep_size") == "2GB", what="the reload")
    current = {r[0]: r for r in pg.sql("SELECT * FROM cdc_health.budget_advice()")}["current"]
    assert current[4] < 0 and "the volume cannot hold it" in current[7], current
