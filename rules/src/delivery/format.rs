//! The HTTP requests that deliver alert transitions, one shape per sink kind.
//!
//! Pure: the delivery worker sends what [`requests`] returns and reads the answers with
//! [`super::retry::classify`]. Each kind gets what its receiver expects: Alertmanager's
//! `/api/v2/alerts` array, our own JSON for webhooks (signed when a secret is set), Slack
//! Block Kit within Slack's length limits, PagerDuty Events API v2 with a dedup key per
//! alert so a trigger and its resolve meet.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::retry::{civil_from_days, days_from_civil, days_in_month};
use super::signature::signature;
use super::sink::{SinkConfig, SinkKind};
use crate::alerts::Event;
use crate::disclosure::{public_detail, public_summary, text_is_private};
use crate::finding::{FindingCode, Severity};

/// One alert transition as stored in the outbox (column payload jsonb) plus its delivery id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Stable across retries, so receivers can drop duplicates (delivery is at least once).
    #[serde(default)]
    pub delivery_id: i64,
    pub alert_id: i64,
    /// raised | escalated | resolved | reminder | blocker_terminated | test
    pub event: String,
    /// "slot:<name>" | "mirror:<name>" | "sink:<name>" | other
    pub subject: String,
    pub finding: String,
    /// warning | critical
    pub severity: String,
    /// ISO 8601 UTC of the event, e.g. 2026-12-02T10:00:00.123456Z
    pub time: String,
    /// ISO 8601 UTC
    pub raised_at: String,
    #[serde(default)]
    pub resolved_at: Option<String>,
    pub summary: String,
    #[serde(default)]
    pub remediation: Option<String>,
    #[serde(default)]
    pub detail: Value,
    pub cluster: String,
}

