"""Consumer diagnosis with real consumers: a crash loop, a consumer that progresses between
crashes, a missing publication, a second consumer on a slot in use, and a burst of errors."""

import os
import threading
import time

import psycopg2
import pytest

from pgcluster import Child, wait_for

WORKER = {
    "shared_preload_libraries": "'cdc_health'",
    "cdc_health.interval": "1s",
    "cdc_health.stall_after": "20s",
    "cdc_health.inactive_warning": "30s",
    "wal_sender_timeout": "'60s'",
}

HERE = os.path.dirname(os.path.abspath(__file__))


class Writer:
    """Writes small transactions until stopped, so decoding always has something to send."""

    def __init__(self, pg):
        pg.sql("CREATE TABLE IF NOT EXISTS busy (id bigserial PRIMARY KEY, v text)")
        self.pg, self.stopping = pg, threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        conn = self.pg.connect()
        try:
            with conn.cursor() as cur:
                while not self.stopping.is_set():
                    cur.execute("INSERT INTO busy (v) VALUES ('x')")
                    time.sleep(0.02)
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.thread.join(timeout=10)


@pytest.fixture
def writer_for():
    writers = []

    def start(pg):
        writers.append(Writer(pg))
        return writers[-1]

    yield start
    for w in writers:
        w.stop()


def looping(pg, slot, read_secs, pause, confirm):
    proc = Child(["/usr/bin/python3", os.path.join(HERE, "looping_consumer.py"), pg.dsn(), slot,
                  str(read_secs), str(pause), "yes" if confirm else "no"])
    pg.children.append(proc)
    return proc


def consumer(pg, slot):
    return (pg.health(slot) or {}).get("detail", {}).get("consumer", {})


def remedy_of(pg, slot, code):
    """The remedy of the open alert `code` on `slot`, once the worker raised it."""
    query = ("SELECT remediation FROM cdc_health.alerts WHERE subject = %s AND finding = %s "
             "AND resolved_at IS NULL")
    wait_for(lambda: pg.one(query, (f"slot:{slot}", code)), timeout=30, what=f"a {code} alert")
    return pg.one(query, (f"slot:{slot}", code))


def codes(pg, slot):
    row = pg.health(slot)
    return [f["code"] for f in row["detail"]["findings"]] if row else []


def test_a_crash_loop_is_reported_within_three_cycles(make_cluster, writer_for):
    pg = make_cluster(settings=WORKER)
    pg.create_logical_slot("looping")
    writer_for(pg)
    started = time.monotonic()
    looping(pg, "looping", read_secs=3, pause=1, confirm=False)
    wait_for(lambda: "crash_loop" in codes(pg, "looping"), timeout=60,
             what="crash_loop on the looping consumer's slot")
    took = time.monotonic() - started
    c = consumer(pg, "looping")
    assert c["ended_sessions"] >= 3 and c["unconfirmed_sessions"] >= 2, c
    # Three cycles of about 4 s, and a pass at most a second after the last.
    assert took < 4 * 5, f"crash_loop after {took:.0f}s"
    assert c["last_connect_at"] and c["last_disconnect_at"], c
    row = pg.health("looping")
    finding = [f for f in row["detail"]["findings"] if f["code"] == "crash_loop"]
    assert finding and row["status"] in ("warning", "critical"), row
    # The alert is raised too, by the worker.
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE finding = "
                            "'crash_loop' AND resolved_at IS NULL"), timeout=30,
             what="a crash_loop alert")


def test_a_consumer_that_progresses_between_crashes_is_no_crash_loop(make_cluster, writer_for):
    pg = make_cluster(settings=WORKER)
    pg.create_logical_slot("progressing")
    writer_for(pg)
    looping(pg, "progressing", read_secs=3, pause=1, confirm=True)
    wait_for(lambda: consumer(pg, "progressing").get("ended_sessions", 0) >= 4, timeout=60,
             what="four ended sessions")
    c = consumer(pg, "progressing")
    assert c["unconfirmed_sessions"] <= 1, c
    assert "crash_loop" not in codes(pg, "progressing"), pg.health("progressing")


