"""Prometheus metrics: cdc_health.metrics(), the /metrics endpoint scraped by a real
Prometheus, the alert rules and the dashboard in contrib/, and the endpoint under a locked
table, a full server, a token and hostile clients."""

import json
import os
import re
import socket
import subprocess
import threading
import time

import psycopg2
import pytest

from pgcluster import free_port, wait_for
from promstack import CONTRIB, PROMTOOL, Prometheus, check_metrics, get, raw, timed_get

MB = 1 << 20


def worker_passes(pg):
    return pg.one("SELECT passes FROM cdc_health.worker_status()")


def endpoint_settings(port, **extra):
    return {
        "shared_preload_libraries": "'cdc_health'",
        "cdc_health.interval": "1s",
        "cdc_health.metrics_address": f"'127.0.0.1:{port}'",
        **extra,
    }


def sample(text, name, **labels):
    """The value of the one sample of `name` whose labels include `labels`."""
    found = []
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, value = line.rsplit(" ", 1)
        if all(f'{k}="{v}"' in series for k, v in labels.items()):
            found.append(float(value))
    assert len(found) == 1, f"{name} {labels}: {found}\n{text}"
    return found[0]


def serving(port):
    return get(port, timeout=2)[0] == 200


@pytest.fixture
def served(make_cluster):
    port = free_port()
    pg = make_cluster(endpoint_settings(port))
    wait_for(lambda: serving(port) and "cdc_health_slot_creations_waiting" in get(port)[1],
             what="the endpoint to serve a first pass")
    return pg, port


# -- the scenario, scraped by a real Prometheus --------------------------------------------

SCENARIO = {
    "wal_level": "logical",
    "cdc_health.inactive_warning": "1s",
    "cdc_health.stall_after": "3s",
    "cdc_health.alert_holddown": "1s",
    "cdc_health.retained_wal_warning": "1GB",
    "cdc_health.forecast_window": "20s",
    "cdc_health.mirror_interval": "1s",
    "max_slot_wal_keep_size": "160MB",
    "max_wal_size": "1GB",
}


