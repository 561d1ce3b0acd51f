"""Stuck slot creation (named blockers, standby-snapshot nudge, opt-in termination) and long
transactions that pin slots, on real clusters with the worker running."""

import threading
import time

import psycopg2
import pytest

from pgcluster import Child, wait_for

SETTINGS = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.unblock_after": "1s",
    "cdc_health.alert_holddown": "0",
    "max_prepared_transactions": "5",
}


@pytest.fixture
def pg(make_cluster):
    c = make_cluster(SETTINGS)
    wait_for(lambda: c.one("SELECT extension_present FROM cdc_health.worker_status()"),
             what="worker")
    return c


def hold_xid(pg):
    """Session A: an open transaction with an xid, idle in transaction."""
    conn = pg.connect(autocommit=False)
    conn.cursor().execute("SELECT txid_current()")
    pid = conn.get_backend_pid()
    return conn, pid


def create_in_background(pg, slot):
    """Session B: SQL slot creation, which blocks; returns the thread and its result box."""
    done = {}

    def run():
        try:
            pg.sql("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
            done["at"] = time.monotonic()
        except psycopg2.Error as e:
            done["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, done


def creations(pg):
    cols = ["pid", "backend_type", "slot_name", "blocking_pids", "blockers", "snapshots_logged",
            "last_snapshot_lsn"]
    rows = pg.sql(f"SELECT {', '.join(cols)} FROM cdc_health.slot_creations()")
    return [dict(zip(cols, r)) for r in rows]


def running_xacts_records(pg, since_lsn):
    return pg.one("SELECT count(*) FROM pg_get_wal_records_info(%s, pg_current_wal_lsn()) "
                  "WHERE record_type = 'RUNNING_XACTS'", (since_lsn,))


def test_sql_creation_blocked_is_named_nudged_and_resolved(pg):
    pg.sql("CREATE EXTENSION pg_walinspect")
    listener = pg.listen()
    blocker, blocker_pid = hold_xid(pg)
    start_lsn = pg.one("SELECT pg_current_wal_lsn()")
    thread, done = create_in_background(pg, "waiting_slot")

    rows = wait_for(lambda: [c for c in creations(pg) if c["snapshots_logged"] >= 2],
                    what="a nudged creation")
    c = rows[0]
    assert c["slot_name"] == "waiting_slot" and c["backend_type"] == "client backend"
    assert c["blocking_pids"] == [blocker_pid]
    assert c["blockers"][0]["pid"] == blocker_pid
    assert c["blockers"][0]["state"] == "idle in transaction"
    assert running_xacts_records(pg, start_lsn) >= 2, "standby snapshots are in the WAL"
    lsn1 = c["last_snapshot_lsn"]
    wait_for(lambda: creations(pg)[0]["last_snapshot_lsn"] != lsn1, what="another snapshot")

    row = pg.health("waiting_slot")
    assert "creation_blocked" in row["findings"]
    assert f"pid {blocker_pid}" in row["remediation"] and "idle in transaction" in row["remediation"]
    raised, _ = listener.wait(event="raised", subject="slot:waiting_slot",
                              finding="creation_blocked")
    # The payload is public: the blocker's pid; its description is in the alerts table.
    assert raised["detail"]["creation"]["blocking_pids"] == [blocker_pid]
    assert f"pid {blocker_pid}" in pg.one("SELECT summary FROM cdc_health.alerts WHERE id = %s",
                                          (raised["alert_id"],))

    ended = time.monotonic()
    blocker.commit()
    thread.join(30)
    assert "at" in done, done
    print(f"blocker end to slot created: {done['at'] - ended:.3f}s (PostgreSQL {pg.version})")
    listener.wait(event="resolved", subject="slot:waiting_slot", finding="creation_blocked")
    assert creations(pg) == []
    blocker.close()
    listener.close()


def test_walsender_creation_blocked(pg):
    blocker, blocker_pid = hold_xid(pg)
    creator = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                     "-U", "postgres", "-d", "postgres", "--slot", "via_walsender",
                     "--create-slot", "-P", "test_decoding"])
    pg.children.append(creator)
    # The half-created slot shows before the walsender starts waiting on the blocker.
    rows = wait_for(lambda: [c for c in creations(pg) if c["blocking_pids"]],
                    what="walsender creation waiting on the blocker")
    assert rows[0]["backend_type"] == "walsender"
    assert rows[0]["blocking_pids"] == [blocker_pid]
    blocker.commit()
    creator.proc.wait(30)
    assert creator.proc.returncode == 0
    assert pg.one("SELECT confirmed_flush_lsn IS NOT NULL FROM pg_replication_slots "
                  "WHERE slot_name = 'via_walsender'")
    blocker.close()


def test_prepared_transaction_blocks_creation(pg):
    a = pg.connect(autocommit=True)
    cur = a.cursor()
    cur.execute("BEGIN; SELECT txid_current(); PREPARE TRANSACTION 'blocking_px'")
    thread, done = create_in_background(pg, "after_prepared")
    rows = wait_for(lambda: creations(pg), what="creation waiting for a prepared xact")
    gids = [b.get("gid") for b in rows[0]["blockers"]]
    assert "blocking_px" in gids, rows[0]["blockers"]
    row = wait_for(lambda: (r := pg.health("after_prepared")) and "creation_blocked" in r["findings"]
                   and r, what="creation_blocked")
    assert "COMMIT PREPARED 'blocking_px'" in row["remediation"]
    cur.execute("COMMIT PREPARED 'blocking_px'")
    thread.join(30)
    assert "at" in done, done
    a.close()


def test_terminate_blockers_is_opt_in_and_spares_active_queries(pg):
    listener = pg.listen()
    pg.set_config(cdc_health__terminate_blockers_after="3s")
    # An active blocker: its whole transaction is one running statement.
    busy = pg.connect()
    busy_pid = busy.get_backend_pid()
    busy_result = {}

    def run_busy():
        try:
            busy.cursor().execute("BEGIN; SELECT txid_current(); SELECT pg_sleep(7); COMMIT")
            busy_result["ok"] = True
        except psycopg2.Error as e:
            busy_result["error"] = e

    busy_thread = threading.Thread(target=run_busy, daemon=True)
    busy_thread.start()
    wait_for(lambda: pg.one("SELECT backend_xid IS NOT NULL FROM pg_stat_activity WHERE pid = %s",
                            (busy_pid,)), what="the busy transaction's xid")
    idle, idle_pid = hold_xid(pg)
    thread, done = create_in_background(pg, "freed_slot")
    note, _ = listener.wait(timeout=30, event="blocker_terminated", subject="slot:freed_slot")
    # The channel is public: the pid, not who it was or what it ran (that is in the log).
    assert "terminated a session" in note["summary"]
    assert note["detail"]["terminated_pid"] == idle_pid
    assert note["alert_id"] > 0, "announced under the open creation_blocked alert"
    busy_thread.join(30)
    assert busy_result == {"ok": True}, "the running query was never terminated"
    thread.join(30)
    assert "at" in done, done
    listener.drain(1.0)
    assert not [n for n in listener.received if n["event"] == "blocker_terminated"], \
        "only the idle blocker was terminated"
    with pytest.raises(psycopg2.OperationalError):
        idle.cursor().execute("SELECT 1")
    assert f"terminated pid {idle_pid}" in pg.log_tail(400)
    busy.close()
    listener.close()


def test_long_transaction_pins_a_slot_whose_consumer_keeps_up(pg):
    pg.set_config(cdc_health__long_transaction_warning="2s")
    pg.create_logical_slot("keeping_up")
    pg.recvlogical("keeping_up")
    pg.sql("CREATE TABLE busy (x int)")
    old, old_pid = hold_xid(pg)
    row = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pg.sql("INSERT INTO busy SELECT generate_series(1, 100)")
        row = pg.health("keeping_up")
        if "long_transaction" in row["findings"]:
            break
        time.sleep(0.5)
    assert "long_transaction" in row["findings"], row
    assert f"pid {old_pid}" in row["summary"]
    assert f"pg_terminate_backend({old_pid})" in row["remediation"]
    assert row["flush_lag_bytes"] < 1 << 20, "the consumer keeps up all the while"
    old.commit()
    wait_for(lambda: "long_transaction" not in pg.health("keeping_up")["findings"],
             what="long_transaction to clear")
    old.close()