impl Transition {
    /// What a sink receives whose owner may not read `cdc_health.alerts`: what the public
    /// NOTIFY channel carries (`disclosure`). A summary written from other sessions' text or
    /// a probe's error is replaced, its remedy left out, and `detail` keeps its public keys.
    pub fn public(&self) -> Transition {
        let code = FindingCode::parse(&self.finding);
        let event = Event::parse(&self.event);
        let private = match (code, event) {
            (Some(code), Some(event)) => text_is_private(code, event),
            // A test transition or one this version does not know: nothing of it is trusted.
            _ => self.event != "test",
        };
        let summary = match (private, code, event, Severity::parse(&self.severity)) {
            (false, ..) => self.summary.clone(),
            (true, Some(code), Some(event), Some(severity)) => {
                public_summary(event, code, severity, &self.subject, self.alert_id)
            }
            (true, ..) => format!(
                "{} on {}: the summary is in cdc_health.alerts (id {}), readable by pg_monitor",
                self.finding, self.subject, self.alert_id
            ),
        };
        Transition {
            summary,
            remediation: self.remediation.clone().filter(|_| !private),
            detail: public_detail(&self.detail),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub url: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// How long a test alert stays firing in Alertmanager: it resolves itself, nobody has to.
const TEST_ALERT_SECS: i64 = 300;
/// Slack: header text, section text and field text limits, in characters.
const SLACK_HEADER_CHARS: usize = 150;
const SLACK_TEXT_CHARS: usize = 3000;
const SLACK_FIELD_CHARS: usize = 2000;
/// PagerDuty's limit on payload.summary.
const PAGERDUTY_SUMMARY_CHARS: usize = 1024;

/// The HTTP POSTs that deliver `batch` to the sink; the batch is delivered when every one
/// gets a 2xx.
///
/// Every request carries Content-Type: application/json, then the kind's own headers, then
/// the sink's `headers`; User-Agent is the caller's. Alertmanager gets one request per URL
/// with the whole batch (blocker_terminated skipped); the other kinds one request per
/// transition and URL. PagerDuty skips blocker_terminated and reminder (and any event it has
/// no action for). A batch with nothing to send gives an empty Vec.
pub fn requests(sink: &SinkConfig, batch: &[Transition]) -> Vec<Request> {
    match sink.kind {
        SinkKind::Alertmanager => alertmanager(sink, batch),
        SinkKind::Webhook => per_transition(sink, batch, |t| Some(webhook(sink, t))),
        SinkKind::Slack => per_transition(sink, batch, |t| Some(slack(t))),
        SinkKind::Pagerduty => per_transition(sink, batch, |t| pagerduty(sink, t)),
    }
}

/// Whether this kind takes a batch in one request (alertmanager) or one transition at a time.
pub fn batches(kind: SinkKind) -> bool {
    kind == SinkKind::Alertmanager
}

/// A body and its kind-specific headers.
type Body = (Vec<u8>, Vec<(String, String)>);

fn per_transition(
    sink: &SinkConfig,
    batch: &[Transition],
    body: impl Fn(&Transition) -> Option<Body>,
) -> Vec<Request> {
    let mut out = Vec::new();
    for (bytes, extra) in batch.iter().filter_map(body) {
        for url in &sink.urls {
            out.push(Request {
                url: url.clone(),
                body: bytes.clone(),
                headers: headers(sink, &extra),
            });
        }
    }
    out
}

fn headers(sink: &SinkConfig, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = vec![("Content-Type".to_string(), "application/json".to_string())];
    out.extend_from_slice(extra);
    out.extend(sink.headers.iter().cloned());
    out
}

fn to_bytes(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("strings, numbers and JSON values always serialize")
}

fn alertmanager(sink: &SinkConfig, batch: &[Transition]) -> Vec<Request> {
    let alerts: Vec<Value> = batch
        .iter()
        // Not an alert state: nothing for Alertmanager to fire or resolve.
        .filter(|t| t.event != "blocker_terminated")
        .map(alertmanager_alert)
        .collect();
    if alerts.is_empty() {
        return Vec::new();
    }
    let body = to_bytes(&alerts);
    sink.urls
        .iter()
        .map(|base| Request {
            url: alertmanager_endpoint(base),
            body: body.clone(),
            headers: headers(sink, &[]),
        })
        .collect()
}

/// `<base without trailing slash>/api/v2/alerts`, keeping a query string at the end.
fn alertmanager_endpoint(base: &str) -> String {
    let (path, query) = match base.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (base, None),
    };
    let mut url = format!("{}/api/v2/alerts", path.trim_end_matches('/'));
    if let Some(query) = query {
        url.push('?');
        url.push_str(query);
    }
    url
}

fn alertmanager_alert(t: &Transition) -> Value {
    let test = t.event == "test";
    let mut labels = Map::new();
    let alertname = if test {
        "cdc_health_test".to_string()
    } else {
        format!("cdc_health_{}", t.finding)
    };
    labels.insert("alertname".into(), json!(alertname));
    labels.insert("severity".into(), json!(t.severity));
    labels.insert("subject".into(), json!(t.subject));
    labels.insert("cluster".into(), json!(t.cluster));
    if let Some((prefix, name)) = t.subject.split_once(':') {
        let label = match prefix {
            "slot" => Some("slot_name"),
            "mirror" => Some("mirror"),
            "sink" => Some("sink"),
            _ => None,
        };
        if let Some(label) = label {
            labels.insert(label.into(), json!(name));
        }
    }

    let mut annotations = Map::new();
    annotations.insert("summary".into(), json!(t.summary));
    if let Some(remediation) = &t.remediation {
        annotations.insert("remediation".into(), json!(remediation));
    }
    annotations.insert("alert_id".into(), json!(t.alert_id.to_string()));

    let mut alert = Map::new();
    alert.insert("labels".into(), Value::Object(labels));
    alert.insert("annotations".into(), Value::Object(annotations));
    if test {
        alert.insert("startsAt".into(), json!(t.time));
        // Unreadable time: no endsAt, Alertmanager's resolve_timeout ends it instead.
        if let Some(ends) = add_seconds(&t.time, TEST_ALERT_SECS) {
            alert.insert("endsAt".into(), json!(ends));
        }
    } else {
        alert.insert("startsAt".into(), json!(t.raised_at));
        // An endsAt in the past is what resolves an alert in Alertmanager.
        if t.event == "resolved" {
            let ends = t.resolved_at.as_deref().unwrap_or(&t.time);
            alert.insert("endsAt".into(), json!(ends));
        }
    }
    Value::Object(alert)
}

fn webhook(sink: &SinkConfig, t: &Transition) -> Body {
    let body = to_bytes(t);
    let mut extra = vec![
        ("X-CDC-Health-Event".to_string(), t.event.clone()),
        (
            "X-CDC-Health-Delivery".to_string(),
            t.delivery_id.to_string(),
        ),
    ];
    if let Some(secret) = &sink.secret {
        // Over the exact bytes sent: receivers must verify before parsing.
        let signed = signature(secret.as_bytes(), &body);
        extra.push(("X-CDC-Health-Signature".to_string(), signed));
    }
    (body, extra)
}

fn slack(t: &Transition) -> Body {
    let fallback = format!(
        "[{}] {}: {}: {}",
        t.severity.to_uppercase(),
        t.event,
        t.subject,
        t.summary
    );
    let header = format!("{} {}: {}", capitalized(&t.severity), t.event, t.subject);
    let field = |title: &str, value: &str| {
        json!({
            "type": "mrkdwn",
            "text": mrkdwn(&format!("*{title}*\n"), value, SLACK_FIELD_CHARS),
        })
    };
    let section = |prefix: &str, text: &str| {
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": mrkdwn(prefix, text, SLACK_TEXT_CHARS)},
        })
    };
    // Slack refuses a section with empty text.
    let summary = if t.summary.is_empty() {
        "(no summary)"
    } else {
        t.summary.as_str()
    };
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": cut(&header, SLACK_HEADER_CHARS)},
        }),
        json!({
            "type": "section",
            "fields": [
                field("Severity", &t.severity),
                field("Finding", &t.finding),
                field("Subject", &t.subject),
                field("Cluster", &t.cluster),
            ],
        }),
        section("", summary),
    ];
    if let Some(remediation) = &t.remediation {
        blocks.push(section("*Remediation*\n", remediation));
    }
    let context = format!(
        "alert {} · delivery {} · {}",
        t.alert_id, t.delivery_id, t.time
    );
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": mrkdwn("", &context, SLACK_TEXT_CHARS)}],
    }));
    let body = json!({
        "text": mrkdwn("", &fallback, SLACK_TEXT_CHARS),
        "blocks": blocks,
    });
    (to_bytes(&body), Vec::new())
}

