"""Alert delivery: sinks configured in SQL, the transactional outbox and the delivery worker,
against a real Alertmanager and a local HTTP receiver that goes down, hangs, refuses and is
killed under."""

import hashlib
import hmac
import json
import os
import signal
import time

import psycopg2
import pytest

from pgcluster import wait_for
from receiver import Receiver

SETTINGS = {
    "shared_preload_libraries": "'cdc_health'",
    "wal_level": "logical",
    "cdc_health.interval": "1s",
    "cdc_health.inactive_warning": "1s",
    "cdc_health.alert_holddown": "0",
    "cdc_health.cluster_name": "'ci-cluster'",
}

SECRET = "whsec-9f3c1d-never-logged"


def sinks(pg, user="postgres"):
    rows = pg.sql("SELECT name, kind, url, options, pending, delivered, failed, dropped, failing, "
                  "last_error FROM cdc_health.sinks()", user=user)
    cols = ["name", "kind", "url", "options", "pending", "delivered", "failed", "dropped",
            "failing", "last_error"]
    return {r[0]: dict(zip(cols, r)) for r in rows}


def delivery_pid(pg):
    return wait_for(lambda: pg.one("SELECT pid FROM pg_stat_activity "
                                   "WHERE backend_type = 'cdc_health delivery'"),
                    what="the delivery worker")


def webhook_events(receiver, path="/hook"):
    return [r.json for r in receiver.matching(path=path)]


def consumer_down(pg, slot):
    """A logical slot whose real consumer was killed: `inactive` is raised."""
    pg.create_logical_slot(slot)
    consumer = pg.recvlogical(slot)
    consumer.kill()
    return consumer


def open_alert(pg, slot, finding="inactive"):
    return wait_for(lambda: pg.one("SELECT id FROM cdc_health.alerts WHERE subject = %s "
                                   "AND finding = %s AND resolved_at IS NULL",
                                   (f"slot:{slot}", finding)),
                    what=f"{finding} on {slot}")


@pytest.fixture
def pg(make_cluster):
    c = make_cluster(SETTINGS)
    delivery_pid(c)
    return c


# -- Alertmanager ------------------------------------------------------------------------------

def test_alertmanager_shows_the_alert_and_notifies_its_resolve(make_cluster, alertmanager):
    pg = make_cluster({**SETTINGS, "cdc_health.alertmanager_resend_interval": "2s"})
    am = alertmanager.am
    # An HA pair whose second member is down: the first still gets every alert.
    pg.sql("SELECT cdc_health.add_sink('am', 'alertmanager', %s)",
           (f"{am.url}, http://127.0.0.1:9",))
    consumer_down(pg, "orders")
    alert_id = open_alert(pg, "orders")

    def shown():
        return [a for a in am.alerts(filter={"alertname": "cdc_health_inactive"})
                if a["labels"].get("slot_name") == "orders"]

    alert = wait_for(shown, timeout=20, what="the alert in Alertmanager")[0]
    assert alert["labels"] == {
        "alertname": "cdc_health_inactive", "severity": "warning", "subject": "slot:orders",
        "slot_name": "orders", "cluster": "ci-cluster",
    }, alert["labels"]
    assert alert["annotations"]["alert_id"] == str(alert_id)
    row = pg.sql("SELECT summary, remediation FROM cdc_health.alerts WHERE id = %s",
                 (alert_id,))[0]
    assert alert["annotations"]["summary"] == row[0]
    assert alert["annotations"]["remediation"] == row[1]
    # Alertmanager's own notification went out, firing.
    alertmanager.notifications.wait_for_requests(
        1, timeout=20, path="/alertmanager",
        predicate=lambda r: r.json and r.json["status"] == "firing")

    # Open alerts are sent again (resend interval 2s): the requests keep coming.
    before = pg.one("SELECT extract(epoch FROM resent_at) FROM cdc_health.sinks")
    wait_for(lambda: pg.one("SELECT extract(epoch FROM resent_at) FROM cdc_health.sinks")
             != before, timeout=20, what="a resend of the open alert")

    # A consumer again: resolved, and Alertmanager says so to its receiver.
    pg.recvlogical("orders")
    wait_for(lambda: pg.one("SELECT resolved_at IS NOT NULL FROM cdc_health.alerts WHERE id = %s",
                            (alert_id,)), what="the alert to resolve")
    note = alertmanager.notifications.wait_for_requests(
        1, timeout=30, path="/alertmanager",
        predicate=lambda r: r.json and r.json["status"] == "resolved")[0]
    labels = note.json["alerts"][0]["labels"]
    assert labels["alertname"] == "cdc_health_inactive" and labels["slot_name"] == "orders"
    assert sinks(pg)["am"]["pending"] == 0


