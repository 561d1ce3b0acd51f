"""The background worker on a preloaded cluster: alerts over a real LISTEN connection,
stalled consumers, loss forecast, history, crash and drop resilience."""

import os
import signal
import time

import pytest

from pgcluster import wait_for

MB = 1 << 20

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.inactive_warning": "1s",
    "cdc_health.stall_after": "3s",
    "cdc_health.alert_holddown": "2s",
    "cdc_health.retained_wal_warning": "1GB",
    "max_slot_wal_keep_size": "128MB",
    "max_wal_size": "1GB",
}


def worker(pg):
    rows = pg.sql("SELECT running, pid, passes, failed_passes, extension_present "
                  "FROM cdc_health.worker_status()")
    return dict(zip(["running", "pid", "passes", "failed_passes", "extension_present"], rows[0]))


def passes_after(pg, n=2):
    """Waits until the worker completed `n` more passes."""
    start = worker(pg)["passes"]
    wait_for(lambda: worker(pg)["passes"] >= start + n, what=f"{n} worker passes")


def open_alerts(pg, subject=None):
    rows = pg.sql("SELECT id, subject, finding, severity FROM cdc_health.alerts "
                  "WHERE resolved_at IS NULL ORDER BY id")
    return [r for r in rows if subject is None or r[1] == subject]


@pytest.fixture
def pg(make_cluster):
    c = make_cluster(WORKER)
    wait_for(lambda: worker(c)["running"] and worker(c)["extension_present"],
             what="worker to find the extension")
    return c


def test_worker_runs_and_fills_history_columns(pg):
    pg.create_logical_slot("watched")
    pg.recvlogical("watched")
    passes_after(pg, 3)
    row = pg.health("watched")
    assert row["detail"]["worker"]["running"] is True
    assert row["detail"]["worker"]["history"] == "kept"
    assert row["last_progress_at"] is not None
    backend = pg.one("SELECT backend_type FROM pg_stat_activity WHERE pid = %s", (worker(pg)["pid"],))
    assert backend == "cdc_health"
    # The monitor holds no snapshot between passes.
    assert pg.one("SELECT backend_xmin FROM pg_stat_activity WHERE pid = %s",
                  (worker(pg)["pid"],)) is None


def test_killed_consumer_raises_then_resolves(pg):
    listener = pg.listen()
    pg.create_logical_slot("orders")
    consumer = pg.recvlogical("orders")
    passes_after(pg)
    consumer.kill()
    raised, waited = listener.wait(event="raised", subject="slot:orders", finding="inactive")
    print(f"inactive raised {waited:.1f}s after the consumer was killed")
    assert raised["severity"] in ("warning", "critical")
    assert raised["remediation"] and "consumer" in raised["remediation"]
    assert {"alert_id", "time", "summary", "detail"} <= set(raised)
    assert len(open_alerts(pg, "slot:orders")) == 1

    pg.recvlogical("orders")
    resolved, _ = listener.wait(event="resolved", subject="slot:orders", finding="inactive")
    assert resolved["alert_id"] == raised["alert_id"]
    assert open_alerts(pg, "slot:orders") == []
    listener.close()


def test_connected_but_never_acknowledging_consumer_is_stalled(pg):
    listener = pg.listen()
    pg.create_logical_slot("stuck")
    pg.never_ack_consumer("stuck")
    pg.sql("CREATE TABLE churn (x text)")
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        # About 200 kB of WAL each: past cdc_health.stall_min_wal (1MB) within seconds.
        pg.sql("INSERT INTO churn SELECT repeat('x', 1000) FROM generate_series(1, 200)")
        listener.drain(0.5)
        if any(p["finding"] == "stalled" for p in listener.received):
            break
    raised, _ = listener.wait(timeout=1, event="raised", subject="slot:stuck", finding="stalled")
    row = pg.health("stuck")
    assert row["active"] is True, "an active-based check would call this slot fine"
    assert "stalled" in row["findings"]
    assert "inactive" not in row["findings"]
    listener.close()