fn pagerduty(sink: &SinkConfig, t: &Transition) -> Option<Body> {
    let test = t.event == "test";
    let action = match t.event.as_str() {
        "raised" | "escalated" | "test" => "trigger",
        "resolved" => "resolve",
        // reminder: PagerDuty keeps paging on its own; blocker_terminated: not an incident.
        _ => return None,
    };
    let dedup_key = if test {
        format!("cdc_health/{}/test", t.cluster)
    } else {
        format!("cdc_health/{}/{}", t.cluster, t.alert_id)
    };
    let mut body = Map::new();
    let routing_key = sink.routing_key.clone().unwrap_or_default();
    body.insert("routing_key".into(), json!(routing_key));
    body.insert("event_action".into(), json!(action));
    body.insert("dedup_key".into(), json!(dedup_key));
    if action == "trigger" {
        let severity = if test {
            "info"
        } else if t.severity == "critical" {
            "critical"
        } else {
            "warning"
        };
        // PagerDuty refuses an empty summary or source with a 400, which would never heal.
        let summary = if t.summary.is_empty() {
            format!("{} on {}", t.finding, t.subject)
        } else {
            t.summary.clone()
        };
        let source = if t.cluster.is_empty() {
            "cdc_health"
        } else {
            t.cluster.as_str()
        };
        body.insert(
            "payload".into(),
            json!({
                "summary": cut(&summary, PAGERDUTY_SUMMARY_CHARS),
                "severity": severity,
                "source": source,
                "component": t.subject,
                "class": t.finding,
                "timestamp": t.time,
                "custom_details": {
                    "alert_id": t.alert_id,
                    "event": t.event,
                    "remediation": t.remediation,
                    "detail": t.detail,
                    "delivery_id": t.delivery_id,
                },
            }),
        );
    }
    body.insert("client".into(), json!("cdc_health"));
    Some((to_bytes(&Value::Object(body)), Vec::new()))
}

/// "critical" -> "Critical".
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// At most `limit` characters, the last one "…" when cut.
fn cut(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        None => text.to_string(),
        Some(_) => {
            let keep = limit.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            format!("{}…", &text[..end])
        }
    }
}

/// `prefix` (already mrkdwn) then `text` escaped for mrkdwn, at most `limit` characters in
/// all. Cut on whole escapes, so "&amp;" is never left as "&am…".
fn mrkdwn(prefix: &str, text: &str, limit: usize) -> String {
    fn escaped(c: char) -> Option<&'static str> {
        match c {
            '&' => Some("&amp;"),
            '<' => Some("&lt;"),
            '>' => Some("&gt;"),
            _ => None,
        }
    }
    let piece_chars = |c: char| escaped(c).map_or(1, str::len);
    let mut out = String::from(prefix);
    let mut count = prefix.chars().count();
    let total = count + text.chars().map(piece_chars).sum::<usize>();
    // Room for the "…" only when something has to go.
    let room = if total <= limit {
        total
    } else {
        limit.saturating_sub(1)
    };
    for c in text.chars() {
        let n = piece_chars(c);
        if count + n > room {
            out.push('…');
            break;
        }
        match escaped(c) {
            Some(entity) => out.push_str(entity),
            None => out.push(c),
        }
        count += n;
    }
    out
}

/// `time` ("YYYY-MM-DDTHH:MM:SS[.frac]Z", UTC) plus `secs`, in the same form with the same
/// fraction digits; `None` when `time` is not in that form.
fn add_seconds(time: &str, secs: i64) -> Option<String> {
    let (unix, fraction) = parse_utc(time)?;
    let unix = unix.checked_add(secs)?;
    let (days, second_of_day) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (hour, minute, second) = (
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60,
    );
    Some(format!(
        "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z"
    ))
}