# -- webhook, Slack, PagerDuty ----------------------------------------------------------------

def test_webhook_slack_and_pagerduty_bodies_and_the_signature(pg, receiver):
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s, %s)",
           (receiver.url + "/hook", json.dumps({"secret": SECRET,
                                                 "headers": {"Authorization": "Bearer t0k"}})))
    pg.sql("SELECT cdc_health.add_sink('slack', 'slack', %s)", (receiver.url + "/slack",))
    pg.sql("SELECT cdc_health.add_sink('pd', 'pagerduty', %s, %s)",
           (receiver.url + "/pd", json.dumps({"routing_key": "R0UTINGKEY"})))
    consumer_down(pg, "orders")
    alert_id = open_alert(pg, "orders")

    hook = receiver.wait_for_requests(1, path="/hook")[0]
    body = hook.json
    row = dict(zip(["summary", "remediation", "severity", "finding", "subject"], pg.sql(
        "SELECT summary, remediation, severity, finding, subject FROM cdc_health.alerts "
        "WHERE id = %s", (alert_id,))[0]))
    for key, value in row.items():
        assert body[key] == value, (key, body)
    assert body["alert_id"] == alert_id and body["event"] == "raised"
    assert body["cluster"] == "ci-cluster"
    assert body["detail"]["plugin"] == "test_decoding", "the full detail"
    assert hook.headers["X-CDC-Health-Event"] == "raised"
    assert hook.headers["X-CDC-Health-Delivery"] == str(body["delivery_id"])
    assert hook.headers["Authorization"] == "Bearer t0k"
    expected = "sha256=" + hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(hook.headers["X-CDC-Health-Signature"], expected)
    # The delivery id is the outbox row's.
    assert pg.one("SELECT sink FROM cdc_health.deliveries WHERE id = %s",
                  (body["delivery_id"],)) == "hook"

    slack = receiver.wait_for_requests(1, path="/slack")[0].json
    assert "slot:orders" in slack["text"] and "inactive" in json.dumps(slack["blocks"])
    types = [b["type"] for b in slack["blocks"]]
    assert types[0] == "header" and "section" in types, types
    assert row["remediation"].split(":")[0][:40] in json.dumps(slack)

    pd = receiver.wait_for_requests(1, path="/pd")[0].json
    assert pd["routing_key"] == "R0UTINGKEY" and pd["event_action"] == "trigger"
    assert pd["dedup_key"] == f"cdc_health/ci-cluster/{alert_id}"
    assert pd["payload"]["severity"] == "warning"
    assert pd["payload"]["source"] == "ci-cluster"
    assert pd["payload"]["component"] == "slot:orders"
    assert pd["payload"]["summary"] == row["summary"]

    # Resolved: the same alert id everywhere, PagerDuty resolves its dedup key.
    pg.recvlogical("orders")
    resolved = receiver.wait_for_requests(1, path="/pd",
                                          predicate=lambda r: r.json["event_action"] == "resolve")
    assert resolved[0].json["dedup_key"] == pd["dedup_key"]
    hooks = receiver.wait_for_requests(2, path="/hook")
    assert [h.json["event"] for h in hooks] == ["raised", "resolved"]
    assert hooks[1].json["alert_id"] == alert_id
    assert len({h.headers["X-CDC-Health-Delivery"] for h in hooks}) == 2