def test_a_low_traffic_stuck_consumer_is_stalled_and_a_healthy_one_is_not(make_cluster):
    """A few small transactions a second never reach cdc_health.stall_min_wal (1MB) in the
    test's time; what tells the stuck consumer from the healthy one is that transactions were
    sent to it and it confirmed none of them."""
    pg = make_cluster({**WORKER, "cdc_health.stall_after": "5s"})
    wait_for(lambda: worker(pg)["running"] and worker(pg)["extension_present"],
             what="worker to find the extension")
    listener = pg.listen()
    pg.sql("CREATE TABLE trickle (x int)")
    pg.create_logical_slot("stuck_quiet")
    pg.create_logical_slot("healthy_quiet")
    pg.never_ack_consumer("stuck_quiet")
    pg.recvlogical("healthy_quiet")
    started = time.monotonic()
    deadline = started + 5 + 2 * 1 + 10
    while time.monotonic() < deadline:
        pg.sql("INSERT INTO trickle VALUES (1)")
        listener.drain(0.3)
        if any(p["finding"] == "stalled" for p in listener.received):
            break
    raised, _ = listener.wait(timeout=1, event="raised", subject="slot:stuck_quiet",
                              finding="stalled")
    print(f"stalled raised {time.monotonic() - started:.1f}s after the trickle began")
    assert pg.health("stuck_quiet")["flush_lag_bytes"] < 1 << 20, "below stall_min_wal"
    for _ in range(20):  # the healthy one, in the same trickle, several stall_after long
        pg.sql("INSERT INTO trickle VALUES (2)")
        time.sleep(0.5)
    assert "stalled" not in pg.health("healthy_quiet")["findings"]
    assert open_alerts(pg, "slot:healthy_quiet") == []
    listener.close()


def test_idle_healthy_slot_is_not_stalled(pg):
    pg.create_logical_slot("quiet")
    pg.recvlogical("quiet")
    time.sleep(5)  # longer than stall_after, with no writes
    assert "stalled" not in pg.health("quiet")["findings"]
    assert open_alerts(pg, "slot:quiet") == []


def test_unreserved_and_lost_raise_alerts(pg):
    listener = pg.listen()
    pg.create_logical_slot("doomed")
    pg.grow_wal(9)
    unreserved, _ = listener.wait(event="raised", subject="slot:doomed", finding="unreserved")
    assert unreserved["severity"] == "critical"
    pg.sql("CHECKPOINT")
    lost, _ = listener.wait(event="raised", subject="slot:doomed", finding="lost")
    assert "resync" in lost["remediation"]
    # unreserved gives way to lost.
    resolved, _ = listener.wait(event="resolved", subject="slot:doomed", finding="unreserved")
    assert resolved["alert_id"] == unreserved["alert_id"]
    listener.close()


def test_forecast_predicts_loss(make_cluster):
    pg = make_cluster({**WORKER, "max_slot_wal_keep_size": "96MB",
                       "cdc_health.forecast_window": "20s"})
    wait_for(lambda: worker(pg)["extension_present"], what="worker")
    pg.create_logical_slot("draining")
    pg.sql("CREATE TABLE feed (payload text)")
    detected = None
    start = time.monotonic()
    while time.monotonic() - start < 120:
        pg.sql("INSERT INTO feed SELECT repeat('x', 1000) FROM generate_series(1, 1000)")
        row = pg.health("draining")
        now = time.monotonic()
        if detected is None and "budget_exhaustion_soon" in row["findings"]:
            eta = row["eta_to_lost"].total_seconds()
            detected = (now, eta, row["growth_bytes_per_sec"])
        if row["wal_status"] == "unreserved":
            pg.sql("CHECKPOINT")
            break
        time.sleep(0.5)
    assert detected, "budget_exhaustion_soon was never raised"
    assert pg.health("draining")["wal_status"] == "lost"
    actual = now - detected[0]
    print(f"forecast at detection: lost in {detected[1]:.1f}s at {detected[2] / MB:.2f} MB/s; "
          f"actually lost {actual:.1f}s later")
    assert abs(detected[1] - actual) <= 0.3 * actual + 2.0, (detected, actual)


