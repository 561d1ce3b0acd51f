"""cdc_health() against real slots, real consumers and real WAL growth (no preloading)."""

import psycopg2
import pytest

from pgcluster import wait_for

MB = 1 << 20

# Small budgets so that WAL growth and invalidation take seconds. max_wal_size starts at its
# minimum so that a slot goes `extended` before `unreserved` (see test_wal_growth_...).
SMALL_BUDGET = {
    "max_slot_wal_keep_size": "128MB",
    "max_wal_size": "32MB",
    "cdc_health.retained_wal_warning": "32MB",
    "cdc_health.inactive_warning": "1s",
}


def findings(row):
    return list(row["findings"])


def test_healthy_active_slot_stays_ok(make_cluster):
    pg = make_cluster(SMALL_BUDGET)
    pg.create_logical_slot("healthy")
    pg.recvlogical("healthy")
    pg.sql("CREATE TABLE t (id int)")
    pg.sql("INSERT INTO t SELECT generate_series(1, 1000)")
    wait_for(lambda: pg.health("healthy")["flush_lag_bytes"] < MB, what="consumer to confirm")
    row = pg.health("healthy")
    assert row["status"] == "ok", row
    assert findings(row) == []
    assert row["active"] is True
    assert row["wal_status"] == "reserved"
    assert row["remediation"] is None
    assert row["wal_budget_bytes"] == 128 * MB
    # Counted from segment boundaries, so it may exceed the budget by up to a segment.
    assert 96 * MB < row["safe_wal_size"] <= 144 * MB
    assert row["database"] == "postgres" and row["slot_type"] == "logical"


def test_killed_consumer_shows_inactive(make_cluster):
    pg = make_cluster(SMALL_BUDGET)
    pg.create_logical_slot("victim")
    consumer = pg.recvlogical("victim")
    assert "inactive" not in findings(pg.health("victim"))
    consumer.kill()
    row = wait_for(lambda: (r := pg.health("victim")) and "inactive" in r["findings"] and r,
                   what="inactive finding")
    assert row["active"] is False
    assert row["status"] == "warning"
    assert "restart the CDC consumer" in row["remediation"]
    if pg.version >= 17:
        # inactive_since tells the duration without the worker.
        assert row["inactive_for"] is not None
        assert row["detail"]["inactive_duration_known"] is True
    else:
        assert row["inactive_for"] is None
        assert "unknown" in row["summary"]


def test_wal_growth_to_unreserved_then_lost(make_cluster):
    pg = make_cluster(SMALL_BUDGET)
    pg.create_logical_slot("stuck")
    pg.sql("SELECT pg_create_physical_replication_slot('never_reserved')")
    start = pg.health("stuck")
    assert start["wal_status"] == "reserved" and "retained_wal_high" not in start["findings"]

    # Past max_wal_size (32MB) but within the 128MB budget: extended and above the 32MB warning.
    pg.grow_wal(4)
    row = pg.health("stuck")
    assert row["wal_status"] == "extended", row
    assert {"extended", "retained_wal_high"} <= set(row["findings"])
    assert row["retained_wal_bytes"] > 32 * MB
    assert row["status"] == "warning"

    # No automatic checkpoints from here on, so `unreserved` stays visible until we CHECKPOINT.
    pg.set_config(max_wal_size="1GB")
    pg.grow_wal(8)
    row = pg.health("stuck")
    assert row["wal_status"] == "unreserved", row
    assert findings(row)[0] == "unreserved"
    assert row["status"] == "critical"
    assert row["safe_wal_size"] <= 0
    assert "next checkpoint" in row["remediation"]
    retained = pg.health("stuck")["detail"]["findings"]
    assert any(f["code"] == "retained_wal_high" and f["severity"] == "critical" for f in retained)
    # A slot that never reserved WAL holds none: the server's safe_wal_size means nothing there.
    idle = pg.health("never_reserved")
    assert idle["safe_wal_size"] is None and "retained_wal_high" not in idle["findings"], idle

    pg.sql("CHECKPOINT")
    row = pg.health("stuck")
    assert row["wal_status"] == "lost", row
    assert findings(row) == ["lost"]
    assert row["status"] == "critical"
    assert row["retained_wal_bytes"] is None
    assert "pg_drop_replication_slot('stuck')" in row["remediation"]
    assert "resync" in row["remediation"]
    # Worst first: the lost slot heads the list.
    pg.create_logical_slot("fresh")
    assert [r["slot_name"] for r in pg.health()][0] == "stuck"