def test_test_sink_reports_the_status_and_names_an_unreachable_receiver(pg, receiver):
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (receiver.url + "/hook",))
    assert pg.one("SELECT cdc_health.test_sink('hook')") == 200
    test = receiver.wait_for_requests(1, path="/hook")[0]
    assert test.json["event"] == "test" and test.headers["X-CDC-Health-Event"] == "test"
    receiver.respond(503)
    assert pg.one("SELECT cdc_health.test_sink('hook')") == 503
    receiver.stop()
    with pytest.raises(psycopg2.Error) as e:
        pg.sql("SELECT cdc_health.test_sink('hook')")
    assert e.value.pgcode == "08006" and receiver.url in e.value.pgerror, e.value.pgerror
    with pytest.raises(psycopg2.Error) as e:
        pg.sql("SELECT cdc_health.test_sink('nope')")
    assert e.value.pgcode == "42704" and '"nope"' in e.value.pgerror
    assert pg.one("SELECT count(*) FROM cdc_health.deliveries") == 0, "tests are not queued"


# -- the outbox: transactional, ordered, at least once ------------------------------------------

def test_a_rolled_back_alert_is_never_sent_a_committed_one_is(make_cluster, receiver):
    # A worker that waits an hour between passes: only check_now() raises here.
    pg = make_cluster({**SETTINGS, "cdc_health.interval": "1h",
                       "cdc_health.inactive_warning": "0"})
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (receiver.url + "/hook",))
    pg.create_logical_slot("idle")
    conn = pg.connect(autocommit=False)
    with conn.cursor() as cur:
        cur.execute("SELECT event, alert_id FROM cdc_health.check_now()")
        assert ("raised" in [r[0] for r in cur.fetchall()])
        cur.execute("SELECT count(*) FROM cdc_health.deliveries")
        assert cur.fetchone()[0] == 1, "queued in the transaction that raised it"
    conn.rollback()
    conn.close()
    time.sleep(2)
    assert receiver.matching(path="/hook") == []
    applied = pg.sql("SELECT event, alert_id FROM cdc_health.check_now()")
    alert_id = [a for e, a in applied if e == "raised"][0]
    got = receiver.wait_for_requests(1, path="/hook")[0].json
    assert got["alert_id"] == alert_id and got["event"] == "raised"


def test_receiver_down_for_a_minute_gets_every_transition_in_order(pg, receiver):
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (receiver.url + "/hook",))
    receiver.stop()
    down_at = time.monotonic()
    consumers = {}
    for slot in ("a", "b"):
        consumers[slot] = consumer_down(pg, slot)
    ids = {slot: open_alert(pg, slot) for slot in ("a", "b")}
    for slot in ("a", "b"):
        pg.recvlogical(slot)
    wait_for(lambda: pg.one("SELECT count(*) FROM cdc_health.alerts WHERE resolved_at IS NOT NULL "
                            "AND id = ANY(%s)", (list(ids.values()),)) == 2,
             what="both alerts resolved while the receiver is down")
    wait_for(lambda: "Connection refused" in (sinks(pg)["hook"]["last_error"] or "")
             or "refused" in (sinks(pg)["hook"]["last_error"] or ""),
             what="a failed attempt recorded")
    time.sleep(max(0.0, 60 - (time.monotonic() - down_at)))
    queued = pg.sql("SELECT id, alert_id, event FROM cdc_health.deliveries "
                    "WHERE sink = 'hook' ORDER BY id")
    assert pg.one("SELECT max(attempts) FROM cdc_health.deliveries") >= 3, "retried meanwhile"
    receiver.start()
    got = receiver.wait_for_requests(len(queued), timeout=360, path="/hook")
    ids_got = [r.json["delivery_id"] for r in got]
    assert sorted(set(ids_got)) == [q[0] for q in queued], "none missing"
    for alert_id in ids.values():
        events = [r.json["event"] for r in got if r.json["alert_id"] == alert_id]
        assert events[:2] == ["raised", "resolved"], events
    wait_for(lambda: sinks(pg)["hook"]["pending"] == 0, what="the queue to empty")
    assert sinks(pg)["hook"]["delivered"] == len(queued)