def test_a_missing_publication_is_named_with_its_error_and_remedy(make_cluster, writer_for):
    pg = make_cluster(settings=WORKER)
    pg.sql("CREATE TABLE busy (id bigserial PRIMARY KEY, v text)")
    pg.create_logical_slot("pub", plugin="pgoutput")
    writer_for(pg)
    # pg_recvlogical retries after each error (no --no-loop), as a CDC consumer would.
    proc = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                  "-U", "postgres", "-d", "postgres", "--slot", "pub", "--start",
                  "-o", "proto_version=1", "-o", "publication_names=nope", "-f", "/dev/null",
                  "-s", "1"])
    pg.children.append(proc)
    if pg.version >= 18:
        # 18 warns ("skipped loading publication") and streams on without it: the warning is
        # the only trace, and it is shown.
        wait_for(lambda: (consumer(pg, "pub").get("last_warning") or {}).get("sqlstate"),
                 timeout=60, what="the walsender's warning")
        warning = consumer(pg, "pub")["last_warning"]
        assert "nope" in warning["message"] and len(warning["sqlstate"]) == 5, warning
        return
    wait_for(lambda: "consumer_error" in codes(pg, "pub"), timeout=60,
             what="consumer_error for the missing publication")
    row = pg.health("pub")
    error = row["detail"]["consumer"]["last_error"]
    assert error["sqlstate"] == "42704", error
    assert "nope" in error["message"], error
    assert error["count"] >= 2, error
    assert "publication" in remedy_of(pg, "pub", "consumer_error")


def test_a_second_consumer_on_a_slot_in_use_is_told_apart(make_cluster, writer_for):
    pg = make_cluster(settings=WORKER)
    pg.create_logical_slot("taken")
    writer_for(pg)
    pg.recvlogical("taken")
    listener = pg.listen()
    second = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                    "-U", "postgres", "-d", "postgres", "--slot", "taken", "--start",
                    "-f", "/dev/null", "-s", "1"])
    pg.children.append(second)
    wait_for(lambda: "consumer_error" in codes(pg, "taken"), timeout=60,
             what="consumer_error for the second consumer")
    row = pg.health("taken")
    assert row["detail"]["consumer"]["last_error"]["sqlstate"] == "55006", row["detail"]
    assert "Two consumers" in remedy_of(pg, "taken", "consumer_error")
    # The public channel carries the SQLSTATE and the counts, never the server's message
    # (which names the other consumer's pid).
    payload, _ = listener.wait(event="raised", subject="slot:taken", finding="consumer_error")
    text = str(payload)
    assert "is active for PID" not in text, text
    assert payload["detail"]["consumer"]["last_error"]["sqlstate"] == "55006", payload
    listener.close()


def test_a_burst_of_errors_is_bounded_and_the_server_keeps_serving(make_cluster):
    pg = make_cluster(settings=WORKER)
    pg.create_logical_slot("noisy")
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            for _ in range(10_000):
                try:
                    cur.execute("SELECT count(*) FROM pg_logical_slot_peek_changes("
                                "'noisy', NULL, NULL, 'no-such-option', 'x')")
                except psycopg2.Error as e:
                    assert e.pgcode in ("22023", "XX000"), e.pgerror
    finally:
        conn.close()
    c = consumer(pg, "noisy")
    # The ring keeps the newest 1,024 reports; all of them are this error.
    assert 1 <= c["last_error"]["count"] <= 1024, c
    assert "no-such-option" in c["last_error"]["message"], c
    assert pg.one("SELECT 1") == 1