def test_creation_on_a_standby_is_detected_and_the_primary_is_named_for_the_nudge(pg):
    if pg.version < 16:
        pytest.skip("logical slots can be created on a standby from PostgreSQL 16 on")
    pg.sql("SELECT pg_create_physical_replication_slot('to_standby', true)")
    replica = pg.standby("to_standby", settings=SETTINGS)
    wait_for(lambda: replica.one("SELECT passes FROM cdc_health.worker_status()"),
             what="worker on the standby")
    # A transaction open on the primary: the standby learns it ended only from a later
    # running-transactions record, which nothing on an idle primary writes soon.
    blocker, _ = hold_xid(pg)
    # The standby must have replayed past any running-transactions record the primary wrote
    # before the blocker began: one of those, replayed after creation starts, lists no open
    # transaction and lets the creation finish at once.
    lsn = pg.one("SELECT pg_current_wal_lsn()")
    wait_for(lambda: replica.one("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)),
             what="the standby to replay past the blocker's start")
    thread, done = create_in_background(replica, "on_standby")

    def waiting():
        assert not done, f"creation on the standby ended before it could be watched: {done}"
        return creations(replica)

    rows = wait_for(waiting, what="creation waiting on the standby")
    note = replica.one("SELECT note FROM cdc_health.slot_creations()")
    assert note and "pg_log_standby_snapshot()" in note and "primary" in note, note
    assert rows[0]["snapshots_logged"] == 0, "nothing can be logged on a standby"
    # While the blocker is open the creation cannot finish, whatever the primary logs.
    wait_for(lambda: "standby snapshots can only be logged on the primary" in replica.log_tail(200),
             what="the worker's log line")
    blocker.commit()
    # The remedy it names works: a snapshot logged on the primary lets creation finish.
    pg.sql("SELECT pg_log_standby_snapshot()")
    thread.join(30)
    assert "at" in done, done
    assert replica.log_tail(400).count("standby snapshots can only be logged on the primary") == 1
    blocker.close()


def test_termination_stays_within_the_creating_roles_own_rights(pg):
    """A REPLICATION role's slot creation must not get a superuser's session terminated, which
    that role could not do itself; a blocker of its own role it could terminate is."""
    pg.set_config(cdc_health__terminate_blockers_after="2s")
    pg.sql("CREATE ROLE repl LOGIN REPLICATION")
    listener = pg.listen()
    admin, admin_pid = hold_xid(pg)  # a superuser's idle transaction
    done = {}

    def create_as_repl():
        try:
            pg.sql("SELECT pg_create_logical_replication_slot('repl_slot', 'test_decoding')",
                   user="repl")
            done["at"] = time.monotonic()
        except psycopg2.Error as e:
            done["error"] = e

    creator = threading.Thread(target=create_as_repl, daemon=True)
    creator.start()
    wait_for(lambda: any(c["slot_name"] == "repl_slot" for c in creations(pg)),
             what="repl's creation waiting")
    wait_for(lambda: "could not terminate it itself" in pg.log_tail(400),
             what="the log saying the superuser's session is spared")
    time.sleep(3)  # more passes past terminate_blockers_after
    admin.cursor().execute("SELECT 1")  # still alive
    listener.drain(0.5)
    assert not [n for n in listener.received if n["event"] == "blocker_terminated"]
    admin.rollback()
    admin.close()
    creator.join(30)
    assert "at" in done, done

    # repl's own idle transaction blocks its next creation: that one it may end.
    own = psycopg2.connect(pg.dsn(user="repl"))
    own.cursor().execute("SELECT txid_current()")
    own_pid = own.get_backend_pid()
    creator = threading.Thread(target=lambda: pg.sql(
        "SELECT pg_create_logical_replication_slot('repl_slot2', 'test_decoding')", user="repl"),
        daemon=True)
    creator.start()
    note, _ = listener.wait(timeout=30, event="blocker_terminated", subject="slot:repl_slot2")
    assert note["detail"]["terminated_pid"] == own_pid
    creator.join(30)
    listener.close()


# -- Review three: other roles' text, statements and the caller's own transaction -------------

def test_a_gid_with_line_breaks_cannot_write_lines_of_its_own_into_the_remedy(pg):
    """Any role that can PREPARE TRANSACTION chooses the gid that the remedy names."""
    gid = ("x'\nFALSE POSITIVE: nothing is wrong. To clear it run: "
           "SELECT pg_drop_replication_slot('orders')")
    a = pg.connect(autocommit=True)
    cur = a.cursor()
    cur.execute("BEGIN; SELECT txid_current()")
    cur.execute("PREPARE TRANSACTION %s", (gid,))
    thread, done = create_in_background(pg, "after_evil_gid")
    row = wait_for(lambda: (r := pg.health("after_evil_gid")) and "creation_blocked" in r["findings"]
                   and r, what="creation_blocked")
    alert = wait_for(lambda: pg.one("SELECT remediation FROM cdc_health.alerts "
                                    "WHERE finding = 'creation_blocked'"), what="the alert")
    for text in (row["remediation"], row["summary"], alert):
        assert "\n" not in text and "\r" not in text, text
        assert "drop_replication_slot('orders')\n" not in text
    # Too long to repeat whole, so the command is not written with a cut gid.
    assert "whole gid as pg_prepared_xacts shows it" in row["remediation"], row["remediation"]
    assert "…" in row["remediation"]
    cur.execute("ROLLBACK PREPARED %s", (gid,))
    thread.join(30)
    assert "at" in done, done
    # A short gid with a line break is named exactly, escaped, on one line.
    cur.execute("BEGIN; SELECT txid_current()")
    cur.execute("PREPARE TRANSACTION %s", ("a'b\nc",))
    thread, done = create_in_background(pg, "after_short_gid")
    row = wait_for(lambda: (r := pg.health("after_short_gid")) and "creation_blocked" in r["findings"]
                   and r, what="creation_blocked")
    command = row["remediation"].split(": ")[-1].split(" or ROLLBACK")[0]
    assert command == "COMMIT PREPARED E'a''b\\nc'", row["remediation"]
    cur.execute(command)
    thread.join(30)
    assert "at" in done, "the remedy's own command ended the transaction"
    a.close()


def test_a_blockers_statement_is_kept_as_its_command_word_only(pg):
    pg.sql("CREATE ROLE victim")
    blocker = pg.connect(autocommit=False)
    blocker.cursor().execute("SELECT txid_current()")
    blocker.cursor().execute("ALTER ROLE victim PASSWORD 'hunter2-in-a-blocker'")
    thread, done = create_in_background(pg, "behind_alter")
    rows = wait_for(lambda: [c for c in creations(pg) if c["blockers"]], what="the blocker")
    assert rows[0]["blockers"][0]["statement"] == "ALTER", rows[0]["blockers"]
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts "
                            "WHERE finding = 'creation_blocked'"), what="the alert")
    stored = str(pg.sql("SELECT detail::text, summary, remediation FROM cdc_health.alerts"))
    stored += str(pg.sql("SELECT * FROM cdc_health.slot_creations()"))
    stored += str(pg.health("behind_alter"))
    assert "hunter2" not in stored, stored
    blocker.commit()
    thread.join(30)
    assert "at" in done, done
    blocker.close()


def test_long_transaction_is_seen_the_same_from_a_transaction_that_has_an_xid(pg):
    """age() counts from the caller's own xid when it has one: the caller's writes used to
    hide the finding."""
    pg.set_config(cdc_health__long_transaction_warning="1s")
    pg.create_logical_slot("pinned_for_all")
    pg.recvlogical("pinned_for_all")
    holder, _ = hold_xid(pg)
    pg.sql("CREATE TABLE churn (x int)")
    wait_for(lambda: pg.sql("INSERT INTO churn VALUES (1)") is None
             and "long_transaction" in pg.health("pinned_for_all")["findings"],
             what="long_transaction", interval=0.5)
    caller = pg.connect(autocommit=False)
    cur = caller.cursor()
    # Newer xids burned in between make the gap between the two reference points matter.
    for _ in range(5):
        pg.sql("INSERT INTO churn VALUES (1)")
    cur.execute("SELECT txid_current()")
    for _ in range(5):
        pg.sql("INSERT INTO churn VALUES (1)")
    cur.execute("SELECT findings FROM cdc_health() WHERE slot_name = 'pinned_for_all'")
    assert "long_transaction" in cur.fetchone()[0]
    cur.execute("CREATE TEMP TABLE seen AS SELECT findings FROM cdc_health() "
                "WHERE slot_name = 'pinned_for_all'")
    cur.execute("SELECT findings FROM seen")
    assert "long_transaction" in cur.fetchone()[0]
    caller.rollback()
    caller.close()
    holder.close()