def test_killed_between_send_and_commit_resends_with_the_same_delivery_id(pg, receiver):
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (receiver.url + "/hook",))
    pid = delivery_pid(pg)
    killed = []

    def kill_first(request):
        if not killed:
            killed.append(request.json["delivery_id"])
            os.kill(pid, signal.SIGKILL)  # the worker sent it and waits for the answer
            return "drop"
        return None

    receiver.on_request = kill_first
    consumer_down(pg, "orders")
    wait_for(lambda: killed, timeout=60, what="the first delivery attempt")
    # SIGKILL of a worker restarts the server; the new delivery worker sends it again.
    again = receiver.wait_for_requests(2, timeout=90, path="/hook")
    assert again[0].json["delivery_id"] == again[1].json["delivery_id"] == killed[0]
    assert again[1].headers["X-CDC-Health-Delivery"] == str(killed[0])
    assert wait_for(lambda: delivery_pid(pg) != pid, what="a new delivery worker")
    wait_for(lambda: pg.one("SELECT delivered_at IS NOT NULL FROM cdc_health.deliveries "
                            "WHERE id = %s", (killed[0],)), what="the resend recorded")
    assert pg.one("SELECT count(*) FROM cdc_health.deliveries WHERE delivered_at IS NULL") == 0


def test_a_receiver_that_never_answers_times_out_and_the_others_keep_delivering(pg):
    with Receiver() as slow, Receiver() as fast:
        slow.hang()
        pg.sql("SELECT cdc_health.add_sink('slow', 'webhook', %s, '{\"timeout\": \"2s\"}')",
               (slow.url,))
        pg.sql("SELECT cdc_health.add_sink('fast', 'webhook', %s)", (fast.url,))
        consumer_down(pg, "a")
        consumer_down(pg, "b")
        fast.wait_for_requests(2, timeout=30)
        assert sinks(pg)["slow"]["delivered"] == 0
        wait_for(lambda: "timeout" in (sinks(pg)["slow"]["last_error"] or "").lower(),
                 what="the slow sink's timeout recorded")
        first = slow.requests[0].json["delivery_id"]
        slow.respond(200)
        wait_for(lambda: sinks(pg)["slow"]["delivered"] >= 2, timeout=60,
                 what="the slow sink to catch up")
        answered = [r.json["delivery_id"] for r in slow.requests if r.answer == 200]
        assert answered[0] == first, "the timed-out transition is retried first, same id"


def test_a_400_is_not_retried_and_raises_delivery_failed(pg, receiver):
    with Receiver() as other:
        receiver.respond(400, b'{"error": "bad payload"}')
        pg.sql("SELECT cdc_health.add_sink('broken', 'webhook', %s)", (receiver.url + "/x",))
        pg.sql("SELECT cdc_health.add_sink('other', 'webhook', %s)", (other.url,))
        consumer_down(pg, "orders")
        wait_for(lambda: pg.one("SELECT id FROM cdc_health.alerts WHERE subject = 'sink:broken' "
                                "AND finding = 'delivery_failed' AND resolved_at IS NULL"),
                 what="delivery_failed on sink:broken")
        time.sleep(3)
        assert len(receiver.matching(path="/x")) == 1, "one attempt only"
        s = sinks(pg)
        assert s["broken"]["failing"] and s["broken"]["failed"] == 1
        assert "HTTP 400" in s["broken"]["last_error"]
        assert pg.one("SELECT attempts FROM cdc_health.deliveries WHERE sink = 'broken'") == 1
        # The other sink hears of it; the metrics show it.
        other.wait_for_requests(1, predicate=lambda r: r.json["finding"] == "delivery_failed")
        metrics = pg.one("SELECT cdc_health.metrics()")
        assert 'cdc_health_sink_finding{sink="broken",kind="webhook",finding="delivery_failed"' \
            in metrics, metrics
        assert "refused an alert transition" in pg.log_tail(200)
        # Removing the sink resolves its alert, and the other sink hears that too.
        pg.sql("SELECT cdc_health.remove_sink('broken')")
        assert pg.one("SELECT count(*) FROM cdc_health.alerts WHERE subject = 'sink:broken' "
                      "AND resolved_at IS NULL") == 0
        other.wait_for_requests(1, predicate=lambda r: r.json["finding"] == "delivery_failed"
                                and r.json["event"] == "resolved")


def test_the_queue_is_bounded_and_the_loss_is_counted(make_cluster):
    pg = make_cluster({**SETTINGS, "cdc_health.delivery_max_pending": "5",
                       "cdc_health.inactive_warning": "0", "cdc_health.interval": "1h"})
    with Receiver() as r:
        r.stop()
        pg.sql("SELECT cdc_health.add_sink('down', 'webhook', %s)", (r.url,))
        for i in range(12):
            pg.create_logical_slot(f"s{i}")
        pg.sql("SELECT cdc_health.check_now()")
        assert pg.one("SELECT count(*) FROM cdc_health.deliveries") == 12
        wait_for(lambda: sinks(pg)["down"]["dropped"] == 7, what="the oldest 7 dropped")
        assert sinks(pg)["down"]["pending"] == 5
        kept = pg.sql("SELECT alert_id FROM cdc_health.deliveries WHERE failed_at IS NULL "
                      "ORDER BY id")
        newest = pg.sql("SELECT alert_id FROM cdc_health.deliveries ORDER BY id DESC LIMIT 5")
        assert sorted(kept) == sorted(newest)
        assert "dropped the 7 oldest alert transition(s)" in pg.log_tail(200)


def test_a_thousand_lost_slots_are_all_delivered_without_delaying_monitoring(make_cluster):
    pg = make_cluster({**SETTINGS, "max_replication_slots": "1010", "max_wal_senders": "4",
                       "max_slot_wal_keep_size": "16MB", "max_wal_size": "64MB",
                       "cdc_health.interval": "1s", "cdc_health.inactive_warning": "1h"})
    with Receiver() as r:
        passes_at = {}

        def slow_receiver(request):
            # 15 ms per request: delivering 1000 takes about 15 s, long enough to see the
            # slot worker's passes go on meanwhile.
            n = len(r.requests)
            if n in (100, 900):
                passes_at[n] = pg.one("SELECT passes FROM cdc_health.worker_status()")
            if n <= 1000:
                time.sleep(0.015)

        r.on_request = slow_receiver
        pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s)", (r.url,))
        pg.sql("SELECT pg_create_physical_replication_slot('s' || i, true) "
               "FROM generate_series(1, 1000) i")
        pg.grow_wal(4, checkpoint=True)
        wait_for(lambda: pg.one("SELECT count(*) FROM pg_replication_slots "
                                "WHERE wal_status = 'lost'") == 1000, what="1000 lost slots")
        got = r.wait_for_requests(1000, timeout=300,
                                  predicate=lambda q: q.json.get("finding") == "lost")
        assert len({q.json["delivery_id"] for q in got}) == 1000
        assert len({q.json["alert_id"] for q in got}) == 1000
        # Monitoring went on while the deliveries were being sent.
        assert passes_at[900] - passes_at[100] >= 2, passes_at
        assert pg.one("SELECT failed_passes FROM cdc_health.worker_status()") == 0
        pid = delivery_pid(pg)
        with open(f"/proc/{pid}/status") as f:
            hwm_kb = int([line for line in f if line.startswith("VmHWM")][0].split()[1])
        assert hwm_kb < 200 * 1024, f"delivery worker peak RSS {hwm_kb} kB"
        # The slots' other transitions (inactive, for one) follow at the receiver's pace.
        wait_for(lambda: sinks(pg)["hook"]["pending"] == 0, timeout=240,
                 what="the queue to empty")