def test_a_healthy_consumer_through_a_large_transaction_is_not_stalled(make_cluster):
    """pg_recvlogical confirming all it gets, one transaction of over 500 MB that decoding
    spills to disk: while the walsender decodes and sends it the consumer is busy, not
    stalled (cdc_health.stall_after 10s; the write alone takes longer)."""
    pg = make_cluster(settings={**WORKER, "cdc_health.stall_after": "10s",
                                "logical_decoding_work_mem": "'64kB'", "max_wal_size": "'4GB'"})
    pg.sql("CREATE TABLE big (id bigint, v text)")
    pg.create_logical_slot("bulk")
    # Confirms what it receives every second (-F 1: its default is every 10 s, as long as
    # stall_after here); standard output (here /dev/null) is not fsynced.
    proc = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                  "-U", "postgres", "-d", "postgres", "--slot", "bulk", "--start", "--no-loop",
                  "-f", "-", "-s", "1", "-F", "1"])
    pg.children.append(proc)
    wait_for(lambda: pg.health("bulk")["active"], what="pg_recvlogical to connect")
    seen, stopping = set(), threading.Event()

    stalls = []

    def watch():
        while not stopping.is_set():
            row = pg.health("bulk")
            found = [f["code"] for f in row["detail"]["findings"]]
            seen.update(found)
            if "stalled" in found:
                c = row["detail"]["consumer"]
                stalls.append((row["summary"], row["confirmed_flush_lsn"] if "confirmed_flush_lsn"
                               in row else row["detail"].get("confirmed_flush_lsn"),
                               c.get("sent_lsn"), c.get("flush_lsn"), c.get("last_reply_at")))
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        pg.sql("INSERT INTO big SELECT g, repeat('x', 1000) FROM generate_series(1, 520000) g")
        committed = pg.one("SELECT pg_current_wal_lsn()")
        assert pg.one("SELECT %s::pg_lsn - '0/0' > 500 * 1024 * 1024", (committed,))
        wait_for(lambda: pg.one("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM "
                                "pg_replication_slots WHERE slot_name = 'bulk'", (committed,)),
                 timeout=600, interval=0.5, what="the consumer to confirm the transaction")
        time.sleep(2)
    finally:
        stopping.set()
        watcher.join(timeout=10)
    spilled = pg.one("SELECT spill_bytes FROM pg_stat_replication_slots WHERE slot_name = 'bulk'")
    assert spilled and spilled > 100 * 1024 * 1024, f"decoding spilled only {spilled} bytes"
    assert "stalled" not in seen, stalls[:3]


def test_a_consumer_that_stops_answering_is_a_silent_stall(make_cluster, writer_for):
    pg = make_cluster(settings={**WORKER, "cdc_health.stall_after": "10s",
                                "wal_sender_timeout": "0"})
    pg.create_logical_slot("hung")
    writer_for(pg)
    proc = Child(["/usr/bin/python3", os.path.join(HERE, "silent_consumer.py"), pg.dsn(),
                  "hung", "3"])
    pg.children.append(proc)
    # First it is a consumer that confirms nothing (its last reply is recent: consumers answer
    # every 10 s by default); once no reply has come for 30 s it is called silent.
    wait_for(lambda: "stalled" in codes(pg, "hung"), timeout=90, what="stalled on the hung slot")
    # The alert keeps the remedy it was raised with; cdc_health() gives the current one.
    wait_for(lambda: "has not answered the server" in (pg.health("hung")["remediation"] or ""),
             timeout=90, what="the stall to be called silent")
    assert codes(pg, "hung") == ["stalled"], codes(pg, "hung")
    consumer = pg.health("hung")["detail"]["consumer"]
    assert consumer["sessions"] == 1 and consumer["ended_sessions"] == 0, consumer
    assert consumer.get("last_disconnect_at") is None, consumer


def test_a_consumer_retrying_a_lost_slot_is_told_to_resync(make_cluster, writer_for):
    pg = make_cluster(settings={**WORKER, "max_slot_wal_keep_size": "'64MB'",
                                "max_wal_size": "'32MB'", "wal_keep_size": "0"})
    pg.create_logical_slot("gone")
    pg.grow_wal(6)
    pg.sql("CHECKPOINT")
    wait_for(lambda: pg.one("SELECT wal_status FROM pg_replication_slots "
                            "WHERE slot_name = 'gone'") == "lost", what="the slot to be lost")
    # pg_recvlogical retries after each error, as a CDC consumer does.
    proc = Child([pg.bin("pg_recvlogical"), "-h", "127.0.0.1", "-p", str(pg.port),
                  "-U", "postgres", "-d", "postgres", "--slot", "gone", "--start",
                  "-f", "-", "-s", "1"])
    pg.children.append(proc)
    wait_for(lambda: "consumer_error" in codes(pg, "gone"), timeout=60,
             what="consumer_error for the retried lost slot")
    assert pg.health("gone")["detail"]["consumer"]["last_error"]["sqlstate"] == "55000"
    assert "Resync now" in remedy_of(pg, "gone", "consumer_error")