def test_prometheus_scrapes_every_verdict(make_cluster):
    port = free_port()
    pg = make_cluster(endpoint_settings(port, **SCENARIO))
    # "gone" alone holds the oldest WAL: past the budget and a checkpoint, it is lost.
    pg.create_logical_slot("gone")
    pg.grow_wal(12, checkpoint=True)
    wait_for(lambda: pg.health("gone")["wal_status"] == "lost", what="the lost slot")
    pg.create_logical_slot("healthy")
    pg.recvlogical("healthy")
    pg.create_logical_slot("idle")
    pg.create_logical_slot("stuck")
    pg.never_ack_consumer("stuck")
    pg.sql("CREATE TABLE orders_mirror (at timestamptz)")
    pg.sql("INSERT INTO orders_mirror VALUES (now() - interval '1 hour')")
    pg.sql("""SELECT cdc_health.add_freshness_check('orders "eu"', 'orders_mirror', 'at', '1 min')""")
    pg.sql("CREATE TABLE feed (payload text)")

    prom = Prometheus({"cdc_health": [f"127.0.0.1:{port}"]},
                      rule_files=[os.path.join(CONTRIB, "prometheus", "cdc_health.rules.yml")])
    try:
        # Steady WAL growth: the idle slot gets a forecast, the stuck one stalls.
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            pg.sql("INSERT INTO feed SELECT repeat('x', 1000) FROM generate_series(1, 1000)")
            rows = {r["slot_name"]: r for r in pg.health()}
            if ("stalled" in rows["stuck"]["findings"] and rows["idle"]["eta_to_lost"]
                    and prom.query("cdc_health_slot_eta_to_lost_seconds")
                    and prom.query('cdc_health_mirror_finding{finding="mirror_stale"}')
                    and prom.query('cdc_health_slot_finding{finding="stalled"}')):
                break
            time.sleep(0.5)

        def value(expr):
            result = prom.query(expr)
            assert len(result) == 1, f"{expr}: {result}"
            return result[0]["value"]

        assert value('cdc_health_slot_finding{slot_name="gone",finding="lost"}') == 1
        assert value('cdc_health_slot_status{slot_name="gone"}') == 2
        assert value('cdc_health_slot_info{slot_name="gone",wal_status="lost"}') == 1
        assert prom.query('cdc_health_slot_retained_wal_bytes{slot_name="gone"}') == [], \
            "a lost slot retains nothing: the series is left out, not zero"
        assert value('cdc_health_slot_status{slot_name="healthy"}') == 0
        assert value('cdc_health_slot_active{slot_name="healthy"}') == 1
        assert prom.query('cdc_health_slot_finding{slot_name="healthy"}') == []
        assert value('cdc_health_slot_finding{slot_name="idle",finding="inactive",severity="warning"}') == 1
        assert value('cdc_health_slot_active{slot_name="idle"}') == 0
        assert value('cdc_health_slot_inactive_seconds{slot_name="idle"}') > 1
        assert value('cdc_health_slot_eta_to_lost_seconds{slot_name="idle"}') > 0
        assert value('cdc_health_slot_growth_bytes_per_second{slot_name="idle"}') > 0
        assert value('cdc_health_slot_finding{slot_name="stuck",finding="stalled"}') == 1
        assert value('cdc_health_slot_active{slot_name="stuck"}') == 1
        assert value('cdc_health_slot_flush_lag_bytes{slot_name="stuck"}') > MB
        assert value('cdc_health_wal_budget_bytes') == 160 * MB
        assert value('cdc_health_slot_safe_wal_size_bytes{slot_name="idle"}') < 160 * MB
        assert value('cdc_health_alerts_open{severity="critical"}') >= 1
        # The mirror's free-text name survives the label escaping.
        mirror = 'mirror="orders \\"eu\\""'
        assert value(f'cdc_health_mirror_lag_seconds{{{mirror}}}') > \
            value(f'cdc_health_mirror_max_lag_seconds{{{mirror}}}') == 60
        assert value(f'cdc_health_mirror_finding{{{mirror},finding="mirror_stale"}}') == 1
        assert value(f'cdc_health_mirror_status{{{mirror}}}') >= 1
        assert value('cdc_health_worker_up') == 1
        assert value('cdc_health_worker_passes_total') > 5
        assert value('cdc_health_worker_pass_errors_total') == 0
        assert value('time() - cdc_health_worker_last_pass_timestamp_seconds') < 10

        # The rules evaluate against the real series: the lost slot's alert fires.
        wait_for(lambda: any(a["labels"].get("alertname") == "CdcHealthSlotLost"
                             and a["labels"].get("slot_name") == "gone" and a["state"] == "firing"
                             for a in prom.api("alerts")["alerts"]),
                 what="CdcHealthSlotLost firing in Prometheus")
        firing = {a["labels"]["alertname"]: a for a in prom.api("alerts")["alerts"]}
        assert firing["CdcHealthSlotLost"]["labels"]["severity"] == "critical"
        assert "pg_drop_replication_slot('gone')" in \
            firing["CdcHealthSlotLost"]["annotations"]["remediation"]
        assert "CdcHealthWorkerDown" not in firing

        # Every expression of the dashboard evaluates and returns data.
        dashboard = json.load(open(os.path.join(CONTRIB, "grafana", "cdc_health.json")))
        exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
        assert len(exprs) >= 14
        for expr in exprs:
            concrete = expr.replace("$instance", ".+").replace("$__rate_interval", "1m")
            assert prom.query(concrete), f"no data for the dashboard's {expr}"

        # promtool accepts both renderings.
        for text in (get(port)[1], pg.one("SELECT cdc_health.metrics()")):
            ok, said = check_metrics(text)
            assert ok, said
    finally:
        prom.close()


def test_sql_function_matches_the_endpoint_and_needs_pg_monitor(served):
    pg, port = served
    pg.create_logical_slot("s1")
    pg.sql("SELECT pg_create_physical_replication_slot('p1', true)")
    wait_for(lambda: 'slot_name="s1"' in get(port)[1], what="the new slots in the endpoint")
    endpoint = get(port)[1]
    text = pg.one("SELECT cdc_health.metrics()")
    families = lambda t: sorted(set(re.findall(r"^# TYPE (\S+)", t, re.M)))
    assert families(text) == families(endpoint)
    assert sample(text, "cdc_health_slot_info", slot_name="s1", plugin="test_decoding") == 1
    assert 'slot_name="p1",slot_type="physical"}' in text, "no database label on physical slots"
    assert sample(text, "cdc_health_worker_up") == 1
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    pg.sql("CREATE ROLE nobody LOGIN")
    assert "cdc_health_slot_info" in pg.one("SELECT cdc_health.metrics()", user="watcher")
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        pg.one("SELECT cdc_health.metrics()", user="nobody")


def test_without_preloading_metrics_say_the_worker_is_down(make_cluster):
    pg = make_cluster({"wal_level": "logical"})
    pg.create_logical_slot("lonely")
    text = pg.one("SELECT cdc_health.metrics()")
    assert sample(text, "cdc_health_worker_up") == 0
    assert "cdc_health_worker_passes_total" not in text, "no counters without a worker"
    assert sample(text, "cdc_health_slot_info", slot_name="lonely") == 1
    ok, said = check_metrics(text)
    assert ok, said