# -- configuration and secrets ------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (("x", "smtp", "http://h/"), 'unknown sink kind "smtp"'),
    (("x", "webhook", "ftp://h/"), "must start with http:// or https://"),
    (("x", "webhook", "http://h/", '{"min_sev": "critical"}'), 'unknown option "min_sev"'),
    (("x", "webhook", "http://h/", '{"min_severity": "ok"}'), '"min_severity"'),
    (("x", "pagerduty", "http://h/"), '"routing_key"'),
    (("x", "slack", "http://h/", '{"secret": "s3cr3t-value"}'), '"secret"'),
    (("x", "webhook", "http://h/", '{"findings": ["nope"]}'), '"nope"'),
    (("", "webhook", "http://h/"), "name must be"),
])
def test_bad_sink_configuration_is_refused_naming_the_problem(pg, args, message):
    placeholders = ", ".join(["%s"] * len(args))
    with pytest.raises(psycopg2.Error) as e:
        pg.sql(f"SELECT cdc_health.add_sink({placeholders})", args)
    assert e.value.pgcode == "22023", e.value.pgerror
    assert message in e.value.pgerror, e.value.pgerror
    assert "s3cr3t-value" not in e.value.pgerror
    assert pg.one("SELECT count(*) FROM cdc_health.sinks") == 0


def test_monitoring_roles_see_sinks_without_secrets_and_the_log_has_none(pg, receiver):
    slack_url = receiver.url + "/services/T000/B000/xoxSLACKPATHSECRET"
    secrets = [SECRET, "Bearer hdr-secret-77", "rk-secret-456", "xoxSLACKPATHSECRET",
               "pw-in-url-99"]
    pg.sql("SELECT cdc_health.add_sink('hook', 'webhook', %s, %s)",
           (receiver.url.replace("http://", "http://user:pw-in-url-99@") + "/hook",
            json.dumps({"secret": SECRET, "headers": {"Authorization": "Bearer hdr-secret-77"}})))
    pg.sql("SELECT cdc_health.add_sink('slack', 'slack', %s)", (slack_url,))
    pg.sql("SELECT cdc_health.add_sink('pd', 'pagerduty', 'http://127.0.0.1:9/pd', %s)",
           (json.dumps({"routing_key": "rk-secret-456"}),))
    pg.sql("CREATE ROLE watcher LOGIN IN ROLE pg_monitor")
    receiver.respond(500)
    consumer_down(pg, "orders")
    wait_for(lambda: sinks(pg)["pd"]["last_error"] and sinks(pg)["hook"]["last_error"],
             what="failed attempts on every sink")

    seen = sinks(pg, user="watcher")
    assert set(seen) == {"hook", "slack", "pd"}
    text = json.dumps(seen, default=str)
    for s in secrets:
        assert s not in text, (s, text)
    assert seen["hook"]["options"]["secret"] == "(set)"
    assert seen["hook"]["options"]["headers"] == ["Authorization"]
    assert "***" in seen["slack"]["url"] and "***@" in seen["hook"]["url"]
    for query in ("SELECT options FROM cdc_health.sinks", "SELECT url FROM cdc_health.sinks",
                  "SELECT cdc_health.add_sink('mine', 'webhook', 'http://127.0.0.1:1/')",
                  "SELECT cdc_health.remove_sink('hook')",
                  "SELECT cdc_health.test_sink('hook')"):
        with pytest.raises(psycopg2.Error) as e:
            pg.sql(query, user="watcher")
        assert e.value.pgcode == "42501", (query, e.value.pgerror)
    # What watcher can read of the queue carries no sink secret either.
    payloads = json.dumps(pg.sql("SELECT payload, error FROM cdc_health.deliveries",
                                 user="watcher"))
    for s in secrets:
        assert s not in payloads
    log = pg.log_tail(1_000_000)
    for s in secrets:
        assert s not in log, s