# cdc_health() reads slots from shared memory and derives what the view computes: the same
# slot, column by column, in one statement.
SAME_AS_THE_VIEW = """
SELECT s.slot_name,
       s.slot_type = c.slot_type, s.database IS NOT DISTINCT FROM c.database,
       s.active = c.active, s.wal_status IS NOT DISTINCT FROM c.wal_status,
       -- cdc_health() leaves it out where no WAL is held (test above)
       s.restart_lsn IS NULL OR s.safe_wal_size IS NOT DISTINCT FROM c.safe_wal_size,
       s.restart_lsn::text IS NOT DISTINCT FROM c.detail->>'restart_lsn',
       s.confirmed_flush_lsn::text IS NOT DISTINCT FROM c.detail->>'confirmed_flush_lsn',
       s.plugin::text IS NOT DISTINCT FROM c.detail->>'plugin',
       s.temporary = (c.detail->>'temporary')::bool,
       s.active_pid IS NOT DISTINCT FROM (c.detail->>'active_pid')::int,
       age(s.xmin) IS NOT DISTINCT FROM (c.detail->>'xmin_age')::int,
       age(s.catalog_xmin) IS NOT DISTINCT FROM (c.detail->>'catalog_xmin_age')::int,
       r.total_txns IS NOT DISTINCT FROM (c.detail->'decoding'->>'total_txns')::int8,
       r.total_bytes IS NOT DISTINCT FROM (c.detail->'decoding'->>'total_bytes')::int8
FROM pg_replication_slots s
JOIN cdc_health() c USING (slot_name)
LEFT JOIN pg_stat_replication_slots r USING (slot_name)
ORDER BY 1"""
COLUMNS = ["slot_type", "database", "active", "wal_status", "safe_wal_size", "restart_lsn",
           "confirmed_flush_lsn", "plugin", "temporary", "active_pid", "age(xmin)",
           "age(catalog_xmin)", "total_txns", "total_bytes"]


def test_slots_read_from_shared_memory_match_pg_replication_slots(make_cluster):
    # wal_keep_size above the slot budget first: safe_wal_size takes the larger of the two.
    pg = make_cluster({**SMALL_BUDGET, "wal_keep_size": "160MB"})
    pg.create_logical_slot("decoded")
    pg.sql("CREATE TABLE t (id int)")
    pg.sql("INSERT INTO t SELECT generate_series(1, 100)")
    # Decoded up to the flushed WAL, which lags a little with synchronous_commit off.
    wait_for(lambda: pg.one("SELECT count(*) FROM "
                            "pg_logical_slot_get_changes('decoded', NULL, NULL)"),
             what="changes decoded")
    # Decoding statistics reach shared memory within a second of the decoding session.
    wait_for(lambda: pg.one("SELECT total_txns FROM pg_stat_replication_slots "
                            "WHERE slot_name = 'decoded'"), what="decoding statistics")
    pg.create_logical_slot("streamed")
    pg.recvlogical("streamed")
    pg.sql("SELECT pg_create_physical_replication_slot('reserved', true)")
    pg.sql("SELECT pg_create_physical_replication_slot('never_reserved')")
    holder = pg.connect()
    holder.cursor().execute(
        "SELECT pg_create_logical_replication_slot('temp', 'test_decoding', true)")
    pg.create_logical_slot("doomed")

    def same_as_the_view(slots=("decoded", "doomed", "never_reserved", "reserved", "streamed",
                                "temp")):
        # The write position may move between the view's read and ours (a standby snapshot
        # every 15 s): a real difference shows every time, that one not three times running.
        for _ in range(3):
            rows = pg.sql(SAME_AS_THE_VIEW)
            wrong = [(r[0], c) for r in rows for c, same in zip(COLUMNS, r[1:]) if not same]
            if not wrong:
                break
        assert not wrong, wrong
        assert [r[0] for r in rows] == list(slots)

    same_as_the_view()
    decoded = pg.health("decoded")["detail"]["decoding"]
    assert decoded["total_txns"] >= 1, decoded
    # Then the budget alone and WAL growth: extended, then lost for the logical slots (their
    # restart_lsn stays behind while idle) and not for the physical slot advanced each time.
    pg.set_config(wal_keep_size="0")
    pg.grow_wal(5)
    pg.sql("SELECT pg_replication_slot_advance('reserved', pg_current_wal_lsn())")
    same_as_the_view()
    pg.grow_wal(5)
    pg.sql("SELECT pg_replication_slot_advance('reserved', pg_current_wal_lsn())")
    pg.sql("CHECKPOINT")
    assert pg.sql("SELECT slot_name, wal_status FROM pg_replication_slots "
                  "WHERE wal_status IS DISTINCT FROM 'lost' ORDER BY 1") \
        == [("never_reserved", None), ("reserved", "reserved")]
    # The server ended the session holding `temp` to invalidate it, which dropped it.
    same_as_the_view(("decoded", "doomed", "never_reserved", "reserved", "streamed"))
    if pg.version >= 16:
        assert pg.health("doomed")["detail"]["invalidation_reason"] == "wal_removed"
    holder.close()


def test_physical_slot_with_old_xmin(make_cluster):
    pg = make_cluster({"cdc_health.xmin_age_warning": "50"})
    pg.sql("SELECT pg_create_physical_replication_slot('standby_slot', true)")
    replica = pg.standby("standby_slot")
    # A long read on the standby holds its feedback xmin while the primary burns xids.
    reader = replica.connect(autocommit=False)
    reader.set_session(isolation_level="REPEATABLE READ")
    reader.cursor().execute("SELECT count(*) FROM pg_class")
    wait_for(lambda: pg.one("SELECT xmin IS NOT NULL FROM pg_replication_slots "
                            "WHERE slot_name = 'standby_slot'"), what="standby feedback xmin")
    for _ in range(120):
        pg.sql("SELECT txid_current()")
    row = wait_for(lambda: (r := pg.health("standby_slot")) and "xmin_horizon_old" in r["findings"]
                   and r, what="xmin_horizon_old")
    reader.close()
    assert row["slot_type"] == "physical"
    assert row["database"] is None
    assert row["active"] is True
    assert row["flush_lag_bytes"] is None
    assert row["detail"]["xmin_age"] > 50
    assert "VACUUM" in row["remediation"]


def test_permissions(make_cluster):
    pg = make_cluster()
    pg.sql("SELECT pg_create_physical_replication_slot('p')")
    pg.sql("CREATE ROLE plain LOGIN")
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="cdc_health"):
        pg.sql("SELECT * FROM cdc_health()", user="plain")
    rows = pg.sql("SELECT slot_name, status, findings FROM cdc_health()", user="watcher")
    assert rows == pg.sql("SELECT slot_name, status, findings FROM cdc_health()")
    assert [r[0] for r in rows] == ["p"]


def test_worker_columns_null_without_preloading(make_cluster):
    pg = make_cluster()
    pg.create_logical_slot("l")
    row = pg.health("l")
    assert (row["last_progress_at"], row["growth_bytes_per_sec"], row["eta_to_lost"]) == \
        (None, None, None)
    assert row["detail"]["worker"]["running"] is False
    assert "shared_preload_libraries" in row["detail"]["worker"]["note"]


def test_loads_at_server_start_when_preloaded(make_cluster):
    pg = make_cluster({"shared_preload_libraries": "'cdc_health'",
                       "cdc_health.retained_wal_warning": "'3GB'"})
    assert pg.one("SHOW cdc_health.retained_wal_warning") == "3GB"
    assert pg.health() == []