def test_worker_terminated_shows_down_on_the_endpoint(served):
    pg, port = served
    assert sample(get(port)[1], "cdc_health_worker_up") == 1
    # A terminated worker is not restarted (a crash would be, with the whole server): the
    # endpoint, in its own process, says so instead of serving the last pass as if alive.
    pg.sql("SELECT pg_terminate_backend(pid) FROM cdc_health.worker_status()")
    wait_for(lambda: sample(get(port)[1], "cdc_health_worker_up") == 0, timeout=10,
             what="worker_up 0 after the worker was terminated")
    text = get(port)[1]
    assert sample(text, "cdc_health_worker_passes_total") > 0, "its counters stay"
    ok, said = check_metrics(text)
    assert ok, said


# -- the endpoint when the database cannot answer -------------------------------------------

def test_endpoint_answers_while_tables_are_locked_and_connections_are_full(make_cluster):
    port = free_port()
    pg = make_cluster(endpoint_settings(port, max_connections="12",
                                        superuser_reserved_connections="2"))
    wait_for(lambda: serving(port), what="endpoint")
    pg.create_logical_slot("watched")
    wait_for(lambda: 'slot_name="watched"' in get(port)[1], what="the slot in the endpoint")
    locker = pg.connect(autocommit=False)
    locker.cursor().execute("LOCK TABLE cdc_health.alerts, cdc_health.slot_history "
                            "IN ACCESS EXCLUSIVE MODE")
    held = []
    try:
        # Every connection slot taken (as far as the server lets us).
        for _ in range(20):
            try:
                held.append(pg.connect())
            except psycopg2.OperationalError as e:
                assert "too many clients" in str(e) or "reserved" in str(e), e
                break
        else:
            pytest.fail("max_connections was never reached")
        times = []
        for _ in range(10):
            status, body, took = timed_get(port)
            assert status == 200 and 'slot_name="watched"' in body
            times.append(took)
        times.sort()
        print(f"scrape while locked and full: median {times[5] * 1000:.1f} ms, "
              f"max {times[-1] * 1000:.1f} ms")
        assert times[5] < 0.1, times
        assert times[-1] < 1.0, times
    finally:
        for c in held:
            c.close()
        locker.rollback()
        locker.close()


# -- the token --------------------------------------------------------------------------------

TOKEN = "tok-3f9c1e7a-never-in-logs"