# -- Sink ownership and what may leave the database (review three) -----------------------------

def test_a_healthy_sink_is_removed_in_a_transaction_without_an_xid(pg, receiver):
    """remove_sink() on a sink with no open alert: it deleted through a read-only query,
    which failed unless the caller's transaction already had an xid."""
    pg.sql("SELECT cdc_health.add_sink('fresh', 'webhook', %s)", (receiver.url + "/fresh",))
    assert pg.one("SELECT cdc_health.remove_sink('fresh')") is True
    assert "fresh" not in sinks(pg)
    with pytest.raises(psycopg2.Error) as e:
        pg.sql("SELECT cdc_health.remove_sink('fresh')")
    assert e.value.pgcode == "42704", e.value.pgerror


def hold_pinning_transaction(pg, application):
    """A session idle in transaction with an xid, named `application`, whose last statement
    carries a secret; returns the connection."""
    conn = pg.connect(autocommit=False)
    cur = conn.cursor()
    cur.execute("SET application_name = %s", (application,))
    cur.execute("SELECT txid_current()")
    cur.execute("SELECT 'pw-in-query-31337' AS secret")
    return conn


def test_a_sink_belongs_to_its_role_and_gets_only_what_that_role_may_read(pg, receiver):
    pg.set_config(cdc_health__long_transaction_warning="1s")
    pg.sql("SELECT cdc_health.add_sink('owners', 'webhook', %s)", (receiver.url + "/owners",))
    pg.sql("CREATE ROLE delegate LOGIN")
    pg.sql("GRANT USAGE ON SCHEMA cdc_health TO delegate")
    for f in ("add_sink(text, text, text, jsonb)", "remove_sink(text)", "test_sink(text)"):
        pg.sql(f"GRANT EXECUTE ON FUNCTION cdc_health.{f} TO delegate")
    pg.sql("SELECT cdc_health.add_sink('delegates', 'webhook', %s)",
           (receiver.url + "/delegates",), user="delegate")
    assert pg.one("SELECT added_by::text FROM cdc_health.sinks WHERE name = 'delegates'") \
        == "delegate"
    # The delegate can neither remove nor test the owner's sink ...
    for call in ("remove_sink", "test_sink"):
        with pytest.raises(psycopg2.Error) as e:
            pg.sql(f"SELECT cdc_health.{call}('owners')", user="delegate")
        assert e.value.pgcode == "42501", e.value.pgerror
        assert 'sink "owners"' in e.value.pgerror
    assert "owners" in sinks(pg)

    # ... and its sink hears of a long transaction without the other session's text.
    pg.create_logical_slot("pinned")
    pg.recvlogical("pinned")
    holder = hold_pinning_transaction(pg, "secret-app-4242")
    pg.sql("CREATE TABLE busy (x int)")

    def delivered():
        pg.sql("INSERT INTO busy SELECT generate_series(1, 10)")
        return [e for e in webhook_events(receiver, "/delegates")
                if e["finding"] == "long_transaction"]
    delegates = wait_for(delivered, timeout=60, interval=0.5, what="long_transaction delivered")
    owners = receiver.wait_for_requests(1, path="/owners",
                                        predicate=lambda r: r.json["finding"] == "long_transaction")
    assert "secret-app-4242" in json.dumps(owners[0].json), "the owner's sink has the detail"
    text = json.dumps(delegates)
    assert "secret-app-4242" not in text and "cdc_health.alerts (id" in text, text
    assert delegates[0]["remediation"] is None
    stored = json.dumps(pg.sql("SELECT detail::text, remediation FROM cdc_health.alerts") +
                        pg.sql("SELECT payload::text FROM cdc_health.deliveries"))
    assert "pw-in-query-31337" not in stored + json.dumps(owners[0].json)

    # The delegate removes its own sink; the owner may remove anyone's.
    assert pg.one("SELECT cdc_health.remove_sink('delegates')", user="delegate") is True
    assert pg.one("SELECT cdc_health.remove_sink('owners')") is True
    holder.close()