def test_history_survives_restart_and_retention_keeps_recent_rows(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.history_interval": "1s"})
    wait_for(lambda: worker(pg)["extension_present"], what="worker")
    pg.sql("SELECT pg_create_physical_replication_slot('kept', true)")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('kept')") >= 1,
             what="a first history row")
    pg.grow_wal(1)  # 16 MB more retained: news, worth a row
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('kept')") >= 2,
             what="a row for the growth")
    before = pg.one("SELECT count(*) FROM cdc_health.slot_history")
    pg.restart()
    # A fast shutdown sends the worker SIGTERM; it leaves its loop and says so.
    assert "cdc_health: worker stopped" in pg.log_tail(400)
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.slot_history") > before,
             what="history rows after restart")
    assert pg.one("SELECT min(sampled_at) < now() - interval '1 second' "
                  "FROM cdc_health.slot_history")
    # Old rows (made here) go; recent ones stay.
    pg.sql("INSERT INTO cdc_health.history_samples (sampled_at, slot_id, kind, status, active) "
           "SELECT now() - interval '30 days', id, 0, 0, false "
           "FROM cdc_health.history_slots, generate_series(1, 50) WHERE slot_name = 'kept'")
    pg.set_config(cdc_health__history_retention="1d")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.slot_history "
                            "WHERE sampled_at < now() - interval '1 day'") == 0,
             what="retention to delete old rows")
    assert pg.one("SELECT count(*) FROM cdc_health.slot_history") >= before
    line = pg.one("SELECT cdc_health.sparkline('kept')")
    assert line and "->" in line


