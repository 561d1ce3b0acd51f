//! Alert state transitions and the NOTIFY payload that announces them.
//!
//! The alert table is the source of truth: each pass the extension loads the open alerts
//! and the recently resolved ones, asks [`transitions`] what to do and applies the actions.
//! Keeping the decisions here makes flapping, hold-down and reminders testable without a
//! server.

use std::borrow::Cow;
use std::collections::btree_map::{BTreeMap, Entry};
use std::io;

use serde::Serialize;
use serde_json::{json, Value};

use crate::finding::{Finding, FindingCode, Severity};

/// What happened to an alert; part of the SQL and NOTIFY contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    Raised,
    Escalated,
    Resolved,
    Reminder,
    /// The opt-in termination ended a session that blocked a slot creation.
    BlockerTerminated,
}

impl Event {
    pub const ALL: [Event; 5] = [
        Self::Raised,
        Self::Escalated,
        Self::Resolved,
        Self::Reminder,
        Self::BlockerTerminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raised => "raised",
            Self::Escalated => "escalated",
            Self::Resolved => "resolved",
            Self::Reminder => "reminder",
            Self::BlockerTerminated => "blocker_terminated",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

#[cfg(test)]
mod event_names {
    use super::Event;

    #[test]
    fn serialized_names_are_the_documented_ones() {
        for e in Event::ALL {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
    }
}

/// An alert row whose `resolved_at` is NULL.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAlert {
    pub id: i64,
    pub subject: String,
    pub finding: FindingCode,
    pub severity: Severity,
    pub raised_at: f64,
    /// The last raise, escalation or reminder: the reminder clock starts here.
    pub last_notified_at: f64,
    /// When the finding was first seen absent; `None` while it is present.
    pub clear_since: Option<f64>,
}

/// An alert resolved recently enough that it may be reopened instead of raised anew.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedAlert {
    pub id: i64,
    pub subject: String,
    pub finding: FindingCode,
    pub resolved_at: f64,
}

/// A finding present now on a subject (e.g. subject "slot:peerdb" or "mirror:orders").
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub subject: String,
    pub finding: Finding,
    pub remediation: Option<String>,
    pub detail: Value,
}

/// How alerts settle (the `cdc_health.alert_*` settings and the sampling interval).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlertPolicy {
    /// A finding must stay absent this long before its alert resolves.
    pub interval_secs: f64,
    /// Re-announce an open alert this often; 0 means never.
    pub reminder_secs: f64,
    /// A finding back within this long after its alert resolved reopens that alert.
    pub holddown_secs: f64,
}

/// One change to the alert table. Only `Raise`, `Reopen`, `Escalate`, `Resolve` and
/// `Remind` produce an event (and a NOTIFY); the others are silent bookkeeping.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Insert a new alert; event `raised`.
    Raise {
        subject: String,
        finding: Finding,
        remediation: Option<String>,
        detail: Value,
    },
    /// The finding came back within the hold-down: same row, `resolved_at` set back to
    /// NULL; event `raised`.
    Reopen {
        id: i64,
        finding: Finding,
        remediation: Option<String>,
        detail: Value,
    },
    /// Warning became critical; event `escalated` (restarts the reminder clock).
    Escalate {
        id: i64,
        finding: Finding,
        remediation: Option<String>,
        detail: Value,
    },
    /// Still present: refresh summary and severity (critical to warning is silent) and
    /// clear `clear_since`.
    Update { id: i64, finding: Finding },
    /// Absent for the first time: remember since when; no event.
    StartClearing { id: i64, since: f64 },
    /// Absent for a full interval; event `resolved`.
    Resolve { id: i64, finding: FindingCode },
    /// Still open and not announced for `reminder_secs`; event `reminder`.
    Remind {
        id: i64,
        finding: Finding,
        remediation: Option<String>,
        detail: Value,
    },
}

/// What an event action writes to: a new alert on a subject, or an existing alert row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    /// A raise: the subject of the new row.
    Subject(&'a str),
    /// A reopening, escalation or reminder: the alert's id.
    Alert(i64),
}

/// The content an event action writes and sends, open to be filled in after `transitions`.
pub struct ContentMut<'a> {
    pub target: Target<'a>,
    pub finding: &'a Finding,
    pub remediation: &'a mut Option<String>,
    pub detail: &'a mut Value,
}

impl Action {
    /// The content of a raise, reopening, escalation or reminder; `None` for the others.
    pub fn content_mut(&mut self) -> Option<ContentMut<'_>> {
        let (target, finding, remediation, detail) = match self {
            Action::Raise {
                subject,
                finding,
                remediation,
                detail,
            } => (Target::Subject(subject), finding, remediation, detail),
            Action::Reopen {
                id,
                finding,
                remediation,
                detail,
            }
            | Action::Escalate {
                id,
                finding,
                remediation,
                detail,
            }
            | Action::Remind {
                id,
                finding,
                remediation,
                detail,
            } => (Target::Alert(*id), finding, remediation, detail),
            _ => return None,
        };
        Some(ContentMut {
            target,
            finding,
            remediation,
            detail,
        })
    }
}

type Pair<'a> = (&'a str, FindingCode);

/// The actions that bring the alert table in line with `observed` at `now`.
///
/// At most one open alert per (subject, finding): duplicates in `observed` collapse to the
/// most severe (the first of equals), and should the table hold two open rows for a pair,
/// the older (lower id) is kept and the others are resolved. Findings of severity `ok`
/// count as absent. Actions are sorted by subject, then finding code (in `FindingCode`
/// order); a pair gets at most one of an event action or an `Update`.
pub fn transitions(
    open: &[OpenAlert],
    recently_resolved: &[ResolvedAlert],
    observed: &[Observed],
    now: f64,
    policy: &AlertPolicy,
) -> Vec<Action> {
    let mut present: BTreeMap<Pair, &Observed> = BTreeMap::new();
    for o in observed
        .iter()
        .filter(|o| o.finding.severity > Severity::Ok)
    {
        match present.entry((o.subject.as_str(), o.finding.code)) {
            Entry::Vacant(slot) => {
                slot.insert(o);
            }
            Entry::Occupied(mut slot) => {
                if o.finding.severity > slot.get().finding.severity {
                    slot.insert(o);
                }
            }
        }
    }

    let mut actions: Vec<(Pair, Action)> = Vec::new();
    let mut alerts: BTreeMap<Pair, &OpenAlert> = BTreeMap::new();
    for a in open {
        let pair = (a.subject.as_str(), a.finding);
        let surplus = match alerts.entry(pair) {
            Entry::Vacant(slot) => {
                slot.insert(a);
                continue;
            }
            Entry::Occupied(mut slot) if a.id < slot.get().id => slot.insert(a),
            Entry::Occupied(_) => a,
        };
        let resolve = Action::Resolve {
            id: surplus.id,
            finding: surplus.finding,
        };
        actions.push((pair, resolve));
    }

    for (&pair, &o) in &present {
        match alerts.get(&pair) {
            None => actions.push((pair, raise_or_reopen(o, recently_resolved, now, policy))),
            Some(&a) => {
                actions.extend(still_present(o, a, now, policy).map(|action| (pair, action)))
            }
        }
    }
    for (&pair, &a) in &alerts {
        if present.contains_key(&pair) {
            continue;
        }
        match a.clear_since {
            None => actions.push((
                pair,
                Action::StartClearing {
                    id: a.id,
                    since: now,
                },
            )),
            Some(since) if now - since >= policy.interval_secs => actions.push((
                pair,
                Action::Resolve {
                    id: a.id,
                    finding: a.finding,
                },
            )),
            Some(_) => {}
        }
    }

    // Stable: a pair's actions keep the order they were pushed in.
    actions.sort_by_key(|&(pair, _)| pair);
    actions.into_iter().map(|(_, action)| action).collect()
}

/// A finding without an open alert: reopen the newest alert resolved within the hold-down
/// (so a flapping finding keeps one row and one history), else raise a new one.
fn raise_or_reopen(
    o: &Observed,
    recently_resolved: &[ResolvedAlert],
    now: f64,
    policy: &AlertPolicy,
) -> Action {
    let reopen = recently_resolved
        .iter()
        .filter(|r| r.subject == o.subject && r.finding == o.finding.code)
        .filter(|r| now - r.resolved_at <= policy.holddown_secs)
        .max_by(|a, b| {
            a.resolved_at
                .total_cmp(&b.resolved_at)
                .then(a.id.cmp(&b.id))
        });
    match reopen {
        Some(r) => Action::Reopen {
            id: r.id,
            finding: o.finding.clone(),
            remediation: o.remediation.clone(),
            detail: o.detail.clone(),
        },
        None => Action::Raise {
            subject: o.subject.clone(),
            finding: o.finding.clone(),
            remediation: o.remediation.clone(),
            detail: o.detail.clone(),
        },
    }
}

/// A finding with an open alert: escalate or remind (never both: an escalation restarts
/// the reminder clock), then refresh the row. The row is refreshed every pass because
/// summaries carry durations and sizes that change between passes, and `OpenAlert` does
/// not hold the old summary to compare against.
fn still_present(
    o: &Observed,
    a: &OpenAlert,
    now: f64,
    policy: &AlertPolicy,
) -> impl Iterator<Item = Action> {
    let event = if o.finding.severity > a.severity {
        Some(Action::Escalate {
            id: a.id,
            finding: o.finding.clone(),
            remediation: o.remediation.clone(),
            detail: o.detail.clone(),
        })
    } else if policy.reminder_secs > 0.0 && now - a.last_notified_at >= policy.reminder_secs {
        Some(Action::Remind {
            id: a.id,
            finding: o.finding.clone(),
            remediation: o.remediation.clone(),
            detail: o.detail.clone(),
        })
    } else {
        None
    };
    // A silent update is a write (and WAL) on every pass; only make it when it changes
    // something. An event's own statement already rewrites the whole row.
    let changed = o.finding.severity != a.severity || a.clear_since.is_some();
    let update = (event.is_none() && changed).then(|| Action::Update {
        id: a.id,
        finding: o.finding.clone(),
    });
    event.into_iter().chain(update)
}

/// PostgreSQL's NOTIFY payload must be shorter than 8000 bytes.
pub const NOTIFY_LIMIT: usize = 7999;

/// What one NOTIFY says about one alert event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PayloadFields<'a> {
    pub alert_id: i64,
    pub event: Event,
    pub subject: &'a str,
    pub finding: FindingCode,
    pub severity: Severity,
    /// ISO 8601 text from the caller.
    pub time: &'a str,
    pub summary: &'a str,
    pub remediation: Option<&'a str>,
    pub detail: &'a Value,
}

/// The payload as serialized, keys in contract order.
#[derive(Serialize)]
struct Wire<'a> {
    alert_id: i64,
    event: Event,
    subject: Cow<'a, str>,
    finding: FindingCode,
    severity: Severity,
    time: Cow<'a, str>,
    summary: Cow<'a, str>,
    remediation: Option<Cow<'a, str>>,
    detail: Cow<'a, Value>,
}

impl Wire<'_> {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("strings, numbers and JSON values always serialize")
    }
}

/// The JSON object sent with NOTIFY, never more than [`NOTIFY_LIMIT`] bytes.
///
/// When too long, `detail` is replaced first by `{"truncated": true, "bytes": <its size>}`
/// (unless that marker is no shorter), then `summary` and `remediation` are cut on
/// character boundaries and end with "…". Only when even that cannot fit are `subject` and
/// `time` cut too; no key is ever dropped.
pub fn payload(f: &PayloadFields) -> String {
    let mut wire = Wire {
        alert_id: f.alert_id,
        event: f.event,
        subject: Cow::Borrowed(f.subject),
        finding: f.finding,
        severity: f.severity,
        time: Cow::Borrowed(f.time),
        summary: Cow::Borrowed(f.summary),
        remediation: f.remediation.map(Cow::Borrowed),
        detail: Cow::Borrowed(f.detail),
    };
    let text = wire.to_json();
    if text.len() <= NOTIFY_LIMIT {
        return text;
    }

    let detail_bytes = json_len(f.detail);
    let marker = json!({ "truncated": true, "bytes": detail_bytes });
    if json_len(&marker) < detail_bytes {
        wire.detail = Cow::Owned(marker);
        let text = wire.to_json();
        if text.len() <= NOTIFY_LIMIT {
            return text;
        }
    }

    // Cut the free text; the subject and time only if the rest cannot fit without it.
    let mut originals = vec![f.summary];
    originals.extend(f.remediation);
    let skeleton = |wire: &mut Wire, with_required: bool| {
        wire.summary = Cow::Borrowed("");
        wire.remediation = f.remediation.map(|_| Cow::Borrowed(""));
        if with_required {
            wire.subject = Cow::Borrowed("");
            wire.time = Cow::Borrowed("");
        }
        wire.to_json().len()
    };
    let mut fixed = skeleton(&mut wire, false);
    let cut_required = fixed > NOTIFY_LIMIT;
    if cut_required {
        originals.extend([f.subject, f.time]);
        fixed = skeleton(&mut wire, true);
    }
    let lens: Vec<usize> = originals.iter().map(|s| escaped_len(s)).collect();
    let mut room = NOTIFY_LIMIT.saturating_sub(fixed);
    loop {
        let budgets = fair_shares(&lens, room);
        let mut cut = originals.iter().zip(budgets).map(|(&s, b)| fit(s, b));
        wire.summary = cut.next().unwrap_or_default();
        if f.remediation.is_some() {
            wire.remediation = cut.next();
        }
        if cut_required {
            wire.subject = cut.next().unwrap_or_default();
            wire.time = cut.next().unwrap_or_default();
        }
        let text = wire.to_json();
        // The length estimate is exact for serde_json's escaping; the loop only guards it.
        if text.len() <= NOTIFY_LIMIT || room == 0 {
            return text;
        }
        room = room.saturating_sub(text.len() - NOTIFY_LIMIT);
    }
}

/// Bytes `value` takes as compact JSON, without building the text.
fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a Value to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Bytes `c` takes inside a JSON string as serde_json writes it.
fn escaped_char_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

fn escaped_len(text: &str) -> usize {
    text.chars().map(escaped_char_len).sum()
}

/// Splits `room` between texts of escaped lengths `lens`: short texts keep all they need,
/// long ones share the rest equally.
fn fair_shares(lens: &[usize], room: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..lens.len()).collect();
    order.sort_by_key(|&i| lens[i]);
    let mut shares = vec![0; lens.len()];
    let mut left = room;
    for (done, &i) in order.iter().enumerate() {
        let share = lens[i].min(left / (lens.len() - done));
        shares[i] = share;
        left -= share;
    }
    shares
}

/// The longest prefix of `text` that, with a trailing "…", takes at most `budget` escaped
/// bytes; `text` itself when it fits.
fn fit(text: &str, budget: usize) -> Cow<'_, str> {
    const ELLIPSIS: &str = "…";
    if escaped_len(text) <= budget {
        return Cow::Borrowed(text);
    }
    let Some(room) = budget.checked_sub(ELLIPSIS.len()) else {
        return Cow::Borrowed("");
    };
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += escaped_char_len(c);
        if used > room {
            break;
        }
        end = i + c.len_utf8();
    }
    Cow::Owned(format!("{}{ELLIPSIS}", &text[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: AlertPolicy = AlertPolicy {
        interval_secs: 60.0,
        reminder_secs: 3600.0,
        holddown_secs: 600.0,
    };

    fn obs(subject: &str, code: FindingCode, severity: Severity) -> Observed {
        Observed {
            subject: subject.to_string(),
            finding: Finding::new(code, severity, format!("{} is {}", subject, code.as_str())),
            remediation: Some("fix it".to_string()),
            detail: json!({ "subject": subject }),
        }
    }

    #[test]
    fn content_is_open_on_the_actions_that_write_it() {
        let open = [
            alert(1, "slot:a", FindingCode::Inactive, Severity::Warning),
            alert(2, "slot:b", FindingCode::Inactive, Severity::Warning),
            alert(3, "slot:c", FindingCode::Inactive, Severity::Warning),
        ];
        let mut observed = vec![
            obs("slot:a", FindingCode::Inactive, Severity::Critical),
            obs("slot:b", FindingCode::Inactive, Severity::Warning),
            obs("slot:d", FindingCode::Lost, Severity::Critical),
        ];
        for o in &mut observed {
            (o.remediation, o.detail) = (None, Value::Null);
        }
        let mut actions = transitions(&open, &[], &observed, 10.0, &POLICY);
        let mut named = Vec::new();
        for action in &mut actions {
            if let Some(c) = action.content_mut() {
                let target = match c.target {
                    Target::Subject(subject) => (Some(subject.to_string()), None),
                    Target::Alert(id) => (None, Some(id)),
                };
                named.push((target, c.finding.code));
                *c.detail = json!({ "filled": true });
            }
        }
        // Escalated a, raised d; b unchanged and c clearing write no content.
        assert_eq!(
            named,
            [
                ((None, Some(1)), FindingCode::Inactive),
                ((Some("slot:d".into()), None), FindingCode::Lost),
            ]
        );
        let filled = |a: &Action| match a {
            Action::Escalate { detail, .. } | Action::Raise { detail, .. } => Some(detail.clone()),
            _ => None,
        };
        assert!(actions
            .iter()
            .filter_map(filled)
            .all(|d| d == json!({ "filled": true })));
    }

    fn alert(id: i64, subject: &str, code: FindingCode, severity: Severity) -> OpenAlert {
        OpenAlert {
            id,
            subject: subject.to_string(),
            finding: code,
            severity,
            raised_at: 0.0,
            last_notified_at: 0.0,
            clear_since: None,
        }
    }

    fn resolved(id: i64, subject: &str, code: FindingCode, at: f64) -> ResolvedAlert {
        ResolvedAlert {
            id,
            subject: subject.to_string(),
            finding: code,
            resolved_at: at,
        }
    }

    const STALLED: FindingCode = FindingCode::Stalled;
    const W: Severity = Severity::Warning;
    const C: Severity = Severity::Critical;

    /// A stand-in for the alert table that applies actions the way the extension does.
    #[derive(Default)]
    struct Table {
        open: Vec<OpenAlert>,
        resolved: Vec<ResolvedAlert>,
        events: Vec<(f64, i64, Event)>,
        next_id: i64,
    }

    impl Table {
        fn pass(&mut self, observed: &[Observed], now: f64, policy: &AlertPolicy) {
            let actions = transitions(&self.open, &self.resolved, observed, now, policy);
            for action in actions {
                self.apply(action, now);
            }
        }

        fn get(&mut self, id: i64) -> &mut OpenAlert {
            self.open.iter_mut().find(|a| a.id == id).unwrap()
        }

        fn apply(&mut self, action: Action, now: f64) {
            match action {
                Action::Raise {
                    subject, finding, ..
                } => {
                    self.next_id += 1;
                    let mut a = alert(self.next_id, &subject, finding.code, finding.severity);
                    (a.raised_at, a.last_notified_at) = (now, now);
                    self.open.push(a);
                    self.events.push((now, self.next_id, Event::Raised));
                }
                Action::Reopen { id, finding, .. } => {
                    let pos = self.resolved.iter().position(|r| r.id == id).unwrap();
                    let r = self.resolved.remove(pos);
                    let mut a = alert(id, &r.subject, finding.code, finding.severity);
                    a.last_notified_at = now;
                    self.open.push(a);
                    self.events.push((now, id, Event::Raised));
                }
                Action::Escalate { id, finding, .. } => {
                    let a = self.get(id);
                    (a.severity, a.last_notified_at) = (finding.severity, now);
                    self.events.push((now, id, Event::Escalated));
                }
                Action::Update { id, finding } => {
                    let a = self.get(id);
                    (a.severity, a.clear_since) = (finding.severity, None);
                }
                Action::StartClearing { id, since } => self.get(id).clear_since = Some(since),
                Action::Resolve { id, .. } => {
                    let pos = self.open.iter().position(|a| a.id == id).unwrap();
                    let a = self.open.remove(pos);
                    self.resolved.push(resolved(id, &a.subject, a.finding, now));
                    self.events.push((now, id, Event::Resolved));
                }
                Action::Remind { id, .. } => {
                    self.get(id).last_notified_at = now;
                    self.events.push((now, id, Event::Reminder));
                }
            }
        }

        fn events(&self) -> Vec<Event> {
            self.events.iter().map(|&(_, _, e)| e).collect()
        }
    }

    #[test]
    fn events_round_trip_and_serialize_lowercase() {
        for e in Event::ALL {
            assert_eq!(Event::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(Event::parse("Raised"), None);
    }

    #[test]
    fn new_finding_raises_with_everything_to_announce() {
        let o = obs("slot:a", STALLED, W);
        let actions = transitions(&[], &[], std::slice::from_ref(&o), 100.0, &POLICY);
        assert_eq!(
            actions,
            [Action::Raise {
                subject: "slot:a".into(),
                finding: o.finding,
                remediation: Some("fix it".into()),
                detail: json!({ "subject": "slot:a" }),
            }]
        );
    }

    #[test]
    fn nothing_observed_and_nothing_open_does_nothing() {
        assert!(transitions(&[], &[], &[], 0.0, &POLICY).is_empty());
    }

    #[test]
    fn present_and_open_unchanged_writes_nothing() {
        let o = obs("slot:a", STALLED, W);
        let mut a = alert(7, "slot:a", STALLED, W);
        a.last_notified_at = 50.0;
        let actions = transitions(&[a], &[], std::slice::from_ref(&o), 100.0, &POLICY);
        assert_eq!(
            actions,
            [],
            "an open alert whose finding persists costs no write"
        );
    }

    #[test]
    fn returning_within_the_interval_clears_clear_since() {
        let mut a = alert(7, "slot:a", STALLED, W);
        a.clear_since = Some(90.0);
        let actions = transitions(&[a], &[], &[obs("slot:a", STALLED, W)], 100.0, &POLICY);
        assert!(matches!(actions[..], [Action::Update { id: 7, .. }]));
    }

    #[test]
    fn warning_to_critical_escalates_without_a_reminder() {
        let o = obs("slot:a", STALLED, C);
        let a = alert(7, "slot:a", STALLED, W); // reminder long overdue too
        let actions = transitions(&[a], &[], std::slice::from_ref(&o), 99_999.0, &POLICY);
        assert_eq!(
            actions,
            [Action::Escalate {
                id: 7,
                finding: o.finding.clone(),
                remediation: o.remediation,
                detail: o.detail,
            }]
        );
    }

    #[test]
    fn critical_to_warning_is_silent() {
        let mut t = Table::default();
        t.pass(&[obs("slot:a", STALLED, C)], 0.0, &POLICY);
        t.pass(&[obs("slot:a", STALLED, W)], 60.0, &POLICY);
        assert_eq!(t.events(), [Event::Raised]);
        assert_eq!(t.open[0].severity, W);
        // Back to critical is an escalation again.
        t.pass(&[obs("slot:a", STALLED, C)], 120.0, &POLICY);
        assert_eq!(t.events(), [Event::Raised, Event::Escalated]);
    }

    #[test]
    fn absent_first_starts_clearing_then_resolves_after_an_interval() {
        let a = alert(7, "slot:a", STALLED, W);
        let actions = transitions(std::slice::from_ref(&a), &[], &[], 100.0, &POLICY);
        assert_eq!(
            actions,
            [Action::StartClearing {
                id: 7,
                since: 100.0
            }]
        );

        let clearing = OpenAlert {
            clear_since: Some(100.0),
            ..a
        };
        let at = |now| transitions(std::slice::from_ref(&clearing), &[], &[], now, &POLICY);
        assert!(at(159.9).is_empty());
        assert_eq!(
            at(160.0),
            [Action::Resolve {
                id: 7,
                finding: STALLED
            }]
        );
    }

    #[test]
    fn flapping_within_an_interval_neither_resolves_nor_raises_again() {
        let mut t = Table::default();
        let present = [obs("slot:a", STALLED, W)];
        for (now, seen) in [(0.0, true), (30.0, false), (50.0, true), (80.0, false)] {
            t.pass(if seen { &present } else { &[] }, now, &POLICY);
        }
        t.pass(&present, 139.0, &POLICY);
        assert_eq!(t.events(), [Event::Raised]);
        assert_eq!(t.open.len(), 1);
        assert_eq!(t.open[0].clear_since, None);
    }

    #[test]
    fn absent_for_two_passes_resolves_once() {
        let mut t = Table::default();
        t.pass(&[obs("slot:a", STALLED, W)], 0.0, &POLICY);
        for now in [60.0, 120.0, 180.0, 240.0] {
            t.pass(&[], now, &POLICY);
        }
        assert_eq!(t.events(), [Event::Raised, Event::Resolved]);
        assert_eq!(t.events[1].0, 120.0);
        assert!(t.open.is_empty());
    }

    #[test]
    fn back_within_the_holddown_reopens_the_same_alert() {
        let mut t = Table::default();
        let present = [obs("slot:a", STALLED, W)];
        t.pass(&present, 0.0, &POLICY);
        t.pass(&[], 60.0, &POLICY);
        t.pass(&[], 120.0, &POLICY); // resolved
        t.pass(&present, 720.0, &POLICY); // exactly the hold-down later
        assert_eq!(t.events(), [Event::Raised, Event::Resolved, Event::Raised]);
        assert_eq!(t.events.iter().map(|e| e.1).collect::<Vec<_>>(), [1, 1, 1]);
        assert_eq!(t.open[0].id, 1);
    }

    #[test]
    fn back_after_the_holddown_raises_a_new_alert() {
        let r = resolved(1, "slot:a", STALLED, 120.0);
        let actions = transitions(&[], &[r], &[obs("slot:a", STALLED, W)], 720.1, &POLICY);
        assert!(matches!(actions[..], [Action::Raise { .. }]), "{actions:?}");
    }

    #[test]
    fn reopen_picks_the_newest_resolved_alert_of_the_same_pair() {
        let rs = [
            resolved(1, "slot:a", STALLED, 100.0),
            resolved(3, "slot:a", STALLED, 300.0),
            resolved(2, "slot:a", STALLED, 200.0),
            resolved(4, "slot:b", STALLED, 350.0),
            resolved(5, "slot:a", FindingCode::Inactive, 350.0),
        ];
        let actions = transitions(&[], &rs, &[obs("slot:a", STALLED, W)], 400.0, &POLICY);
        assert!(
            matches!(actions[..], [Action::Reopen { id: 3, .. }]),
            "{actions:?}"
        );
    }

    #[test]
    fn reminders_come_every_reminder_interval_from_the_last_notice() {
        let mut t = Table::default();
        let present = [obs("slot:a", STALLED, W)];
        for pass in 0..=180 {
            t.pass(&present, 60.0 * f64::from(pass), &POLICY); // 3 hours
        }
        let reminders: Vec<f64> = t
            .events
            .iter()
            .filter(|e| e.2 == Event::Reminder)
            .map(|e| e.0)
            .collect();
        assert_eq!(reminders, [3600.0, 7200.0, 10_800.0]);
    }

    #[test]
    fn escalation_restarts_the_reminder_clock() {
        let mut t = Table::default();
        t.pass(&[obs("slot:a", STALLED, W)], 0.0, &POLICY);
        t.pass(&[obs("slot:a", STALLED, C)], 3000.0, &POLICY);
        t.pass(&[obs("slot:a", STALLED, C)], 3600.0, &POLICY);
        t.pass(&[obs("slot:a", STALLED, C)], 6599.0, &POLICY);
        assert_eq!(t.events(), [Event::Raised, Event::Escalated]);
        t.pass(&[obs("slot:a", STALLED, C)], 6600.0, &POLICY);
        assert_eq!(t.events().last(), Some(&Event::Reminder));
    }

    #[test]
    fn reminder_boundary_and_zero_disables_them() {
        let a = alert(7, "slot:a", STALLED, W);
        let present = [obs("slot:a", STALLED, W)];
        let reminds = |now, policy: &AlertPolicy| {
            transitions(std::slice::from_ref(&a), &[], &present, now, policy)
                .iter()
                .any(|x| matches!(x, Action::Remind { id: 7, .. }))
        };
        assert!(!reminds(3599.9, &POLICY));
        assert!(reminds(3600.0, &POLICY));
        let never = AlertPolicy {
            reminder_secs: 0.0,
            ..POLICY
        };
        assert!(!reminds(1e9, &never));

        let mut t = Table::default();
        for pass in 0..100 {
            t.pass(&present, 3600.0 * f64::from(pass), &never);
        }
        assert_eq!(t.events(), [Event::Raised]);
    }

    #[test]
    fn duplicate_observations_keep_the_most_severe() {
        for observed in [
            [obs("slot:a", STALLED, W), obs("slot:a", STALLED, C)],
            [obs("slot:a", STALLED, C), obs("slot:a", STALLED, W)],
        ] {
            let actions = transitions(&[], &[], &observed, 0.0, &POLICY);
            assert_eq!(actions.len(), 1);
            let Action::Raise { finding, .. } = &actions[0] else {
                panic!("{actions:?}")
            };
            assert_eq!(finding.severity, C);
        }
    }

    #[test]
    fn duplicate_observations_of_equal_severity_keep_the_first() {
        let mut second = obs("slot:a", STALLED, W);
        second.finding.summary = "second".into();
        let observed = [obs("slot:a", STALLED, W), second];
        let actions = transitions(&[], &[], &observed, 0.0, &POLICY);
        let [Action::Raise { finding, .. }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(finding.summary, "slot:a is stalled");
    }

    #[test]
    fn duplicate_open_rows_keep_the_oldest_and_resolve_the_rest() {
        let open = [
            alert(9, "slot:a", STALLED, W),
            alert(4, "slot:a", STALLED, W),
            alert(6, "slot:a", STALLED, W),
        ];
        let actions = transitions(&open, &[], &[obs("slot:a", STALLED, W)], 0.0, &POLICY);
        let resolved: Vec<i64> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Resolve { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(resolved, [9, 6]);
        assert!(
            actions
                .iter()
                .all(|a| !matches!(a, Action::Update { id: 4, .. })),
            "the kept row is unchanged, so it is not rewritten"
        );
    }

    #[test]
    fn ok_findings_count_as_absent() {
        let quiet = [obs("slot:a", STALLED, Severity::Ok)];
        assert!(transitions(&[], &[], &quiet, 0.0, &POLICY).is_empty());
        let a = alert(7, "slot:a", STALLED, W);
        assert_eq!(
            transitions(&[a], &[], &quiet, 5.0, &POLICY),
            [Action::StartClearing { id: 7, since: 5.0 }]
        );
    }

    #[test]
    fn actions_are_sorted_by_subject_then_finding() {
        let observed = [
            obs("slot:b", FindingCode::Inactive, W),
            obs("mirror:z", FindingCode::MirrorStale, W),
            obs("slot:b", FindingCode::Lost, C),
        ];
        let open = [
            alert(1, "slot:c", STALLED, W),
            alert(2, "slot:a", STALLED, W),
        ];
        let actions = transitions(&open, &[], &observed, 0.0, &POLICY);
        let keys: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Raise {
                    subject, finding, ..
                } => format!("raise {subject} {}", finding.code.as_str()),
                Action::StartClearing { id, .. } => format!("clear {id}"),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            keys,
            [
                "raise mirror:z mirror_stale",
                "clear 2",
                "raise slot:b lost",
                "raise slot:b inactive",
                "clear 1"
            ]
        );
    }

    #[test]
    fn separate_subjects_and_findings_are_separate_alerts() {
        let mut t = Table::default();
        t.pass(
            &[
                obs("slot:a", STALLED, W),
                obs("slot:b", STALLED, W),
                obs("slot:a", FindingCode::Inactive, W),
            ],
            0.0,
            &POLICY,
        );
        assert_eq!(t.open.len(), 3);
        t.pass(&[obs("slot:a", STALLED, W)], 60.0, &POLICY);
        t.pass(&[obs("slot:a", STALLED, W)], 120.0, &POLICY);
        assert_eq!(t.open.len(), 1);
        assert_eq!(t.resolved.len(), 2);
    }

    // --- payload ---

    fn fields<'a>(
        summary: &'a str,
        remediation: Option<&'a str>,
        detail: &'a Value,
    ) -> PayloadFields<'a> {
        PayloadFields {
            alert_id: 42,
            event: Event::Escalated,
            subject: "slot:peerdb",
            finding: FindingCode::RetainedWalHigh,
            severity: C,
            time: "2024-05-01T12:00:00.123456+00:00",
            summary,
            remediation,
            detail,
        }
    }

    const KEYS: [&str; 9] = [
        "alert_id",
        "event",
        "subject",
        "finding",
        "severity",
        "time",
        "summary",
        "remediation",
        "detail",
    ];

    /// Parses `text`, checks the limit, every key and the required values.
    fn check(text: &str) -> Value {
        assert!(text.len() <= NOTIFY_LIMIT, "{} bytes", text.len());
        let v: Value = serde_json::from_str(text).unwrap();
        let obj = v.as_object().unwrap();
        assert_eq!(obj.len(), KEYS.len());
        for key in KEYS {
            assert!(obj.contains_key(key), "{key} missing");
        }
        assert_eq!(v["alert_id"], 42);
        assert_eq!(v["event"], "escalated");
        assert_eq!(v["finding"], "retained_wal_high");
        assert_eq!(v["severity"], "critical");
        v
    }

    #[test]
    fn small_payload_is_complete_and_in_contract_order() {
        let detail = json!({ "retained": 5 });
        let text = payload(&fields("retains 5 GB", Some("catch up"), &detail));
        let v = check(&text);
        assert!(text.starts_with(r#"{"alert_id":42,"event":"escalated","subject":"slot:peerdb""#));
        assert_eq!(v["subject"], "slot:peerdb");
        assert_eq!(v["time"], "2024-05-01T12:00:00.123456+00:00");
        assert_eq!(v["summary"], "retains 5 GB");
        assert_eq!(v["remediation"], "catch up");
        assert_eq!(v["detail"], detail);
        let none = check(&payload(&fields("s", None, &detail)));
        assert_eq!(none["remediation"], Value::Null);
    }

    #[test]
    fn huge_detail_is_replaced_by_its_size() {
        let detail = json!({ "rows": vec!["ü".repeat(100); 200] });
        let original = serde_json::to_string(&detail).unwrap().len();
        let v = check(&payload(&fields("retains 5 GB", Some("catch up"), &detail)));
        assert_eq!(v["detail"], json!({ "truncated": true, "bytes": original }));
        assert_eq!(v["summary"], "retains 5 GB", "text kept whole");
        assert_eq!(v["remediation"], "catch up");
    }

    #[test]
    fn huge_multibyte_texts_are_cut_on_char_boundaries() {
        let summary = "日本語🦀é".repeat(3000);
        let remediation = "ü🦀".repeat(5000);
        let detail = json!({ "blob": "€".repeat(50_000) });
        let text = payload(&fields(&summary, Some(&remediation), &detail));
        let v = check(&text);
        assert_eq!(v["detail"]["truncated"], true);
        for (got, original) in [(&v["summary"], &summary), (&v["remediation"], &remediation)] {
            let got = got.as_str().unwrap();
            let kept = got.strip_suffix('…').expect("ends with an ellipsis");
            assert!(original.starts_with(kept));
            assert!(
                kept.len() > 3000,
                "both texts get a fair share: {}",
                kept.len()
            );
        }
        assert!(
            text.len() > NOTIFY_LIMIT - 20,
            "room is used: {}",
            text.len()
        );
    }

    #[test]
    fn short_remediation_is_kept_whole_when_the_summary_is_cut() {
        let summary = "x".repeat(20_000);
        let detail = json!(null);
        let v = check(&payload(&fields(&summary, Some("catch up"), &detail)));
        assert_eq!(v["remediation"], "catch up");
        assert!(v["summary"].as_str().unwrap().ends_with('…'));
        assert_eq!(
            v["detail"],
            Value::Null,
            "a smaller detail than the marker stays"
        );
    }

    #[test]
    fn escaping_is_counted() {
        // Each control character becomes 6 bytes (\u0001), each quote 2.
        let summary = "\u{1}\"".repeat(4000);
        let remediation = "\n\\".repeat(4000);
        let detail = json!({});
        let v = check(&payload(&fields(&summary, Some(&remediation), &detail)));
        let kept = v["summary"].as_str().unwrap().strip_suffix('…').unwrap();
        // About 3900 escaped bytes of summary: 8 per pair of raw bytes.
        assert!(
            summary.starts_with(kept) && kept.len() > 900,
            "{}",
            kept.len()
        );
    }

    #[test]
    fn limit_boundary_is_exact() {
        let detail = json!({ "k": 1 });
        let base = payload(&fields("", None, &detail)).len();
        let fits = "a".repeat(NOTIFY_LIMIT - base);
        let text = payload(&fields(&fits, None, &detail));
        assert_eq!(text.len(), NOTIFY_LIMIT);
        assert_eq!(check(&text)["summary"], fits.as_str());

        let over = "a".repeat(NOTIFY_LIMIT - base + 1);
        let v = check(&payload(&fields(&over, None, &detail)));
        assert!(v["summary"].as_str().unwrap().ends_with('…'));
        assert_eq!(v["detail"], detail);
    }

    #[test]
    fn huge_required_fields_are_cut_but_never_dropped() {
        let subject = format!("mirror:{}", "ß".repeat(10_000));
        let time = "2024-05-01T12:00:00+00:00";
        let detail = json!({ "x": "y".repeat(9000) });
        let mut f = fields("retains 5 GB", Some("catch up"), &detail);
        f.subject = &subject;
        f.time = time;
        let v = check(&payload(&f));
        assert_eq!(v["time"], time, "the short time keeps its full length");
        let kept = v["subject"].as_str().unwrap().strip_suffix('…').unwrap();
        assert!(subject.starts_with(kept) && kept.len() > 7000);
        assert_eq!(v["summary"], "retains 5 GB");
    }

    #[test]
    fn fair_shares_fill_short_texts_first() {
        assert_eq!(fair_shares(&[10, 10], 100), [10, 10]);
        assert_eq!(fair_shares(&[10, 500], 100), [10, 90]);
        assert_eq!(fair_shares(&[500, 500], 100), [50, 50]);
        assert_eq!(fair_shares(&[500, 5, 500], 101), [48, 5, 48]);
        assert_eq!(fair_shares(&[7], 0), [0]);
    }

    #[test]
    fn fit_respects_the_budget_and_char_boundaries() {
        assert_eq!(fit("abc", 3), "abc");
        assert_eq!(fit("abcd", 3), "…");
        assert_eq!(fit("abcd", 2), "");
        assert_eq!(fit("abcdef", 5), "ab…");
        assert_eq!(fit("ééé", 6), "ééé");
        assert_eq!(fit("éééé", 6), "é…", "no half character");
        assert_eq!(fit("éééé", 7), "éé…");
    }
}