/// Unix seconds and the fraction text (with its dot, or empty) of an ISO 8601 UTC time.
fn parse_utc(time: &str) -> Option<(i64, &str)> {
    let body = time.strip_suffix('Z')?;
    let b = body.as_bytes();
    if b.len() < 19 || !body.is_ascii() {
        return None;
    }
    let literal_ok =
        b[4] == b'-' && b[7] == b'-' && b[10] == b'T' && b[13] == b':' && b[16] == b':';
    let fraction = &body[19..];
    let fraction_ok = fraction.is_empty()
        || (fraction.len() > 1
            && fraction.starts_with('.')
            && fraction[1..].bytes().all(|d| d.is_ascii_digit()));
    if !literal_ok || !fraction_ok {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = &body[range];
        if digits.bytes().all(|d| d.is_ascii_digit()) {
            digits.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    let valid = (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !valid {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + minute * 60 + second, fraction))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::signature::verify;

    fn sink(kind: &str, url: &str, options: Value) -> SinkConfig {
        SinkConfig::parse(kind, url, &options).unwrap()
    }

    fn transition(event: &str) -> Transition {
        Transition {
            delivery_id: 42,
            alert_id: 7,
            event: event.to_string(),
            subject: "slot:peerdb_orders".to_string(),
            finding: "retained_wal_high".to_string(),
            severity: "critical".to_string(),
            time: "2026-12-02T10:05:00.123456Z".to_string(),
            raised_at: "2026-12-02T10:00:00.5Z".to_string(),
            resolved_at: None,
            summary: "retains 48 GB of WAL".to_string(),
            remediation: Some("advance or drop the slot".to_string()),
            detail: json!({"retained_bytes": 51539607552u64}),
            cluster: "prod-eu".to_string(),
        }
    }

    fn body(request: &Request) -> Value {
        serde_json::from_slice(&request.body).unwrap()
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_public_form_keeps_figures_and_drops_other_sessions_text() {
        let mut t = transition("raised");
        t.finding = "long_transaction".into();
        t.summary = "held back by pid 7 from \"psql\"".into();
        t.remediation = Some("SELECT pg_terminate_backend(7)".into());
        t.detail = json!({"slot_name": "s", "transactions": [{"pid": 7, "user": "alice"}]});
        let p = t.public();
        assert!(
            p.summary.contains("cdc_health.alerts (id 7)"),
            "{}",
            p.summary
        );
        assert!(!p.summary.contains("psql"));
        assert_eq!(p.remediation, None);
        assert_eq!(p.detail, json!({"slot_name": "s"}));
        assert_eq!(
            (p.alert_id, &p.subject, &p.event),
            (7, &t.subject, &t.event)
        );
        // Public findings keep their text; detail still loses what is not public.
        let figures = transition("raised").public();
        assert_eq!(figures.summary, "retains 48 GB of WAL");
        assert_eq!(
            figures.remediation.as_deref(),
            Some("advance or drop the slot")
        );
        // An event this version does not know keeps nothing private.
        let unknown = transition("from_the_future").public();
        assert!(unknown.remediation.is_none() && unknown.summary.contains("id 7"));
    }

    #[test]
    fn only_alertmanager_batches() {
        assert!(batches(SinkKind::Alertmanager));
        for kind in [SinkKind::Webhook, SinkKind::Slack, SinkKind::Pagerduty] {
            assert!(!batches(kind));
        }
    }

    #[test]
    fn transitions_read_from_the_outbox_with_defaults() {
        let stored = json!({
            "alert_id": 3, "event": "raised", "subject": "mirror:orders",
            "finding": "mirror_stale", "severity": "warning",
            "time": "2026-12-02T10:00:00Z", "raised_at": "2026-12-02T10:00:00Z",
            "summary": "s", "cluster": "c",
        });
        let t: Transition = serde_json::from_value(stored).unwrap();
        assert_eq!(t.delivery_id, 0);
        assert_eq!(t.resolved_at, None);
        assert_eq!(t.remediation, None);
        assert_eq!(t.detail, Value::Null);
        let missing = json!({"alert_id": 3, "event": "raised"});
        assert!(serde_json::from_value::<Transition>(missing).is_err());
    }

    #[test]
    fn alertmanager_alert_shape() {
        let s = sink("alertmanager", "http://am:9093/", json!({}));
        let requests = requests(&s, &[transition("raised")]);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url, "http://am:9093/api/v2/alerts");
        assert_eq!(
            requests[0].headers,
            [("Content-Type".to_string(), "application/json".to_string())]
        );
        assert_eq!(
            body(&requests[0]),
            json!([{
                "labels": {
                    "alertname": "cdc_health_retained_wal_high",
                    "severity": "critical",
                    "subject": "slot:peerdb_orders",
                    "cluster": "prod-eu",
                    "slot_name": "peerdb_orders",
                },
                "annotations": {
                    "summary": "retains 48 GB of WAL",
                    "remediation": "advance or drop the slot",
                    "alert_id": "7",
                },
                "startsAt": "2026-12-02T10:00:00.5Z",
            }])
        );
    }

    #[test]
    fn alertmanager_subject_labels_and_missing_remediation() {
        let s = sink("alertmanager", "http://am:9093", json!({}));
        let mut batch = Vec::new();
        for subject in [
            "mirror:orders",
            "sink:pager",
            "cluster",
            "slot:a:b",
            "other:x",
        ] {
            let mut t = transition("escalated");
            t.subject = subject.to_string();
            t.remediation = None;
            batch.push(t);
        }
        let alerts = body(&requests(&s, &batch)[0]);
        let labels = |i: usize| alerts[i]["labels"].as_object().unwrap().clone();
        assert_eq!(labels(0)["mirror"], "orders");
        assert_eq!(labels(1)["sink"], "pager");
        assert_eq!(labels(3)["slot_name"], "a:b");
        for i in [2, 4] {
            let labels = labels(i);
            assert_eq!(labels.len(), 4, "{labels:?}");
        }
        for alert in alerts.as_array().unwrap() {
            assert!(alert["annotations"].get("remediation").is_none());
            assert!(alert.get("endsAt").is_none(), "escalated stays firing");
            // Alertmanager refuses non-string label values.
            for value in alert["labels"].as_object().unwrap().values() {
                assert!(value.is_string(), "{value}");
            }
        }
    }

    #[test]
    fn alertmanager_ends_at() {
        let s = sink("alertmanager", "http://am:9093", json!({}));
        let mut resolved = transition("resolved");
        resolved.resolved_at = Some("2026-12-02T11:00:00Z".to_string());
        let mut resolved_without_time = transition("resolved");
        resolved_without_time.resolved_at = None;
        let mut reminder = transition("reminder");
        reminder.resolved_at = Some("2026-12-02T11:00:00Z".to_string());
        let batch = [
            resolved,
            resolved_without_time,
            reminder,
            transition("raised"),
            transition("test"),
        ];
        let alerts = body(&requests(&s, &batch)[0]);
        assert_eq!(alerts[0]["endsAt"], "2026-12-02T11:00:00Z");
        assert_eq!(alerts[0]["startsAt"], "2026-12-02T10:00:00.5Z");
        assert_eq!(alerts[1]["endsAt"], "2026-12-02T10:05:00.123456Z");
        assert!(alerts[2].get("endsAt").is_none(), "only resolved ends");
        assert!(alerts[3].get("endsAt").is_none());
        assert_eq!(alerts[4]["labels"]["alertname"], "cdc_health_test");
        assert_eq!(alerts[4]["startsAt"], "2026-12-02T10:05:00.123456Z");
        assert_eq!(alerts[4]["endsAt"], "2026-12-02T10:10:00.123456Z");
    }

    #[test]
    fn test_alert_end_crosses_days_and_years() {
        let s = sink("alertmanager", "http://am:9093", json!({}));
        let ends = |time: &str| {
            let mut t = transition("test");
            t.time = time.to_string();
            body(&requests(&s, &[t])[0])[0].get("endsAt").cloned()
        };
        assert_eq!(
            ends("2026-12-31T23:57:30Z"),
            Some(json!("2027-01-01T00:02:30Z"))
        );
        assert_eq!(
            ends("2028-02-28T23:59:59.9Z"),
            Some(json!("2028-02-29T00:04:59.9Z"))
        );
        assert_eq!(
            ends("2027-02-28T23:59:00Z"),
            Some(json!("2027-03-01T00:04:00Z"))
        );
        for bad in [
            "2026-12-02 10:00:00Z",
            "2026-12-02T10:00:00",
            "2026-12-02T10:00:00+00:00",
            "2026-13-02T10:00:00Z",
            "2027-02-29T10:00:00Z",
            "2026-12-02T24:00:00Z",
            "2026-12-02T10:00:00.Z",
            "2026-12-02T10:00:00,5Z",
            "2026-12-2T10:00:00Z",
            "+026-12-02T10:00:00Z",
            "9999-12-31T23:58:00Z",
            "",
        ] {
            assert_eq!(ends(bad), None, "{bad}");
        }
    }

    #[test]
    fn alertmanager_skips_blocker_terminated_and_sends_nothing_when_empty() {
        let s = sink("alertmanager", "http://am:9093", json!({}));
        assert!(requests(&s, &[transition("blocker_terminated")]).is_empty());
        assert!(requests(&s, &[]).is_empty());
        let batch = [
            transition("blocker_terminated"),
            transition("raised"),
            transition("blocker_terminated"),
        ];
        let alerts = body(&requests(&s, &batch)[0]);
        assert_eq!(alerts.as_array().unwrap().len(), 1);
    }

    #[test]
    fn alertmanager_ha_pair_gets_the_same_batch() {
        let s = sink(
            "alertmanager",
            "https://u:p@am-0:9093//, http://am-1:9093/prefix?x=1",
            json!({"headers": {"Authorization": "Bearer t"}}),
        );
        let batch = [transition("raised"), transition("resolved")];
        let requests = requests(&s, &batch);
        let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://u:p@am-0:9093/api/v2/alerts",
                "http://am-1:9093/prefix/api/v2/alerts?x=1"
            ]
        );
        assert_eq!(requests[0].body, requests[1].body);
        assert_eq!(body(&requests[0]).as_array().unwrap().len(), 2);
        assert_eq!(header(&requests[1], "authorization"), Some("Bearer t"));
        assert_eq!(
            header(&requests[1], "content-type"),
            Some("application/json")
        );
    }

    #[test]
    fn webhook_body_is_the_transition() {
        let s = sink(
            "webhook",
            "https://example.com/hook",
            json!({"headers": {"X-Team": "db"}}),
        );
        let mut second = transition("blocker_terminated");
        second.delivery_id = 43;
        second.remediation = None;
        let batch = [transition("raised"), second];
        let requests = requests(&s, &batch);
        assert_eq!(requests.len(), 2);
        let first = body(&requests[0]);
        assert_eq!(
            first,
            json!({
                "delivery_id": 42,
                "alert_id": 7,
                "event": "raised",
                "subject": "slot:peerdb_orders",
                "finding": "retained_wal_high",
                "severity": "critical",
                "time": "2026-12-02T10:05:00.123456Z",
                "raised_at": "2026-12-02T10:00:00.5Z",
                "resolved_at": null,
                "summary": "retains 48 GB of WAL",
                "remediation": "advance or drop the slot",
                "detail": {"retained_bytes": 51539607552u64},
                "cluster": "prod-eu",
            })
        );
        let back: Transition = serde_json::from_value(first).unwrap();
        assert_eq!(back, batch[0]);
        assert_eq!(requests[0].url, "https://example.com/hook");
        assert_eq!(
            requests[0].headers,
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("X-CDC-Health-Event".to_string(), "raised".to_string()),
                ("X-CDC-Health-Delivery".to_string(), "42".to_string()),
                ("X-Team".to_string(), "db".to_string()),
            ]
        );
        assert_eq!(body(&requests[1])["event"], "blocker_terminated");
        assert_eq!(body(&requests[1])["remediation"], Value::Null);
        assert_eq!(header(&requests[1], "X-CDC-Health-Delivery"), Some("43"));
        assert_eq!(header(&requests[1], "X-CDC-Health-Signature"), None);
    }

    #[test]
    fn webhook_signature_covers_the_exact_body() {
        let s = sink(
            "webhook",
            "https://example.com/hook",
            json!({"secret": "s3cr3t"}),
        );
        let requests = requests(&s, &[transition("resolved")]);
        let request = &requests[0];
        let signed = header(request, "X-CDC-Health-Signature").unwrap();
        assert_eq!(signed, signature(b"s3cr3t", &request.body));
        assert!(signed.starts_with("sha256=") && signed.len() == 71);
        assert!(verify(b"s3cr3t", &request.body, signed));
        assert!(!verify(b"other", &request.body, signed));
        let mut tampered = request.body.clone();
        tampered.push(b' ');
        assert!(!verify(b"s3cr3t", &tampered, signed));
        // The secret itself is never sent.
        let text = String::from_utf8(request.body.clone()).unwrap();
        assert!(!text.contains("s3cr3t"));
        assert!(request.headers.iter().all(|(_, v)| !v.contains("s3cr3t")));
    }

    #[test]
    fn slack_message_shape() {
        let s = sink("slack", "https://hooks.slack.com/services/T/B/X", json!({}));
        let requests = requests(&s, &[transition("raised")]);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].url, "https://hooks.slack.com/services/T/B/X");
        assert_eq!(
            header(&requests[0], "Content-Type"),
            Some("application/json")
        );
        assert_eq!(
            body(&requests[0]),
            json!({
                "text": "[CRITICAL] raised: slot:peerdb_orders: retains 48 GB of WAL",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "Critical raised: slot:peerdb_orders"}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*Severity*\ncritical"},
                        {"type": "mrkdwn", "text": "*Finding*\nretained_wal_high"},
                        {"type": "mrkdwn", "text": "*Subject*\nslot:peerdb_orders"},
                        {"type": "mrkdwn", "text": "*Cluster*\nprod-eu"},
                    ]},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "retains 48 GB of WAL"}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": "*Remediation*\nadvance or drop the slot"}},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": "alert 7 · delivery 42 · 2026-12-02T10:05:00.123456Z"}
                    ]},
                ],
            })
        );
    }

    #[test]
    fn slack_escapes_and_omits_missing_remediation() {
        let s = sink("slack", "https://hooks.slack.com/services/T/B/X", json!({}));
        let mut t = transition("resolved");
        t.severity = "warning".to_string();
        t.subject = "slot:<a&b>".to_string();
        t.summary = "lag > 5 min & <!channel> ok".to_string();
        t.remediation = None;
        let message = body(&requests(&s, &[t])[0]);
        assert_eq!(
            message["text"],
            "[WARNING] resolved: slot:&lt;a&amp;b&gt;: lag &gt; 5 min &amp; &lt;!channel&gt; ok"
        );
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks.len(), 4, "no remediation section");
        // Plain text is not mrkdwn: not escaped.
        assert_eq!(blocks[0]["text"]["text"], "Warning resolved: slot:<a&b>");
        assert_eq!(
            blocks[1]["fields"][2]["text"],
            "*Subject*\nslot:&lt;a&amp;b&gt;"
        );
        assert_eq!(
            blocks[2]["text"]["text"],
            "lag &gt; 5 min &amp; &lt;!channel&gt; ok"
        );
        assert_eq!(blocks[3]["type"], "context");
    }

    #[test]
    fn slack_respects_its_length_limits() {
        let s = sink("slack", "https://hooks.slack.com/services/T/B/X", json!({}));
        let mut t = transition("raised");
        t.subject = format!("slot:{}", "s".repeat(300));
        t.summary = "é".repeat(5000);
        t.remediation = Some("&".repeat(1000));
        t.cluster = "<".repeat(2500);
        let message = body(&requests(&s, &[t])[0]);
        let chars = |v: &Value| v.as_str().unwrap().chars().count();
        let blocks = &message["blocks"];
        let header = &blocks[0]["text"]["text"];
        assert_eq!(chars(header), SLACK_HEADER_CHARS);
        assert!(header.as_str().unwrap().ends_with("ss…"));
        for field in blocks[1]["fields"].as_array().unwrap() {
            assert!(chars(&field["text"]) <= SLACK_FIELD_CHARS);
        }
        let cluster = blocks[1]["fields"][3]["text"].as_str().unwrap();
        assert!(cluster.starts_with("*Cluster*\n&lt;") && cluster.ends_with("&lt;…"));
        // "*Cluster*\n" is 10 chars, each "&lt;" 4: 497 fit in 1999.
        assert_eq!(cluster.matches("&lt;").count(), 497);
        let summary = blocks[2]["text"]["text"].as_str().unwrap();
        assert_eq!(summary.chars().count(), SLACK_TEXT_CHARS);
        assert!(summary.ends_with("éé…"));
        let remediation = blocks[3]["text"]["text"].as_str().unwrap();
        assert!(remediation.chars().count() <= SLACK_TEXT_CHARS);
        assert!(remediation.ends_with("&amp;…"), "cut on whole entities");
        assert!(chars(&message["text"]) <= SLACK_TEXT_CHARS);
    }

    #[test]
    fn slack_never_sends_an_empty_section() {
        let s = sink("slack", "https://hooks.slack.com/services/T/B/X", json!({}));
        let mut t = transition("raised");
        t.summary.clear();
        let message = body(&requests(&s, &[t])[0]);
        assert_eq!(message["blocks"][2]["text"]["text"], "(no summary)");
    }

    #[test]
    fn pagerduty_trigger_shape() {
        let s = sink(
            "pagerduty",
            "https://events.pagerduty.com/v2/enqueue",
            json!({"routing_key": "R0UT1NG"}),
        );
        for event in ["raised", "escalated"] {
            let requests = requests(&s, &[transition(event)]);
            assert_eq!(requests.len(), 1);
            assert_eq!(requests[0].url, "https://events.pagerduty.com/v2/enqueue");
            assert_eq!(
                body(&requests[0]),
                json!({
                    "routing_key": "R0UT1NG",
                    "event_action": "trigger",
                    "dedup_key": "cdc_health/prod-eu/7",
                    "payload": {
                        "summary": "retains 48 GB of WAL",
                        "severity": "critical",
                        "source": "prod-eu",
                        "component": "slot:peerdb_orders",
                        "class": "retained_wal_high",
                        "timestamp": "2026-12-02T10:05:00.123456Z",
                        "custom_details": {
                            "alert_id": 7,
                            "event": event,
                            "remediation": "advance or drop the slot",
                            "detail": {"retained_bytes": 51539607552u64},
                            "delivery_id": 42,
                        },
                    },
                    "client": "cdc_health",
                })
            );
        }
    }

    #[test]
    fn pagerduty_resolve_test_and_skips() {
        let s = sink(
            "pagerduty",
            "https://events.pagerduty.com/v2/enqueue",
            json!({"routing_key": "R0UT1NG"}),
        );
        let resolve = body(&requests(&s, &[transition("resolved")])[0]);
        assert_eq!(
            resolve,
            json!({
                "routing_key": "R0UT1NG",
                "event_action": "resolve",
                "dedup_key": "cdc_health/prod-eu/7",
                "client": "cdc_health",
            })
        );

        let mut warning = transition("test");
        warning.severity = "warning".to_string();
        let test = body(&requests(&s, &[warning])[0]);
        assert_eq!(test["event_action"], "trigger");
        assert_eq!(test["dedup_key"], "cdc_health/prod-eu/test");
        assert_eq!(test["payload"]["severity"], "info");

        let mut warning = transition("raised");
        warning.severity = "warning".to_string();
        warning.remediation = None;
        let raised = body(&requests(&s, &[warning])[0]);
        assert_eq!(raised["payload"]["severity"], "warning");
        assert_eq!(
            raised["payload"]["custom_details"]["remediation"],
            Value::Null
        );

        for skipped in ["reminder", "blocker_terminated", "something_new"] {
            assert!(requests(&s, &[transition(skipped)]).is_empty(), "{skipped}");
        }
        let batch = [
            transition("reminder"),
            transition("raised"),
            transition("blocker_terminated"),
            transition("resolved"),
        ];
        let actions: Vec<Value> = requests(&s, &batch)
            .iter()
            .map(|r| body(r)["event_action"].clone())
            .collect();
        assert_eq!(actions, [json!("trigger"), json!("resolve")]);
    }

    #[test]
    fn pagerduty_summary_is_cut_and_never_empty() {
        let s = sink(
            "pagerduty",
            "https://events.pagerduty.com/v2/enqueue",
            json!({"routing_key": "R0UT1NG"}),
        );
        let mut long = transition("raised");
        long.summary = "ü".repeat(2000);
        let summary = body(&requests(&s, &[long])[0])["payload"]["summary"].clone();
        let summary = summary.as_str().unwrap();
        assert_eq!(summary.chars().count(), PAGERDUTY_SUMMARY_CHARS);
        assert!(summary.ends_with("üü…"));

        let mut exact = transition("raised");
        exact.summary = "x".repeat(PAGERDUTY_SUMMARY_CHARS);
        let summary = body(&requests(&s, &[exact.clone()])[0])["payload"]["summary"].clone();
        assert_eq!(
            summary,
            json!(exact.summary),
            "exactly at the limit: not cut"
        );

        let mut empty = transition("raised");
        empty.summary.clear();
        empty.cluster.clear();
        let payload = body(&requests(&s, &[empty])[0])["payload"].clone();
        assert_eq!(
            payload["summary"],
            "retained_wal_high on slot:peerdb_orders"
        );
        assert_eq!(payload["source"], "cdc_health");
    }

    #[test]
    fn sink_headers_ride_along_after_ours() {
        let options = json!({"headers": {"Authorization": "Bearer t"}, "routing_key": "k"});
        let s = sink(
            "pagerduty",
            "https://events.pagerduty.com/v2/enqueue",
            options,
        );
        let requests = requests(&s, &[transition("raised")]);
        assert_eq!(
            requests[0].headers,
            [
                ("Content-Type".to_string(), "application/json".to_string()),
                ("Authorization".to_string(), "Bearer t".to_string()),
            ]
        );
    }

    #[test]
    fn cutting_helpers() {
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "ab…");
        assert_eq!(cut("ééé", 2), "é…");
        assert_eq!(cut("", 0), "");
        assert_eq!(mrkdwn("", "a<b", 10), "a&lt;b");
        assert_eq!(mrkdwn("", "a<b", 6), "a&lt;b", "exactly at the limit");
        assert_eq!(mrkdwn("", "a<b", 5), "a…", "the entity does not fit whole");
        assert_eq!(mrkdwn("*T*\n", "xyz", 6), "*T*\nx…");
        assert_eq!(capitalized("warning"), "Warning");
        assert_eq!(capitalized(""), "");
    }
}