@pytest.mark.parametrize("published", [False, True], ids=["", "under_a_for_all_tables_publication"])
def test_history_rolls_up_to_15min_and_hourly_rows_keeping_transitions(make_cluster, published):
    """Rows older than history_full_retention become a row per slot per 15 minutes, older
    than history_15min_retention a row per hour; state changes stay; history() reads all.
    Also under a FOR ALL TABLES publication, which publishes our tables too: a DELETE from a
    published table without a replica identity fails (55000), as the rollup's did in 0.2.0."""
    pg = make_cluster({**WORKER, "cdc_health.history_interval": "1s"})
    wait_for(lambda: worker(pg)["extension_present"], what="worker")
    if published:
        pg.sql("CREATE PUBLICATION everything FOR ALL TABLES")
    pg.sql("SELECT pg_create_physical_replication_slot('rolled', true)")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('rolled')") >= 1,
             what="a first history row")
    slot_id = pg.one("SELECT id FROM cdc_health.history_slots WHERE slot_name = 'rolled'")
    # Two windows of a row a minute, as the worker writes them: 30 minutes two days ago (two
    # 15-minute periods), 2 hours five days ago (two hours); aligned to whole hours. Retained
    # WAL is the minute number in MB; wal_status turns extended (1) at minute 20 of the first
    # window and back at 21; the slot is active except at minute 5 of the second.
    pg.sql("""
        INSERT INTO cdc_health.history_samples
            (sampled_at, retained_wal_bytes, restart_lsn, slot_id, kind, status, wal_status,
             active)
        SELECT base + make_interval(mins => m), m * 1048576, ('0/0'::pg_lsn + m), %(id)s,
               CASE WHEN m IN (20, 21) AND base < now() - interval '3 days' IS FALSE
                    THEN 1 ELSE 0 END,
               0, CASE WHEN m = 20 AND base > now() - interval '3 days' THEN 1 ELSE 0 END,
               NOT (m = 5 AND base < now() - interval '3 days')
        FROM (VALUES (date_trunc('hour', now()) - interval '2 days', 30),
                     (date_trunc('hour', now()) - interval '5 days', 120)) w(base, minutes),
             generate_series(0, w.minutes - 1) m
    """, {"id": slot_id})
    # As after an upgrade: the steps look for their first rows again.
    pg.sql("UPDATE cdc_health.history_rollups SET rolled_until = NULL")

    def resolutions(since):
        return pg.sql("SELECT resolution, count(*) FROM cdc_health.history('rolled', %s) "
                      "WHERE sampled_at < now() - interval '1 day' GROUP BY 1 ORDER BY 1",
                      (since,))

    def rolled():
        # A pass of our own: the worker looks for old rows only once a minute when idle.
        pg.sql("SELECT * FROM cdc_health.check_now()")
        return dict(resolutions("-infinity")) == {"15min": 2, "1h": 2, "full": 2}

    wait_for(rolled, what="both windows rolled up", timeout=60)
    # The two-day-old window: one row per 15 minutes with the range and the last values.
    quarters = pg.sql(
        "SELECT sampled_at - date_trunc('hour', now() - interval '2 days'), retained_wal_min,"
        " retained_wal_max, retained_wal_bytes, restart_lsn, wal_status, always_active,"
        " transition FROM cdc_health.history('rolled', now() - interval '3 days')"
        " WHERE sampled_at < now() - interval '1 day' ORDER BY sampled_at, resolution")
    mins = [(r[0].total_seconds() // 60,) + tuple(r[1:]) for r in quarters]
    assert mins == [
        (14, 0, 14 * MB, 14 * MB, "0/E", "reserved", True, False),
        # Minute 20 and 21 changed wal_status: kept as full rows, counted in their quarter.
        (20, 20 * MB, 20 * MB, 20 * MB, "0/14", "extended", True, True),
        (21, 21 * MB, 21 * MB, 21 * MB, "0/15", "reserved", True, True),
        (29, 15 * MB, 29 * MB, 29 * MB, "0/1D", "extended", True, False),
    ], quarters
    # Five days old: one row per hour; minute 5 was inactive.
    hours = pg.sql(
        "SELECT retained_wal_min, retained_wal_max, retained_wal_bytes, active, always_active"
        " FROM cdc_health.slot_history WHERE slot_name = 'rolled' AND resolution = '1h'"
        " ORDER BY sampled_at")
    assert hours == [(0, 59 * MB, 59 * MB, True, False), (60 * MB, 119 * MB, 119 * MB, True, True)]
    assert pg.one("SELECT count(*) FROM cdc_health.history_samples"
                  " WHERE kind IN (0, 1) AND sampled_at < now() - interval '1 day'") == 2
    # Recent rows are untouched, and the sparkline reads across resolutions.
    assert pg.one("SELECT count(*) FROM cdc_health.history('rolled') WHERE resolution <> 'full'") == 0
    assert "->" in pg.one("SELECT cdc_health.sparkline('rolled', now() - interval '6 days')")
    # The steps moved on past both windows and stay there.
    assert pg.one("SELECT bool_and(rolled_until >= now() - interval '3 days 1 hour')"
                  " FROM cdc_health.history_rollups")


def test_worker_killed_is_restarted_without_duplicate_alerts(pg):
    pg.create_logical_slot("orphan")
    wait_for(lambda: open_alerts(pg, "slot:orphan"), what="inactive alert")
    before = open_alerts(pg)
    os.kill(worker(pg)["pid"], signal.SIGKILL)
    # The postmaster restarts the cluster after a crash, and then the worker.
    time.sleep(1)
    wait_for(lambda: _safe_running(pg), timeout=60, what="worker back after SIGKILL")
    passes_after(pg, 3)
    assert open_alerts(pg) == before
    assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject = 'slot:orphan'") == 1


def _safe_running(pg):
    try:
        w = worker(pg)
        return w["running"] and w["passes"] > 0
    except Exception:  # the server is still restarting
        return False


def test_drop_and_recreate_extension_while_worker_runs(pg):
    pid = worker(pg)["pid"]
    pg.create_logical_slot("survivor")
    wait_for(lambda: open_alerts(pg, "slot:survivor"), what="first alert")
    pg.sql("DROP EXTENSION cdc_health")
    time.sleep(3)
    pg.sql("CREATE EXTENSION cdc_health")
    wait_for(lambda: open_alerts(pg, "slot:survivor"), what="alert after re-creation")
    status = worker(pg)
    assert status["pid"] == pid, "the worker must not have crashed"
    assert status["extension_present"]
    assert "terminated by signal" not in pg.log_tail(200)


def test_the_worker_sees_every_committed_change_to_its_alerts(pg):
    """The worker keeps the open alerts between passes (reading them again after a minute at
    most): a change someone else commits must reach it well before that, and one not yet
    committed must not be taken for the table's state."""
    pg.create_logical_slot("kept")
    first = wait_for(lambda: open_alerts(pg, "slot:kept"), what="inactive alert")[0][0]
    passes_after(pg, 3)  # the copy is read and used

    def reraised(after):
        rows = open_alerts(pg, "slot:kept")
        return rows and rows[0][0] > after and rows[0][0]

    # Deleted by the owner, in a transaction left open over several passes.
    owner = pg.connect(autocommit=False)
    with owner.cursor() as cur:
        cur.execute("DELETE FROM cdc_health.alerts WHERE id = %s", (first,))
    passes_after(pg, 3)
    assert open_alerts(pg, "slot:kept")[0][0] == first, "uncommitted: the row is still open"
    owner.commit()
    second = wait_for(lambda: reraised(first), timeout=15, what="alert raised again after DELETE")
    passes_after(pg, 3)

    # Resolved by hand under session_replication_role = replica (ordinary triggers off).
    with owner.cursor() as cur:
        cur.execute("SET session_replication_role = replica")
        cur.execute("UPDATE cdc_health.alerts SET resolved_at = now() - interval '1 hour' "
                    "WHERE id = %s", (second,))
    owner.commit()
    third = wait_for(lambda: reraised(second), timeout=15, what="alert raised again after UPDATE")
    passes_after(pg, 3)

    # Emptied.
    with owner.cursor() as cur:
        cur.execute("TRUNCATE cdc_health.alerts")
    owner.commit()
    owner.close()
    wait_for(lambda: reraised(third), timeout=15, what="alert raised again after TRUNCATE")
    assert len(open_alerts(pg, "slot:kept")) == 1
    assert worker(pg)["failed_passes"] == 0


def test_idle_server_raises_nothing_and_writes_little_wal(make_cluster):
    # Autovacuum off: its ANALYZE of the new tables takes transaction ids of its own, a
    # varying number per run, and this test counts the worker's.
    pg = make_cluster({**WORKER, "autovacuum": "off"})
    wait_for(lambda: worker(pg)["running"] and worker(pg)["extension_present"],
             what="worker to find the extension")
    pg.create_logical_slot("steady_logical")
    pg.recvlogical("steady_logical")
    passes_after(pg, 2)
    start_lsn = pg.one("SELECT pg_current_wal_lsn()")
    start_xid = int(pg.one("SELECT txid_current()"))
    start_passes = worker(pg)["passes"]
    time.sleep(30)
    wal = pg.one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start_lsn,))
    passes = worker(pg)["passes"] - start_passes
    xids = int(pg.one("SELECT txid_current()")) - start_xid - 1
    # Reads take no transaction id: only history writes do, one transaction per
    # cdc_health.history_interval (1min), so at most one in 30 s; one more for the slack of
    # a write that began just before the window.
    assert xids <= 2, f"{xids} transaction ids consumed in {passes} idle passes"
    print(f"idle: {passes} passes in 30s, {int(wal)} bytes of WAL in all "
          f"({int(wal) * 120 / 1024:.0f} kB/hour extrapolated), {xids} xids")
    assert passes >= 20
    assert worker(pg)["failed_passes"] == 0
    assert open_alerts(pg, "slot:steady_logical") == []


def test_history_skips_rows_that_say_nothing_new(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.history_interval": "1s",
                       "cdc_health.history_idle_interval": "6s",
                       "cdc_health.inactive_warning": "1h"})  # its status stays the same
    wait_for(lambda: worker(pg)["extension_present"], what="worker")
    pg.sql("SELECT pg_create_physical_replication_slot('quiet', true)")
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('quiet')") == 1,
             what="a first history row")
    passes_after(pg, 3)
    # Nothing moved: no row per interval (the monitor's own few kB of WAL are not news)...
    assert pg.one("SELECT count(*) FROM cdc_health.history('quiet')") == 1
    # ...but one per idle interval, so a quiet slot still shows in the history.
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.history('quiet')") == 2,
             timeout=15, what="the idle-interval row")


def test_heartbeat_off_by_default_then_beats(pg):
    beats = pg.one("SELECT beats FROM cdc_health.heartbeat")
    passes_after(pg, 2)
    assert pg.one("SELECT beats FROM cdc_health.heartbeat") == beats, "off by default"
    pg.set_config(cdc_health__heartbeat_interval="1s")
    wait_for(lambda: pg.one("SELECT beats FROM cdc_health.heartbeat") >= beats + 2,
             what="heartbeats")
    assert pg.one("SELECT beat_at > now() - interval '10 seconds' FROM cdc_health.heartbeat")


def test_standby_is_monitored_read_only(pg):
    pg.sql("SELECT pg_create_physical_replication_slot('to_standby', true)")
    replica = pg.standby("to_standby", settings=WORKER)
    wait_for(lambda: _safe_running(replica), what="worker on the standby")
    replica.sql("SELECT pg_create_physical_replication_slot('on_standby', true)")
    passes_after(replica, 2)
    status = worker(replica)
    assert status["failed_passes"] == 0
    assert replica.one("SELECT in_recovery FROM cdc_health.worker_status()")
    row = replica.health("on_standby")
    assert row["detail"]["in_recovery"] is True
    assert row["detail"]["worker"]["running"] is True
    assert row["retained_wal_bytes"] is not None, "measured against the replay position"
    # Nothing was written there (it cannot be): its alerts table mirrors the primary's.
    assert replica.one("SELECT count(*) FROM cdc_health.alerts WHERE subject = 'slot:on_standby'") == 0


def test_slots_beyond_max_tracked_are_assessed_without_history(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.max_tracked_slots": "2"})
    wait_for(lambda: worker(pg)["extension_present"], what="worker")
    for name in ("one", "two", "three"):
        pg.sql("SELECT pg_create_physical_replication_slot(%s, true)", (name,))
    passes_after(pg, 2)
    rows = pg.health()
    assert len(rows) == 3, "every slot is still assessed"
    kept = [r["detail"]["worker"]["history"] for r in rows]
    assert kept.count("kept") == 2 and kept.count(
        "not kept: more slots than cdc_health.max_tracked_slots") == 1, kept
    assert pg.one("SELECT untracked_slots FROM cdc_health.worker_status()") == 1


def test_a_slot_newer_than_the_last_pass_is_called_not_sampled_yet(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.interval": "1h"})
    wait_for(lambda: worker(pg)["passes"] >= 1, what="the first pass")
    pg.sql("SELECT pg_create_physical_replication_slot('brand_new', true)")
    history = pg.health("brand_new")["detail"]["worker"]["history"]
    assert history == "not sampled yet: the slot is newer than the worker's last pass", history
    pg.sql("SELECT cdc_health.check_now()")
    assert pg.health("brand_new")["detail"]["worker"]["history"] == "kept"


def test_reminders_rewrite_no_row_and_resume_an_interval_after_a_restart(make_cluster):
    pg = make_cluster({**WORKER, "cdc_health.alert_reminder_interval": "2s"})
    wait_for(lambda: worker(pg)["running"] and worker(pg)["extension_present"], what="the worker")
    listener = pg.listen()
    pg.create_logical_slot("forgotten")
    raised, _ = listener.wait(event="raised", subject="slot:forgotten", finding="inactive")
    alert_id = raised["alert_id"]
    for _ in range(2):
        reminder, _ = listener.wait(event="reminder", alert_id=alert_id)
    assert reminder["subject"] == "slot:forgotten" and reminder["finding"] == "inactive"
    assert reminder["summary"] and reminder["remediation"], reminder
    # Their clock is in shared memory: the row still says the raise (no WAL for reminders).
    notifications, untouched = pg.sql(
        "SELECT notifications, last_notified_at = raised_at FROM cdc_health.alerts WHERE id = %s",
        (alert_id,))[0]
    assert (notifications, untouched) == (1, True)
    listener.close()

    # After a restart shared memory is empty and the row's clock is long overdue: still no
    # burst at the first passes; the next reminder comes an interval after the start.
    pg.set_config(cdc_health__alert_reminder_interval="8s")
    raised_age = pg.one("SELECT extract(epoch FROM now() - raised_at) FROM cdc_health.alerts "
                        "WHERE id = %s", (alert_id,))
    time.sleep(max(0.0, 10 - float(raised_age)))
    pg.restart()
    listener = pg.listen()
    wait_for(lambda: worker(pg)["running"], what="the worker after the restart")
    passes_after(pg, 2)
    listener.drain()
    early = [p for p in listener.received if p.get("event") == "reminder"]
    assert early == [], f"reminders right after the restart: {early}"
    listener.wait(event="reminder", alert_id=alert_id)
    listener.close()