def test_token_is_required_and_never_shown_or_logged(served):
    pg, port = served
    pg.set_config(log_statement="all")
    pg.sql("ALTER SYSTEM SET cdc_health.metrics_auth_token = %s", (TOKEN,))
    pg.sql("SELECT pg_reload_conf()")
    wait_for(lambda: get(port)[0] == 401, what="the token to take effect")
    status, _ = get(port, token="wrong")
    assert status == 401
    status, body = get(port, token=TOKEN)
    assert status == 200 and "cdc_health_worker_up 1" in body
    status, answer = raw(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 401 and b"WWW-Authenticate: Bearer" in answer

    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    pg.sql("CREATE ROLE nobody LOGIN")
    assert pg.one("SHOW cdc_health.metrics_auth_token") == "(set)"
    assert pg.one("SHOW cdc_health.metrics_auth_token", user="watcher") == "(set)"
    assert pg.one("SELECT current_setting('cdc_health.metrics_auth_token')",
                  user="watcher") == "(set)"
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        pg.one("SHOW cdc_health.metrics_auth_token", user="nobody")
    rows = pg.sql("SELECT setting, reset_val, boot_val FROM pg_settings "
                  "WHERE name = 'cdc_health.metrics_auth_token'", user="watcher")
    assert TOKEN not in repr(rows)
    assert TOKEN not in repr(pg.sql("SHOW ALL", user="watcher"))
    with pytest.raises(psycopg2.Error):
        pg.sql("SET cdc_health.metrics_auth_token = 'mine'", user="watcher")
    with pytest.raises(psycopg2.Error):
        pg.sql("ALTER SYSTEM SET cdc_health.metrics_auth_token = 'mine'", user="watcher")

    # A statement that fails while naming the setting is not echoed either.
    with pytest.raises(psycopg2.Error):
        pg.sql(f"ALTER SYSTEM SET cdc_health.metrics_auth_token = '{TOKEN}' FAIL")
    # Off again: open.
    pg.sql("ALTER SYSTEM RESET cdc_health.metrics_auth_token")
    pg.sql("SELECT pg_reload_conf()")
    wait_for(lambda: get(port)[0] == 200, what="the endpoint open again")
    log = open(pg.logfile).read()
    assert "cdc_health.metrics_auth_token" in log, "the reload is still reported"
    assert TOKEN not in log, "the token reached the server log"


# -- hostile and clumsy clients ---------------------------------------------------------------

def test_bad_requests_get_short_answers_and_the_next_scrape_works(served):
    pg, port = served
    cases = [
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405),
        (b"GET / HTTP/1.1\r\n\r\n", 404),
        (b"GET /metrics/../etc/passwd HTTP/1.1\r\n\r\n", 404),
        (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400),  # TLS hello
        (b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /metrics HTTP/1.1\r\n" + b"no colon\r\n\r\n", 400),
    ]
    for request, expected in cases:
        status, answer = raw(port, request)
        assert status == expected, (request[:40], answer[:200])
        assert len(answer) < 1024
        assert serving(port)
    # Oversized without an end: refused once the head passes the limit.
    status, _ = raw(port, b"GET /metrics HTTP/1.1\r\nX: " + b"b" * 100000)
    assert status == 431
    assert serving(port)
    log = pg.log_tail(400)
    assert log.count("metrics endpoint refused") <= 2, "refusals are summed up, not one line each"


def test_slow_and_surplus_clients_do_not_stall_scrapes_or_the_worker(served):
    pg, port = served
    start_passes = worker_passes(pg)
    # One client sends half a head and stops: it times out (408); scrapes go on meanwhile.
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"GET /metr")
    status, _, took = timed_get(port)
    assert status == 200
    slow.settimeout(10)
    assert slow.recv(4096).startswith(b"HTTP/1.1 408"), "the slow client is timed out"
    # 64 fresh idle connections fill the places; the next silent one is refused at once,
    # not queued, and pushes out none of them (they are too new to be called slow) ...
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
    time.sleep(0.3)
    silent = socket.create_connection(("127.0.0.1", port))
    silent.settimeout(5)
    assert silent.recv(4096).startswith(b"HTTP/1.1 503"), "refused at once"
    silent.close()
    # ... while a whole request is answered all the same.
    status, answer = raw(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert status == 200, answer[:200]
    for s in idle + [slow]:
        s.close()
    wait_for(lambda: serving(port), what="places freed")
    assert worker_passes(pg) > start_passes + 2, "slot monitoring went on"


def test_clients_trickling_their_heads_cannot_keep_scrapers_out(served):
    """Slowloris: more trickling clients than places, each sending a byte a second and back
    at once when closed. Each was given 5 s for its head, and 8 of them kept every scrape out."""
    pg, port = served
    stop = threading.Event()

    def trickle():
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
                s.settimeout(0.05)
                for byte in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"z" * 100:
                    if stop.is_set():
                        break
                    s.sendall(bytes([byte]))
                    try:
                        s.recv(64)
                        break  # answered (408, 503) or closed: come back at once
                    except socket.timeout:
                        pass
                    stop.wait(1.0)
                s.close()
            except OSError:
                stop.wait(0.05)

    threads = [threading.Thread(target=trickle, daemon=True) for _ in range(80)]
    for t in threads:
        t.start()
    try:
        time.sleep(3)  # every place is taken by now
        answered = 0
        tries = 30
        for _ in range(tries):
            status, _body = get(port, timeout=3)[:2]
            answered += status == 200
            time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    print(f"slowloris: {answered} of {tries} scrapes answered")
    assert answered >= tries * 0.9, f"{answered} of {tries} scrapes answered"
    assert serving(port)


def test_bad_address_and_port_in_use_are_logged_retried_and_rebound(make_cluster):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    pg = make_cluster(endpoint_settings(busy))
    try:
        wait_for(lambda: "cannot serve metrics" in pg.log_tail(100), what="the bind failure")
        passes = worker_passes(pg)
        wait_for(lambda: worker_passes(pg) > passes + 2, what="monitoring despite the endpoint")
        time.sleep(11)  # one retry
        assert pg.log_tail(200).count("cannot serve metrics") == 1, "one line, not one a retry"
    finally:
        blocker.close()
    wait_for(lambda: serving(busy), timeout=20, what="the retry to bind once the port is free")

    # SIGHUP re-binds to a new address; a malformed one is one line and changes nothing else.
    moved = free_port()
    pg.set_config(cdc_health__metrics_address=f"127.0.0.1:{moved}")
    wait_for(lambda: serving(moved), what="the new address")
    assert get(busy)[0] is None, "the old address is closed"
    pg.set_config(cdc_health__metrics_address="not an address")
    wait_for(lambda: 'cannot serve metrics on "not an address"' in pg.log_tail(50),
             what="the malformed address logged")
    pg.set_config(cdc_health__metrics_address="")
    passes = worker_passes(pg)
    wait_for(lambda: worker_passes(pg) > passes + 1, what="the worker after the changes")


def test_rules_and_their_unit_tests_pass_promtool():
    folder = os.path.join(CONTRIB, "prometheus")
    check = subprocess.run([PROMTOOL, "check", "rules", "cdc_health.rules.yml"], cwd=folder,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([PROMTOOL, "test", "rules", "cdc_health.rules_test.yml"], cwd=folder,
                          capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr
