//! A slot's consumer sessions and the errors that end them: `crash_loop` and
//! `consumer_error`, and which kind of `stalled` a connected consumer is.
//!
//! The server's own processes record what happens to a slot's consumers (a log hook in every
//! walsender and decoding backend, an exit callback in every walsender; see
//! `src/slots/consumers`) as [`ConsumerEvent`]s; the worker and `cdc_health()` read them back
//! and [`summarize`] them per slot. The parts the log hook calls ([`event_class`],
//! [`replication_command_slot`]) allocate nothing: they run inside error reporting.

use serde::Serialize;

use crate::finding::{Finding, FindingCode, Severity};
use crate::json::Json;
use crate::lsn::format_lsn;
use crate::units::{pretty_duration, utc_text};

/// Bytes of an error message kept (cut on a character boundary by the reader).
pub const MESSAGE_BYTES: usize = 160;

/// Sessions ended in the window, none confirming anything, that make a crash loop.
pub const CRASH_LOOP_SESSIONS: u32 = 3;

/// Times the same server error must end a consumer's sessions (or refuse it) in the window.
pub const REPEATED_ERROR_COUNT: u32 = 2;

/// What one recorded event says about a slot's consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    /// The server refused or ended the session with an ERROR or FATAL.
    Error,
    /// The walsender gave up on a consumer that stopped answering (`wal_sender_timeout`).
    ReplicationTimeout,
    /// The connection to the consumer broke or it went away mid-session (the server's
    /// "could not receive data from client" and the like, logged for the server only).
    ClientGone,
    /// A walsender ended; `started_at` and `confirmed_lsn` say how long and how far.
    SessionEnd,
    /// A WARNING the consumer's walsender reported and went on (PostgreSQL 18 warns of a
    /// publication that does not exist, "skipped loading publication", and streams without it).
    Warning,
}

impl EventClass {
    pub fn code(self) -> u8 {
        match self {
            Self::Error => 1,
            Self::ReplicationTimeout => 2,
            Self::ClientGone => 3,
            Self::SessionEnd => 4,
            Self::Warning => 5,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        [
            Self::Error,
            Self::ReplicationTimeout,
            Self::ClientGone,
            Self::SessionEnd,
            Self::Warning,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }

    /// The server ended the session (as opposed to the consumer going away).
    fn server_ended(self) -> bool {
        matches!(self, Self::Error | Self::ReplicationTimeout)
    }
}

/// The untranslated message of the walsender's timeout (`errmsg` format, the same in 15-18).
const REPLICATION_TIMEOUT: &[u8] = b"terminating walsender process due to replication timeout";

/// Which reports of a walsender or decoding backend to record, from the report's level and
/// untranslated message (`ErrorData.message_id`); `None` for the rest, which is nearly every
/// report. `error_or_fatal`: level ERROR or above; `server_only`: COMMERROR/LOG_SERVER_ONLY;
/// `warning`: WARNING. Allocates nothing.
pub fn event_class(
    error_or_fatal: bool,
    server_only: bool,
    warning: bool,
    message_id: &[u8],
) -> Option<EventClass> {
    if warning {
        Some(EventClass::Warning)
    } else if error_or_fatal {
        Some(EventClass::Error)
    } else if server_only && message_id == REPLICATION_TIMEOUT {
        Some(EventClass::ReplicationTimeout)
    } else if server_only {
        Some(EventClass::ClientGone)
    } else {
        None
    }
}

/// The slot a replication command names (`START_REPLICATION SLOT name ...`), for a report
/// made before the walsender acquired it (the slot is in use, does not exist, is lost).
/// Slot names are lower-case letters, digits and underscores, so a quoted name is the same
/// bytes between its quotes. Allocates nothing.
pub fn replication_command_slot(command: &[u8]) -> Option<&[u8]> {
    let mut words = command
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    if !words.next()?.eq_ignore_ascii_case(b"START_REPLICATION") {
        return None;
    }
    if !words.next()?.eq_ignore_ascii_case(b"SLOT") {
        return None;
    }
    let name = words.next()?;
    let name = match name {
        [b'"', inner @ .., b'"'] => inner,
        _ => name,
    };
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    valid.then_some(name)
}

/// `message` cut to at most `max` bytes, backing off to a UTF-8 character boundary so a cut
/// character does not turn into a replacement mark. Allocates nothing.
pub fn cut_message(message: &[u8], max: usize) -> &[u8] {
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    // Continuation bytes (10xxxxxx) belong to the character before them.
    while end > 0 && message[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &message[..end]
}

/// One recorded event, as the reader hands it to the rules.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerEvent {
    /// Unix seconds.
    pub at: f64,
    /// The recording process (the walsender).
    pub pid: i32,
    pub class: EventClass,
    /// Five characters; `00000` for a report without one (the timeout, a session end).
    pub sqlstate: [u8; 5],
    /// The report's message, cut to [`MESSAGE_BYTES`]; empty for a session end.
    pub message: String,
    /// When the walsender started (session ends).
    pub started_at: Option<f64>,
    /// The slot's confirmed position when the event was recorded, if the process held it.
    pub confirmed_lsn: Option<u64>,
}

impl ConsumerEvent {
    pub fn sqlstate_text(&self) -> &str {
        std::str::from_utf8(&self.sqlstate).unwrap_or("?????")
    }
}

/// The consumer connected now, from `pg_stat_replication` (its walsender is the slot's
/// `active_pid`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LiveSession {
    /// `backend_start`, unix seconds.
    pub started_at: Option<f64>,
    /// `reply_time`: the consumer's last status message.
    pub reply_at: Option<f64>,
    pub sent_lsn: Option<u64>,
    pub write_lsn: Option<u64>,
    pub flush_lsn: Option<u64>,
}

/// The error that ended sessions (or refused the consumer), as `detail->'consumer'` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LastError {
    pub sqlstate: String,
    pub message: String,
    /// Unix seconds.
    pub at: f64,
    /// Events with this SQLSTATE (and class) in the window.
    pub count: u32,
    /// The first of them.
    #[serde(skip)]
    pub first_at: f64,
    #[serde(skip)]
    pub class: EventClass,
    /// The slot's confirmed position when it happened, if known.
    #[serde(skip)]
    pub confirmed_lsn: Option<u64>,
}

/// One slot's consumer over the window.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ConsumerSummary {
    /// Sessions in the window: those that ended in it, and the one connected now.
    pub sessions: u32,
    /// Sessions that ended in the window.
    pub ended_sessions: u32,
    /// Of those, the ones known to have confirmed nothing.
    pub unconfirmed_sessions: u32,
    /// Of those, the ones known to have confirmed something.
    pub confirmed_sessions: u32,
    pub last_connect_at: Option<f64>,
    pub last_disconnect_at: Option<f64>,
    pub last_reply_at: Option<f64>,
    /// How long the last ended session lasted.
    pub last_session_secs: Option<f64>,
    /// When the first ended session in the window ended.
    #[serde(skip)]
    pub first_end_at: Option<f64>,
    /// The consumer's position when the last recorded session ended.
    #[serde(skip)]
    pub last_end_position: Option<u64>,
    pub last_error: Option<LastError>,
    /// The last WARNING its walsender reported (and the count with that SQLSTATE).
    pub last_warning: Option<LastError>,
    /// Reports of the consumer going away mid-session (not an error of the server's).
    pub client_gone: u32,
    /// Reports that ended or refused a session in the window, by SQLSTATE (`timeout` for the
    /// walsender's replication timeout), in order of first appearance.
    #[serde(skip)]
    pub errors: Vec<(String, u32)>,
}

/// Folds `events` (this slot's, any order) into a summary of the `window_secs` before `now`.
/// `confirmed_before`: the slot's confirmed position before the oldest session recorded, if
/// known (the first session is compared with it; each later one with the one before).
pub fn summarize(
    events: &[ConsumerEvent],
    live: Option<&LiveSession>,
    confirmed_before: Option<u64>,
    now: f64,
    window_secs: f64,
) -> ConsumerSummary {
    let since = now - window_secs;
    let mut ordered: Vec<&ConsumerEvent> = events.iter().collect();
    ordered.sort_by(|a, b| a.at.total_cmp(&b.at));

    let mut s = ConsumerSummary::default();
    let mut previous_confirmed = confirmed_before;
    for e in ordered.iter().filter(|e| e.class == EventClass::SessionEnd) {
        let confirmed = match (previous_confirmed, e.confirmed_lsn) {
            (Some(before), Some(after)) => Some(after > before),
            _ => None,
        };
        if e.confirmed_lsn.is_some() {
            previous_confirmed = e.confirmed_lsn;
            s.last_end_position = e.confirmed_lsn;
        }
        s.last_disconnect_at = Some(e.at);
        s.last_connect_at = max_time(s.last_connect_at, e.started_at);
        s.last_session_secs = e.started_at.map(|start| (e.at - start).max(0.0));
        if e.at < since {
            continue;
        }
        s.ended_sessions += 1;
        s.first_end_at.get_or_insert(e.at);
        match confirmed {
            Some(true) => s.confirmed_sessions += 1,
            Some(false) => s.unconfirmed_sessions += 1,
            None => {}
        }
    }
    s.sessions = s.ended_sessions;
    if let Some(live) = live {
        s.sessions += 1;
        s.last_connect_at = max_time(s.last_connect_at, live.started_at);
        s.last_reply_at = live.reply_at;
    }

    let in_window = || ordered.iter().filter(|e| e.at >= since);
    s.client_gone = in_window()
        .filter(|e| e.class == EventClass::ClientGone)
        .count() as u32;
    for e in in_window().filter(|e| e.class.server_ended()) {
        let label = match e.class {
            EventClass::ReplicationTimeout => "timeout",
            _ => e.sqlstate_text(),
        };
        match s.errors.iter_mut().find(|(l, _)| l == label) {
            Some((_, n)) => *n += 1,
            None => s.errors.push((label.to_string(), 1)),
        }
    }
    s.last_warning = last_of(&ordered, since, |c| c == EventClass::Warning);
    s.last_error = last_of(&ordered, since, EventClass::server_ended);
    s
}

/// The last event of a class `pick` accepts in the window, counted with the events of its
/// class and SQLSTATE.
fn last_of(
    ordered: &[&ConsumerEvent],
    since: f64,
    pick: impl Fn(EventClass) -> bool,
) -> Option<LastError> {
    let in_window = || ordered.iter().filter(|e| e.at >= since && pick(e.class));
    let last = in_window().last()?;
    let same = || in_window().filter(|e| e.class == last.class && e.sqlstate == last.sqlstate);
    Some(LastError {
        sqlstate: last.sqlstate_text().to_string(),
        message: last.message.clone(),
        at: last.at,
        count: same().count() as u32,
        first_at: same().next().map_or(last.at, |e| e.at),
        class: last.class,
        confirmed_lsn: last.confirmed_lsn,
    })
}

fn max_time(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// `detail->'consumer'`: the sessions in the window, the connected one's positions and last
/// reply, and the last error the server ended a session with (its message too: the detail is
/// pg_monitor's; the public NOTIFY payload keeps only the counts and the SQLSTATE).
pub fn detail(s: &ConsumerSummary, live: Option<&LiveSession>) -> Json {
    let time = |t: Option<f64>| Json::from(t.map(utc_text));
    let lsn = |l: Option<u64>| Json::from(l.map(format_lsn));
    let last_error = s.last_error.as_ref().map_or(Json::Null, |e| {
        Json::object([
            ("sqlstate", e.sqlstate.as_str().into()),
            ("message", e.message.as_str().into()),
            ("at", utc_text(e.at).into()),
            ("count", e.count.into()),
            (
                "ended_by",
                match e.class {
                    EventClass::ReplicationTimeout => "replication_timeout",
                    _ => "error",
                }
                .into(),
            ),
        ])
    });
    Json::object([
        ("sessions", s.sessions.into()),
        ("ended_sessions", s.ended_sessions.into()),
        ("unconfirmed_sessions", s.unconfirmed_sessions.into()),
        ("last_connect_at", time(s.last_connect_at)),
        ("last_disconnect_at", time(s.last_disconnect_at)),
        ("last_session_secs", s.last_session_secs.into()),
        ("last_reply_at", time(s.last_reply_at)),
        ("sent_lsn", lsn(live.and_then(|l| l.sent_lsn))),
        ("write_lsn", lsn(live.and_then(|l| l.write_lsn))),
        ("flush_lsn", lsn(live.and_then(|l| l.flush_lsn))),
        ("client_gone", s.client_gone.into()),
        ("last_error", last_error),
        (
            "last_warning",
            s.last_warning.as_ref().map_or(Json::Null, |w| {
                Json::object([
                    ("sqlstate", w.sqlstate.as_str().into()),
                    ("message", w.message.as_str().into()),
                    ("at", utc_text(w.at).into()),
                    ("count", w.count.into()),
                ])
            }),
        ),
    ])
}

/// `crash_loop` and `consumer_error` for one slot's consumer.
pub fn consumer_findings(
    s: &ConsumerSummary,
    now: f64,
    window_secs: f64,
    stall_after_secs: f64,
    confirmed_now: Option<u64>,
    lost: bool,
) -> Vec<Finding> {
    let severity_since = |since: f64| {
        if now - since >= 4.0 * stall_after_secs {
            Severity::Critical
        } else {
            Severity::Warning
        }
    };
    let mut findings = Vec::new();
    let repeated = s.last_error.as_ref().filter(|e| {
        e.count >= REPEATED_ERROR_COUNT
            // Resolved once the consumer confirmed something after it.
            && !progressed_since(e.confirmed_lsn, confirmed_now)
    });
    if let Some(e) = repeated {
        let what = match e.class {
            EventClass::ReplicationTimeout => "the server timed the consumer out".to_string(),
            _ => format!(
                "the server refused or ended its session with SQLSTATE {}",
                e.sqlstate
            ),
        };
        findings.push(
            Finding::new(
                FindingCode::ConsumerError,
                severity_since(e.first_at),
                format!(
                    "{what} {} times in the last {}, last {} ago",
                    e.count,
                    pretty_duration(window_secs),
                    pretty_duration((now - e.at).max(0.0))
                ),
            )
            .with_remedy(error_remedy(e, lost)),
        );
    }
    let looping = s.ended_sessions >= CRASH_LOOP_SESSIONS
        && s.confirmed_sessions == 0
        && s.unconfirmed_sessions >= CRASH_LOOP_SESSIONS - 1
        && !progressed_since(s.last_end_position, confirmed_now);
    // A loop that one repeated server error explains is that error's finding.
    if looping && repeated.is_none() && !lost {
        let lasted = s
            .last_session_secs
            .map(|secs| format!(", the last after {}", pretty_duration(secs)))
            .unwrap_or_default();
        findings.push(Finding::new(
            FindingCode::CrashLoop,
            severity_since(s.first_end_at.unwrap_or(now)),
            format!(
                "{} consumer sessions ended in the last {} without confirming anything{lasted}",
                s.ended_sessions,
                pretty_duration(window_secs)
            ),
        ));
    }
    findings
}

/// The consumer confirmed something after a moment at which it was at `then`.
fn progressed_since(then: Option<u64>, current: Option<u64>) -> bool {
    matches!((then, current), (Some(then), Some(current)) if current > then)
}

/// What to do about a consumer that keeps failing with `e`.
pub fn error_remedy(e: &LastError, lost: bool) -> String {
    if e.class == EventClass::ReplicationTimeout {
        return "The consumer stopped answering for wal_sender_timeout and the server ended its \
                session: it hangs or the network drops its packets. Check the consumer process \
                and its host; raise wal_sender_timeout only if the consumer is slow by design."
            .to_string();
    }
    match e.sqlstate.as_str() {
        "55000" if lost => "The consumer keeps retrying a slot that is lost: it can never \
                            resume. Resync now: drop the slot, create it again and backfill \
                            the tables (PeerDB: resync the mirror; Debezium: a new snapshot)."
            .to_string(),
        "55006" => "Two consumers use one slot: the second is refused while the first holds \
                    it (the message names the holder's pid). Stop the duplicate consumer, or \
                    give it a slot of its own."
            .to_string(),
        "42704" => "The consumer names something that does not exist: a publication in \
                    publication_names (CREATE PUBLICATION, or fix the consumer's \
                    configuration) or the slot itself (create it). The message names it."
            .to_string(),
        "53200" => "Decoding ran out of memory: lower logical_decoding_work_mem so large \
                    transactions spill sooner, or give the server more memory."
            .to_string(),
        "57P01" | "57P02" | "57P03" => "The consumer's session is terminated from outside \
                    (pg_terminate_backend, a shutdown or a cancel): find what ends it."
            .to_string(),
        "XX000" => "Decoding fails on the same change every time, so the consumer cannot get \
                    past it: read the message, update PostgreSQL to the latest minor release, \
                    and resync the slot if the error persists."
            .to_string(),
        code => format!(
            "The consumer's sessions keep ending with SQLSTATE {code}: see \
             detail->'consumer'->'last_error' for the message, and fix its cause."
        ),
    }
}

/// Which kind of stall a connected consumer is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallKind {
    /// It answers keepalives, but its flush position does not move: its own tracking of
    /// what it flushed is stuck.
    Answering,
    /// It has not answered for longer than a stall: hung, or the network is gone.
    Silent,
}

/// Consumers answer every 10 s by default (pg_recvlogical, psycopg2, subscribers'
/// `wal_receiver_status_interval`): a reply older than this is silence, not a long interval.
pub const SILENT_AFTER_SECS: f64 = 30.0;

/// Tells the two stalls apart by the consumer's last reply; `None` when it is not known.
pub fn stall_kind(live: &LiveSession, now: f64, stall_after_secs: f64) -> Option<StallKind> {
    let reply_at = live.reply_at?;
    Some(
        if now - reply_at > stall_after_secs.max(SILENT_AFTER_SECS) {
            StallKind::Silent
        } else {
            StallKind::Answering
        },
    )
}

/// The remedy of a `stalled` finding of that kind.
pub fn stall_remedy(kind: StallKind, now: f64, live: &LiveSession) -> String {
    match kind {
        StallKind::Answering => "The consumer answers the server's keepalives but its flush \
            position does not move: it receives changes and never reports them flushed (its \
            flush tracking is stuck, or it waits on its destination). Check the consumer's \
            own logs and its destination; restarting it resumes from the slot."
            .to_string(),
        StallKind::Silent => format!(
            "The consumer has not answered the server for {}: it hangs or the network is \
             gone. Check the consumer process and its host; with wal_sender_timeout = 0 the \
             server keeps such a session forever.",
            pretty_duration(live.reply_at.map_or(0.0, |at| (now - at).max(0.0)))
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(at: f64, pid: i32, started: f64, confirmed: u64) -> ConsumerEvent {
        ConsumerEvent {
            at,
            pid,
            class: EventClass::SessionEnd,
            sqlstate: *b"00000",
            message: String::new(),
            started_at: Some(started),
            confirmed_lsn: Some(confirmed),
        }
    }

    fn error(at: f64, pid: i32, sqlstate: &[u8; 5], message: &str) -> ConsumerEvent {
        ConsumerEvent {
            at,
            pid,
            class: EventClass::Error,
            sqlstate: *sqlstate,
            message: message.to_string(),
            started_at: None,
            confirmed_lsn: None,
        }
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn the_slot_is_read_from_start_replication() {
        let cases: [(&[u8], Option<&[u8]>); 7] = [
            (
                b"START_REPLICATION SLOT peerdb_1 LOGICAL 0/0",
                Some(b"peerdb_1"),
            ),
            (
                b"start_replication  slot \"s\" LOGICAL 0/0 (\"proto_version\" '1')",
                Some(b"s"),
            ),
            (
                b"START_REPLICATION SLOT phys PHYSICAL 0/3000000 TIMELINE 1",
                Some(b"phys"),
            ),
            (b"START_REPLICATION 0/3000000", None),
            (b"IDENTIFY_SYSTEM", None),
            (b"START_REPLICATION SLOT Bad-Name LOGICAL 0/0", None),
            (b"", None),
        ];
        for (command, slot) in cases {
            assert_eq!(replication_command_slot(command), slot, "{command:?}");
        }
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(cut_message(b"short", 160), b"short");
        assert_eq!(cut_message("abcé".as_bytes(), 4), b"abc");
        assert_eq!(cut_message("abcé".as_bytes(), 5), "abcé".as_bytes());
        assert_eq!(cut_message("€€".as_bytes(), 4), "€".as_bytes());
    }

    #[test]
    fn reports_are_recorded_by_level_and_the_timeout_by_its_words() {
        assert_eq!(
            event_class(true, false, false, b"anything"),
            Some(EventClass::Error)
        );
        assert_eq!(
            event_class(false, true, false, REPLICATION_TIMEOUT),
            Some(EventClass::ReplicationTimeout)
        );
        assert_eq!(
            event_class(
                false,
                true,
                false,
                b"could not receive data from client: %m"
            ),
            Some(EventClass::ClientGone)
        );
        assert_eq!(
            event_class(
                false,
                false,
                false,
                b"starting logical decoding for slot \"%s\""
            ),
            None
        );
    }

    #[test]
    fn a_crash_loop_is_three_sessions_that_confirmed_nothing() {
        // Connect, read for 8 s, confirm nothing, die; back 2 s later.
        let events: Vec<_> = (0..3)
            .map(|i| {
                let start = 100.0 + 10.0 * f64::from(i);
                end(start + 8.0, 1000 + i, start, 5000)
            })
            .collect();
        let s = summarize(&events[..2], None, Some(5000), 130.0, 600.0);
        assert!(consumer_findings(&s, 130.0, 600.0, 120.0, Some(5000), false).is_empty());
        let s = summarize(&events, None, Some(5000), 130.0, 600.0);
        assert_eq!((s.sessions, s.unconfirmed_sessions), (3, 3));
        let findings = consumer_findings(&s, 130.0, 600.0, 120.0, Some(5000), false);
        assert_eq!(codes(&findings), ["crash_loop"]);
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(
            findings[0].summary.contains("3 consumer sessions"),
            "{}",
            findings[0].summary
        );
        assert!(
            findings[0].summary.contains("after 8s"),
            "{}",
            findings[0].summary
        );
        // Still looping 4 stalls later: critical.
        let later: Vec<_> = (0..50)
            .map(|i| {
                let start = 100.0 + 10.0 * f64::from(i);
                end(start + 8.0, 1000 + i, start, 5000)
            })
            .collect();
        let s = summarize(&later, None, Some(5000), 600.0, 600.0);
        let findings = consumer_findings(&s, 600.0, 600.0, 120.0, Some(5000), false);
        assert_eq!(findings[0].severity, Severity::Critical);
    }

    #[test]
    fn a_consumer_that_confirms_a_little_each_time_is_no_crash_loop() {
        let events: Vec<_> = (0..6)
            .map(|i| {
                let start = 100.0 + 10.0 * f64::from(i);
                end(
                    start + 8.0,
                    1000 + i,
                    start,
                    5000 + 10 * u64::try_from(i).unwrap(),
                )
            })
            .collect();
        let s = summarize(&events, None, Some(4000), 200.0, 600.0);
        assert_eq!(s.confirmed_sessions, 6);
        assert!(consumer_findings(&s, 200.0, 600.0, 120.0, Some(5050), false).is_empty());
    }

    #[test]
    fn sessions_outside_the_window_do_not_count_but_set_the_baseline() {
        let events = [
            end(10.0, 1, 0.0, 100),
            end(700.0, 2, 690.0, 100),
            end(710.0, 3, 701.0, 100),
        ];
        let s = summarize(&events, None, None, 720.0, 600.0);
        // The first is out of the window; the two in it confirmed nothing past it.
        assert_eq!((s.ended_sessions, s.unconfirmed_sessions), (2, 2));
        assert_eq!(s.last_connect_at, Some(701.0));
        assert_eq!(s.last_disconnect_at, Some(710.0));
    }

    #[test]
    fn a_live_session_counts_and_gives_the_last_reply() {
        let live = LiveSession {
            started_at: Some(50.0),
            reply_at: Some(99.0),
            ..LiveSession::default()
        };
        let s = summarize(
            &[end(40.0, 1, 30.0, 10)],
            Some(&live),
            Some(5),
            100.0,
            600.0,
        );
        assert_eq!((s.sessions, s.ended_sessions), (2, 1));
        assert_eq!(
            (s.last_connect_at, s.last_reply_at),
            (Some(50.0), Some(99.0))
        );
    }

    #[test]
    fn the_same_error_twice_is_a_consumer_error_with_its_remedy() {
        let events = [
            error(100.0, 7, b"42704", "publication \"nope\" does not exist"),
            end(100.1, 7, 99.0, 10),
            error(105.0, 8, b"42704", "publication \"nope\" does not exist"),
            end(105.1, 8, 104.0, 10),
        ];
        let s = summarize(&events[..2], None, Some(10), 106.0, 600.0);
        assert!(consumer_findings(&s, 106.0, 600.0, 120.0, Some(10), false).is_empty());
        let s = summarize(&events, None, Some(10), 106.0, 600.0);
        let e = s.last_error.as_ref().unwrap();
        assert_eq!((e.sqlstate.as_str(), e.count, e.at), ("42704", 2, 105.0));
        assert_eq!(s.errors, [("42704".to_string(), 2)]);
        let findings = consumer_findings(&s, 106.0, 600.0, 120.0, Some(10), false);
        assert_eq!(codes(&findings), ["consumer_error"]);
        assert!(
            findings[0].summary.contains("SQLSTATE 42704 2 times"),
            "{}",
            findings[0].summary
        );
        assert!(findings[0]
            .remedy
            .as_deref()
            .unwrap()
            .contains("publication"));
    }

    #[test]
    fn a_repeated_error_explains_the_loop_it_causes() {
        // Three sessions, each ended by the same error: one finding, the error's.
        let mut events = Vec::new();
        for i in 0..3 {
            let at = 100.0 + 5.0 * f64::from(i);
            events.push(ConsumerEvent {
                confirmed_lsn: Some(10),
                ..error(at, i, b"XX000", "could not open relation with OID 0")
            });
            events.push(end(at + 0.1, i, at - 1.0, 10));
        }
        let s = summarize(&events, None, Some(10), 120.0, 600.0);
        let findings = consumer_findings(&s, 120.0, 600.0, 120.0, Some(10), false);
        assert_eq!(codes(&findings), ["consumer_error"]);
        // The consumer got past it: resolved.
        assert!(consumer_findings(&s, 120.0, 600.0, 120.0, Some(11), false).is_empty());
    }

    #[test]
    fn remedies_name_what_each_common_error_means() {
        let e = |sqlstate: &str, class| LastError {
            sqlstate: sqlstate.to_string(),
            message: String::new(),
            at: 0.0,
            count: 2,
            first_at: 0.0,
            class,
            confirmed_lsn: None,
        };
        assert!(error_remedy(&e("55000", EventClass::Error), true).contains("Resync now"));
        assert!(!error_remedy(&e("55000", EventClass::Error), false).contains("Resync now"));
        assert!(error_remedy(&e("55006", EventClass::Error), false).contains("Two consumers"));
        assert!(
            error_remedy(&e("00000", EventClass::ReplicationTimeout), false)
                .contains("wal_sender_timeout")
        );
        assert!(error_remedy(&e("22P02", EventClass::Error), false).contains("SQLSTATE 22P02"));
    }

    #[test]
    fn a_warning_is_shown_but_ends_nothing() {
        assert_eq!(
            event_class(false, false, true, b"skipped loading publication \"%s\""),
            Some(EventClass::Warning)
        );
        let w = |at| ConsumerEvent {
            class: EventClass::Warning,
            ..error(at, 1, b"55000", "skipped loading publication \"nope\"")
        };
        let s = summarize(&[w(1.0), w(2.0)], None, None, 10.0, 600.0);
        let warning = s.last_warning.as_ref().unwrap();
        assert_eq!((warning.sqlstate.as_str(), warning.count), ("55000", 2));
        assert!(s.last_error.is_none() && s.errors.is_empty());
        assert!(consumer_findings(&s, 10.0, 600.0, 120.0, None, false).is_empty());
    }

    #[test]
    fn the_consumer_going_away_is_not_a_server_error() {
        let gone = |at| ConsumerEvent {
            class: EventClass::ClientGone,
            ..error(at, 1, b"08006", "could not receive data from client")
        };
        let s = summarize(&[gone(1.0), gone(2.0), gone(3.0)], None, None, 10.0, 600.0);
        assert_eq!((s.client_gone, s.last_error.is_none()), (3, true));
    }

    #[test]
    fn the_detail_names_the_error_with_times_in_utc() {
        let events = [
            error(
                1_796_672_101.0,
                7,
                b"55006",
                "replication slot \"s\" is active for PID 9",
            ),
            end(1_796_672_101.5, 7, 1_796_672_100.0, 10),
        ];
        let s = summarize(&events, None, Some(10), 1_796_672_110.0, 600.0);
        let d = serde_json::Value::from(detail(&s, None));
        assert_eq!(d["last_error"]["sqlstate"], "55006");
        assert_eq!(d["last_error"]["count"], 1);
        assert_eq!(d["last_error"]["at"], "2026-12-07T19:35:01.000Z");
        assert_eq!(d["last_disconnect_at"], "2026-12-07T19:35:01.500Z");
        assert_eq!(d["last_connect_at"], "2026-12-07T19:35:00.000Z");
        assert_eq!(d["sessions"], 1);
        assert!(d["last_reply_at"].is_null());
    }

    #[test]
    fn stalls_are_told_apart_by_the_last_reply() {
        let live = |reply| LiveSession {
            reply_at: reply,
            ..LiveSession::default()
        };
        // A consumer answering every 10 s is not silent under a short stall_after.
        assert_eq!(
            stall_kind(&live(Some(90.0)), 100.0, 5.0),
            Some(StallKind::Answering)
        );
        assert_eq!(
            stall_kind(&live(Some(60.0)), 100.0, 5.0),
            Some(StallKind::Silent)
        );
        assert_eq!(
            stall_kind(&live(Some(95.0)), 100.0, 30.0),
            Some(StallKind::Answering)
        );
        assert_eq!(
            stall_kind(&live(Some(50.0)), 100.0, 30.0),
            Some(StallKind::Silent)
        );
        assert_eq!(stall_kind(&live(None), 100.0, 30.0), None);
        assert!(stall_remedy(StallKind::Silent, 100.0, &live(Some(50.0))).contains("50s"));
    }
}
