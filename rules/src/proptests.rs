//! Property tests: generated inputs, checked against what must hold for every one of them.
//!
//! Deterministic: every case draws from its own small generator seeded by the target's name
//! and the case number, so a failure names the case that reproduces it. Each target runs a
//! few hundred to a few thousand cases by default (seconds in a debug build); set
//! `CDC_HEALTH_PROPTEST_CASES` for a long run, e.g.
//!
//! ```text
//! CDC_HEALTH_PROPTEST_CASES=1000000 cargo test -p cdc_health_rules --release -- proptest --nocapture
//! ```
//!
//! Every target prints how many cases it ran and how long they took.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use serde_json::{json, Value};

use crate::alerts::{
    payload, transitions, Action, AlertPolicy, Event, Observed, OpenAlert, PayloadFields,
    ResolvedAlert, NOTIFY_LIMIT,
};
use crate::clickhouse::{read_duration, RowReader, DEFAULT_MAX_LINE_BYTES, MAX_DURATION};
use crate::finding::{Finding, FindingCode, Severity};
use crate::history::{forecast, history_findings, HistoryLimits, Sample, SlotTrack};
use crate::lsn::{format_lsn, parse_lsn};
use crate::observation::WalStatus;
use crate::units::{pretty_bytes, pretty_duration};

/// SplitMix64: a few lines, fast, and plenty random for test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `0..n`; `n` must not be 0.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Random bytes at random magnitudes: small numbers and edges come up often.
    fn magnitude(&mut self) -> u64 {
        match self.below(4) {
            0 => self.next(),
            1 => self.next() >> self.below(64),
            2 => *self.pick(&[0, 1, 1023, 1024, 1025, u64::MAX, u64::MAX / 2, 1 << 32]),
            _ => self.next() % 100_000,
        }
    }
}

/// Cases per target: `CDC_HEALTH_PROPTEST_CASES`, or `default`.
fn cases(default: u64) -> u64 {
    std::env::var("CDC_HEALTH_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Runs `check` once per case, each with a generator seeded by `name` and the case number;
/// a failure names the case.
fn run(name: &str, default_cases: u64, mut check: impl FnMut(&mut Rng)) {
    let cases = cases(default_cases);
    // FNV-1a of the name: targets draw different inputs.
    let base = name.bytes().fold(0xCBF2_9CE4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    });
    let started = Instant::now();
    for case in 0..cases {
        let seed = base ^ case.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let mut rng = Rng(seed);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&mut rng))) {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{name}: case {case} (seed {seed:#x}) failed: {why}");
        }
    }
    eprintln!("{name}: {cases} cases in {:.2?}", started.elapsed());
}

// --- the ClickHouse answer reader ---

type Row = Vec<Option<String>>;

/// Everything a reader made of an answer: header, rows, and how it ended.
#[derive(Debug, Clone, PartialEq)]
struct Outcome {
    names: Option<Vec<String>>,
    types: Option<Vec<String>>,
    rows: Vec<Row>,
    end: Result<(), String>,
}

#[derive(Clone, Copy)]
struct ReaderSetup {
    max_line: usize,
    tag: Option<&'static str>,
}

impl ReaderSetup {
    fn reader(&self) -> RowReader {
        let mut r = RowReader::new(self.max_line);
        r.set_exception_tag(self.tag);
        r
    }

    fn random(rng: &mut Rng) -> Self {
        ReaderSetup {
            max_line: *rng.pick(&[1024, DEFAULT_MAX_LINE_BYTES]),
            tag: *rng.pick(&[None, Some(TAG)]),
        }
    }
}

const TAG: &str = "qwertyuiopasdfgh";

/// Reads `parts` one after the other; with `drain` the rows are read after every part (as a
/// scan does), else only once all are pushed (as an aggregate may).
fn read_parts(setup: ReaderSetup, parts: &[&[u8]], drain: bool) -> Outcome {
    let mut r = setup.reader();
    let mut rows = Vec::new();
    let mut end = Ok(());
    let read_all = |r: &mut RowReader, rows: &mut Vec<Row>| loop {
        match r.next_row() {
            Ok(Some(row)) => rows.push(row.to_vec()),
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        }
    };
    for part in parts {
        r.push(part);
        if drain {
            end = read_all(&mut r, &mut rows);
            if end.is_err() {
                break;
            }
        }
    }
    if end.is_ok() {
        r.finish();
        end = read_all(&mut r, &mut rows);
    }
    // Errors stick.
    if let Err(e) = &end {
        assert_eq!(
            r.next_row().err().as_ref(),
            Some(e),
            "a second read repeats the error"
        );
    }
    Outcome {
        names: r.names().map(<[String]>::to_vec),
        types: r.types().map(<[String]>::to_vec),
        rows,
        end,
    }
}

/// `answer` cut at `cuts` (sorted positions).
fn split_at<'a>(answer: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(cuts.len() + 1);
    let mut from = 0;
    for &cut in cuts {
        parts.push(&answer[from..cut]);
        from = cut;
    }
    parts.push(&answer[from..]);
    parts
}

/// Reads `answer` whole, byte by byte, in random pieces, and pushed without draining; all
/// must agree. Returns the outcome.
fn read_every_way(rng: &mut Rng, setup: ReaderSetup, answer: &[u8]) -> Outcome {
    let whole = read_parts(setup, &[answer], true);
    let bytes: Vec<&[u8]> = answer.chunks(1).collect();
    assert_eq!(read_parts(setup, &bytes, true), whole, "byte by byte");
    for drain in [true, false] {
        let mut cuts: Vec<usize> = (0..rng.below(6))
            .map(|_| rng.below(answer.len() + 1))
            .collect();
        cuts.sort_unstable();
        let parts = split_at(answer, &cuts);
        assert_eq!(
            read_parts(setup, &parts, drain),
            whole,
            "cut at {cuts:?}, drain {drain}"
        );
    }
    whole
}

/// Bytes that matter to the reader, and some that do not.
const INTERESTING: &[u8] = b"\t\n\r\\N0'_Code: 1.DB::Exception\xc3\xa9\xff";

fn interesting_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            if rng.chance(70) {
                *rng.pick(INTERESTING)
            } else {
                rng.next() as u8
            }
        })
        .collect()
}

const TYPES: &[&str] = &[
    "UInt64",
    "String",
    "Nullable(String)",
    "FixedString(3)",
    "LowCardinality(Nullable(String))",
    "DateTime",
    "Float64",
    "Array(String)",
    "Enum8('a' = 1, 'b' = 2)",
];

fn is_text(ch_type: &str) -> bool {
    ch_type.contains("String") && !ch_type.starts_with("Array") || ch_type.starts_with("Enum")
}

/// TabSeparated escaping, as ClickHouse writes a text value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out
}

/// A value of `ch_type` as ClickHouse would write it, and what the reader must make of it.
fn value_of(rng: &mut Rng, ch_type: &str) -> (String, Option<String>) {
    if ch_type.contains("Nullable") && rng.chance(15) {
        return ("\\N".into(), None);
    }
    if is_text(ch_type) {
        let text = match rng.below(4) {
            // Stored exception text: data, however it reads.
            0 => rng
                .pick(&[
                    "Code: 1. DB::Exception: Unknown identifier 'x'. (UNKNOWN_IDENTIFIER)",
                    "Code: 241. DB::Exception: Memory limit exceeded (MEMORY_LIMIT_EXCEEDED)",
                    "Code: 60, e.displayText() = DB::Exception: Table t doesn't exist.",
                    "__exception__\r\nqwertyuiopasdfgh\r\n",
                ])
                .to_string(),
            1 => String::new(),
            _ => (0..rng.below(8))
                .map(|_| *rng.pick(&['a', 'é', '€', '\t', '\n', '\r', '\\', '\'', '\0', 'N', ' ']))
                .collect(),
        };
        return (escape(&text), Some(text));
    }
    let text = match ch_type {
        "UInt64" => rng.magnitude().to_string(),
        "DateTime" => "2024-01-02 03:04:05".to_string(),
        "Float64" => rng.pick(&["1.5", "-inf", "nan", "0"]).to_string(),
        _ => "['a','b']".to_string(),
    };
    (text.clone(), Some(text))
}

/// A valid answer with its expected outcome (read whole, with `setup`).
fn valid_answer(rng: &mut Rng, setup: ReaderSetup) -> (Vec<u8>, Outcome) {
    let columns = 1 + rng.below(4);
    let names: Vec<String> = (0..columns).map(|i| format!("c{i}")).collect();
    let types: Vec<String> = (0..columns).map(|_| rng.pick(TYPES).to_string()).collect();
    let mut answer = format!("{}\n{}\n", names.join("\t"), types.join("\t")).into_bytes();
    let mut rows = Vec::new();
    for _ in 0..rng.below(5) {
        let (texts, values): (Vec<String>, Row) = types.iter().map(|t| value_of(rng, t)).unzip();
        answer.extend_from_slice(texts.join("\t").as_bytes());
        answer.push(b'\n');
        rows.push(values);
    }
    let mut end = Ok(());
    match rng.below(5) {
        // An exception after the rows, as each kind of server writes it.
        0 => {
            let message =
                "Code: 241. DB::Exception: Memory limit 'q' exceeded. (MEMORY_LIMIT_EXCEEDED)";
            match setup.tag {
                Some(tag) => answer.extend_from_slice(
                    format!(
                        "\r\n__exception__\r\n{tag}\r\n{message}\n{} {tag}\r\n__exception__\r\n",
                        message.len() + 1
                    )
                    .as_bytes(),
                ),
                None => answer.extend_from_slice(format!("{message}\n").as_bytes()),
            }
            end = Err(
                "ClickHouse error 241: Memory limit 'q' exceeded. (MEMORY_LIMIT_EXCEEDED)".into(),
            );
        }
        // No newline after the last row: still a row once the answer ends.
        1 if answer.len() > 1 && answer[answer.len() - 2] != b'\n' => {
            answer.pop();
        }
        _ => {}
    }
    let outcome = Outcome {
        names: Some(names),
        types: Some(types),
        rows,
        end,
    };
    (answer, outcome)
}

#[test]
fn proptest_row_reader_never_panics_and_ignores_chunking_on_random_bytes() {
    run("reader_random_bytes", 3000, |rng| {
        let setup = ReaderSetup::random(rng);
        let mut answer = Vec::new();
        if rng.chance(50) {
            answer.extend_from_slice(b"a\tb\nString\tUInt8\n");
        }
        let len = rng.below(80);
        answer.extend(interesting_bytes(rng, len));
        read_every_way(rng, setup, &answer);
    });
}

#[test]
fn proptest_row_reader_reads_every_split_of_a_valid_answer_the_same() {
    run("reader_every_split", 300, |rng| {
        let setup = ReaderSetup::random(rng);
        let (answer, expected) = valid_answer(rng, setup);
        let whole = read_parts(setup, &[&answer], true);
        assert_eq!(
            whole,
            expected,
            "answer {:?}",
            String::from_utf8_lossy(&answer)
        );
        for cut in 0..=answer.len() {
            let parts = [&answer[..cut], &answer[cut..]];
            assert_eq!(read_parts(setup, &parts, true), whole, "cut at {cut}");
        }
    });
}

#[test]
fn proptest_row_reader_reads_a_mutated_answer_the_same_however_it_is_chunked() {
    run("reader_mutated", 1000, |rng| {
        let setup = ReaderSetup::random(rng);
        let (mut answer, _) = valid_answer(rng, setup);
        let frame = format!("\r\n__exception__\r\n{TAG}\r\nCode: 9. DB::Exception: x\n");
        let close = format!("27 {TAG}\r\n__exception__\r\n");
        let snippets: [&[u8]; 10] = [
            b"\t",
            b"\n",
            b"\r\n",
            b"\\",
            b"\\N",
            b"Code: 1. DB::Exception: it's\n",
            b"__exception__\r\n",
            TAG.as_bytes(),
            frame.as_bytes(),
            close.as_bytes(),
        ];
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(answer.len() + 1);
            match rng.below(6) {
                0 if !answer.is_empty() => {
                    let i = rng.below(answer.len());
                    answer[i] = *rng.pick(INTERESTING);
                }
                1 => {
                    let snippet = rng.pick(&snippets).to_vec();
                    answer.splice(at..at, snippet);
                }
                2 => {
                    let to = (at + rng.below(10)).min(answer.len());
                    answer.drain(at..to);
                }
                3 => answer.truncate(at),
                4 => {
                    let to = (at + rng.below(20)).min(answer.len());
                    let copy = answer[at..to].to_vec();
                    answer.splice(at..at, copy);
                }
                // A line longer than the smallest limit.
                _ if rng.chance(20) => {
                    let long = vec![b'x'; 1000 + rng.below(100)];
                    answer.splice(at..at, long);
                }
                _ => {}
            }
        }
        read_every_way(rng, setup, &answer);
    });
}

// --- LSNs, sizes and durations ---

/// pg_lsn's rule: two halves of 1 to 8 hex digits around one `/`.
fn lsn_oracle(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    let half = |p: &str| {
        ((1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(p, 16).ok())
            .flatten()
    };
    Some((half(hi)? << 32) | half(lo)?)
}

#[test]
fn proptest_lsns_round_trip_and_random_text_never_panics() {
    run("lsn", 20_000, |rng| {
        let lsn = rng.magnitude();
        let text = format_lsn(lsn);
        assert_eq!(parse_lsn(&text), Ok(lsn), "{text}");
        assert_eq!(parse_lsn(&text.to_lowercase()), Ok(lsn));
        let padded = format!("{:08X}/{:08X}", lsn >> 32, lsn & 0xFFFF_FFFF);
        assert_eq!(parse_lsn(&padded), Ok(lsn));

        let alphabet = [
            '0', '1', '9', 'a', 'F', 'f', 'g', '/', '/', '+', '-', ' ', 'x', '\u{0661}', 'é',
        ];
        let random: String = (0..rng.below(20)).map(|_| *rng.pick(&alphabet)).collect();
        assert_eq!(parse_lsn(&random).ok(), lsn_oracle(&random), "{random:?}");
    });
}

/// Reads `pretty_bytes` back: the number and the power of 1024 its unit stands for.
fn read_pretty_bytes(text: &str) -> (f64, i32) {
    let (number, unit) = text.split_once(' ').expect("a number and a unit");
    let power = ["bytes", "kB", "MB", "GB", "TB", "PB"]
        .iter()
        .position(|u| *u == unit)
        .expect("a known unit") as i32;
    (number.parse().expect("a number"), power)
}

#[test]
fn proptest_sizes_and_durations_read_back_and_never_panic() {
    run("units", 20_000, |rng| {
        // Sizes: what is shown is the value, rounded as the text says.
        let bytes = rng.magnitude() as i64;
        let text = pretty_bytes(bytes);
        let (shown, power) = read_pretty_bytes(&text);
        let unit = 1024f64.powi(power);
        let decimals = text
            .split(' ')
            .next()
            .unwrap()
            .split('.')
            .nth(1)
            .map_or(0, str::len);
        assert!(decimals <= 1, "{text}");
        let slack = if power == 0 {
            0.0
        } else if decimals == 1 || shown.abs() < 100.0 {
            0.05
        } else {
            0.5
        };
        let error = (shown * unit - bytes as f64).abs() / unit;
        assert!(error <= slack + 1e-9, "{bytes} shown as {text}");
        assert!(
            power == 5 || shown.abs() < 1024.0,
            "{bytes} shown as {text}"
        );
        assert!(power == 0 || shown.abs() >= 1.0, "{bytes} shown as {text}");

        // Durations: written in any unit, read back to the nanosecond.
        let secs = rng.next() % u64::from(u32::MAX);
        let nanos = rng.next() % 1_000_000_000;
        let exact = std::time::Duration::new(secs, nanos as u32);
        let written = [
            format!("{secs}"),
            format!("{secs}s"),
            format!("{secs}.{nanos:09} seconds"),
            format!("{}ms", secs * 1000 + nanos / 1_000_000),
            format!("{}min", secs / 60),
            format!("{}h", secs / 3600),
        ];
        let expected = [
            std::time::Duration::from_secs(secs),
            std::time::Duration::from_secs(secs),
            exact,
            std::time::Duration::from_millis(secs * 1000 + nanos / 1_000_000),
            std::time::Duration::from_secs(secs / 60 * 60),
            std::time::Duration::from_secs(secs / 3600 * 3600),
        ];
        for (text, want) in written.iter().zip(expected) {
            assert_eq!(read_duration(text), Ok(want), "{text}");
        }
        let too_long = format!("{}s", u64::from(u32::MAX) + 1 + rng.magnitude() % 1000);
        assert!(read_duration(&too_long).is_err());

        // Random text: never a panic, never past the bound.
        let alphabet = [
            '0', '9', '.', ' ', 's', 'm', 'i', 'n', 'h', 'e', '-', '+', 'é',
        ];
        let random: String = (0..rng.below(30)).map(|_| *rng.pick(&alphabet)).collect();
        if let Ok(d) = read_duration(&random) {
            assert!(d <= MAX_DURATION, "{random:?}");
        }
        let seconds = f64::from_bits(rng.next());
        let shown = pretty_duration(seconds);
        assert!(!shown.is_empty() && (seconds >= 0.0 || shown == "unknown"));
    });
}

// --- the alert state machine and its NOTIFY payload ---

const SUBJECTS: [&str; 3] = ["slot:a", "slot:b", "mirror:m"];
const CODES: [FindingCode; 3] = [
    FindingCode::Stalled,
    FindingCode::Lost,
    FindingCode::Inactive,
];

/// Free text up to `max` characters, with what JSON must escape and multi-byte characters.
/// A long one repeats a random 64-character pattern: as hard to cut, much cheaper to make.
fn text(rng: &mut Rng, max: usize) -> String {
    let alphabet = [
        'a', 'z', ' ', '"', '\\', '\n', '\u{1}', '\u{7f}', 'é', '€', '🦀', '日',
    ];
    let len = rng.below(max + 1);
    let pattern: Vec<char> = (0..len.min(64)).map(|_| *rng.pick(&alphabet)).collect();
    pattern.iter().cycle().take(len).collect()
}

/// Usually short, sometimes far too long for a NOTIFY.
fn summary(rng: &mut Rng) -> String {
    if rng.chance(2) {
        text(rng, 12_000)
    } else {
        text(rng, 40)
    }
}

fn detail(rng: &mut Rng) -> Value {
    match rng.below(20) {
        0 => json!({ "blob": text(rng, 12_000), "n": rng.next() }),
        1 => Value::Null,
        2 => json!([text(rng, 10), { "deep": [1, 2, { "x": text(rng, 10) }] }]),
        _ => json!({ "retained": rng.next() % 1000 }),
    }
}

/// Checks one NOTIFY payload: JSON, within the limit, every key there.
fn check_payload(f: &PayloadFields) {
    let text = payload(f);
    assert!(text.len() <= NOTIFY_LIMIT, "{} bytes", text.len());
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    for key in [
        "alert_id",
        "event",
        "subject",
        "finding",
        "severity",
        "time",
        "summary",
        "remediation",
        "detail",
    ] {
        assert!(v.get(key).is_some(), "{key} missing");
    }
    assert_eq!(v["alert_id"], f.alert_id);
    assert_eq!(v["event"], f.event.as_str());
}

/// The alert table as the extension keeps it, with each alert's events.
#[derive(Default)]
struct Table {
    open: Vec<OpenAlert>,
    resolved: Vec<ResolvedAlert>,
    events: BTreeMap<i64, Vec<Event>>,
    next_id: i64,
}

impl Table {
    fn open_for(&self, subject: &str, code: FindingCode) -> Vec<&OpenAlert> {
        self.open
            .iter()
            .filter(|a| a.subject == subject && a.finding == code)
            .collect()
    }

    fn event(&mut self, rng: &mut Rng, id: i64, event: Event, subject: &str, finding: &Finding) {
        let events = self.events.entry(id).or_default();
        match event {
            Event::Raised => {}
            _ => assert_eq!(
                events.first(),
                Some(&Event::Raised),
                "{event:?} before raised"
            ),
        }
        events.push(event);
        let remediation = rng.chance(50).then(|| summary(rng));
        let detail = detail(rng);
        let time = if rng.chance(2) {
            text(rng, 9000)
        } else {
            "2024-05-01T12:00:00+00:00".into()
        };
        let long_subject = rng.chance(2).then(|| text(rng, 9000));
        check_payload(&PayloadFields {
            alert_id: id,
            event,
            subject: long_subject.as_deref().unwrap_or(subject),
            finding: finding.code,
            severity: finding.severity,
            time: &time,
            summary: &finding.summary,
            remediation: remediation.as_deref(),
            detail: &detail,
        });
    }

    /// Checks `actions` against the table before them and applies them.
    fn apply(
        &mut self,
        rng: &mut Rng,
        actions: Vec<Action>,
        present: &BTreeSet<(&str, FindingCode)>,
        now: f64,
        policy: &AlertPolicy,
    ) {
        let mut announced = BTreeSet::new();
        for action in actions {
            match action {
                Action::Raise {
                    subject, finding, ..
                } => {
                    let pair = (subject.clone(), finding.code);
                    assert!(announced.insert(pair.clone()), "two events for {pair:?}");
                    assert!(
                        self.open_for(&subject, finding.code).is_empty(),
                        "raised while open"
                    );
                    assert!(
                        !self.resolved.iter().any(|r| r.subject == subject
                            && r.finding == finding.code
                            && now - r.resolved_at <= policy.holddown_secs),
                        "raised anew within the hold-down"
                    );
                    self.next_id += 1;
                    let id = self.next_id;
                    self.event(rng, id, Event::Raised, &subject, &finding);
                    self.open.push(OpenAlert {
                        id,
                        subject,
                        finding: finding.code,
                        severity: finding.severity,
                        raised_at: now,
                        last_notified_at: now,
                        clear_since: None,
                    });
                }
                Action::Reopen { id, finding, .. } => {
                    let r = self
                        .resolved
                        .iter()
                        .find(|r| r.id == id)
                        .expect("reopens a resolved alert")
                        .clone();
                    assert_eq!(r.finding, finding.code);
                    assert!(
                        now - r.resolved_at <= policy.holddown_secs,
                        "reopened too late"
                    );
                    let newest = self
                        .resolved
                        .iter()
                        .filter(|o| o.subject == r.subject && o.finding == r.finding)
                        .all(|o| (o.resolved_at, o.id) <= (r.resolved_at, r.id));
                    assert!(newest, "reopens the newest resolved alert of its pair");
                    assert!(self.open_for(&r.subject, r.finding).is_empty());
                    assert!(announced.insert((r.subject.clone(), r.finding)));
                    self.resolved.retain(|o| o.id != id);
                    self.event(rng, id, Event::Raised, &r.subject, &finding);
                    self.open.push(OpenAlert {
                        id,
                        subject: r.subject,
                        finding: r.finding,
                        severity: finding.severity,
                        raised_at: now,
                        last_notified_at: now,
                        clear_since: None,
                    });
                }
                Action::Escalate { id, finding, .. } => {
                    let a = self
                        .open
                        .iter_mut()
                        .find(|a| a.id == id)
                        .expect("escalates an open alert");
                    assert_eq!(
                        (a.severity, finding.severity),
                        (Severity::Warning, Severity::Critical),
                        "escalates only warning to critical"
                    );
                    (a.severity, a.last_notified_at, a.clear_since) = (finding.severity, now, None);
                    let subject = a.subject.clone();
                    assert!(announced.insert((subject.clone(), finding.code)));
                    self.event(rng, id, Event::Escalated, &subject, &finding);
                }
                Action::Remind { id, finding, .. } => {
                    let a = self
                        .open
                        .iter_mut()
                        .find(|a| a.id == id)
                        .expect("reminds of an open alert");
                    assert!(
                        policy.reminder_secs > 0.0
                            && now - a.last_notified_at >= policy.reminder_secs
                    );
                    (a.severity, a.last_notified_at, a.clear_since) = (finding.severity, now, None);
                    let subject = a.subject.clone();
                    assert!(announced.insert((subject.clone(), finding.code)));
                    self.event(rng, id, Event::Reminder, &subject, &finding);
                }
                Action::Update { id, finding } => {
                    let a = self
                        .open
                        .iter_mut()
                        .find(|a| a.id == id)
                        .expect("updates an open alert");
                    (a.severity, a.clear_since) = (finding.severity, None);
                }
                Action::StartClearing { id, since } => {
                    let a = self
                        .open
                        .iter_mut()
                        .find(|a| a.id == id)
                        .expect("clears an open alert");
                    assert_eq!(a.clear_since, None);
                    a.clear_since = Some(since);
                }
                Action::Resolve { id, finding } => {
                    let at = self
                        .open
                        .iter()
                        .position(|a| a.id == id)
                        .expect("resolves an open alert");
                    let a = self.open.remove(at);
                    assert_eq!(a.finding, finding);
                    let finding = Finding::new(a.finding, a.severity, "resolved");
                    self.event(rng, id, Event::Resolved, &a.subject, &finding);
                    self.resolved.push(ResolvedAlert {
                        id,
                        subject: a.subject,
                        finding: a.finding,
                        resolved_at: now,
                    });
                }
            }
        }
        let mut pairs = BTreeSet::new();
        for a in &self.open {
            assert!(
                pairs.insert((a.subject.as_str(), a.finding)),
                "two open alerts for one pair"
            );
        }
        for pair in present {
            assert!(
                pairs.contains(pair),
                "{pair:?} is present but has no open alert"
            );
        }
    }
}

#[test]
fn proptest_alert_transitions_keep_one_alert_per_pair_and_announce_in_order() {
    run("alerts", 300, |rng| {
        let policy = AlertPolicy {
            interval_secs: *rng.pick(&[0.0, 1.0, 60.0, 300.0]),
            reminder_secs: *rng.pick(&[0.0, 30.0, 3600.0]),
            holddown_secs: *rng.pick(&[0.0, 60.0, 600.0]),
        };
        let mut table = Table::default();
        let mut now = rng.unit() * 1e9;
        for _ in 0..1 + rng.below(12) {
            now += *rng.pick(&[
                0.0, 0.5, 1.0, 30.0, 59.9, 60.0, 61.0, 300.0, 600.0, 601.0, 3600.0,
            ]);
            let observed: Vec<Observed> = (0..rng.below(6))
                .map(|_| {
                    let severity =
                        *rng.pick(&[Severity::Ok, Severity::Warning, Severity::Critical]);
                    Observed {
                        subject: rng.pick(&SUBJECTS).to_string(),
                        finding: Finding::new(*rng.pick(&CODES), severity, summary(rng)),
                        remediation: rng.chance(50).then(|| summary(rng)),
                        detail: detail(rng),
                    }
                })
                .collect();
            let present: BTreeSet<(&str, FindingCode)> = observed
                .iter()
                .filter(|o| o.finding.severity > Severity::Ok)
                .map(|o| (o.subject.as_str(), o.finding.code))
                .collect();
            // A table that (wrongly) holds two open rows for a pair must heal.
            if rng.chance(5) && !table.open.is_empty() {
                let mut copy = table.open[rng.below(table.open.len())].clone();
                table.next_id += 1;
                copy.id = table.next_id;
                table.events.insert(copy.id, vec![Event::Raised]);
                table.open.push(copy);
            }
            let actions = transitions(&table.open, &table.resolved, &observed, now, &policy);
            table.apply(rng, actions, &present, now, &policy);
        }
    });
}

#[test]
fn proptest_notify_payload_is_json_within_the_limit_whatever_it_carries() {
    run("payload", 300, |rng| {
        let summary = if rng.chance(50) {
            text(rng, 20_000)
        } else {
            text(rng, 100)
        };
        let remediation = rng.chance(70).then(|| text(rng, 12_000));
        let subject = if rng.chance(20) {
            text(rng, 12_000)
        } else {
            text(rng, 40)
        };
        let time = if rng.chance(10) {
            text(rng, 9000)
        } else {
            text(rng, 40)
        };
        let detail = detail(rng);
        check_payload(&PayloadFields {
            alert_id: rng.next() as i64,
            event: *rng.pick(&Event::ALL),
            subject: &subject,
            finding: *rng.pick(&FindingCode::ALL),
            severity: *rng.pick(&[Severity::Ok, Severity::Warning, Severity::Critical]),
            time: &time,
            summary: &summary,
            remediation: remediation.as_deref(),
            detail: &detail,
        });
    });
}

// --- the forecast ---

#[test]
fn proptest_forecast_is_finite_and_silent_while_the_slot_advances() {
    run("forecast", 3000, |rng| {
        let interval = *rng.pick(&[0.001, 1.0, 2.0, 10.0, 60.0, 600.0, 3600.0]);
        let mut at = *rng.pick(&[1_700_000_000.0, 0.0, -1e9, 1e15]);
        let mut current: u64 = rng.magnitude() % (1 << 40);
        let mut consumer = current;
        let advancing = rng.chance(30);
        let mut track = SlotTrack::new("s").unwrap();
        let count = 1 + rng.below(200);
        for i in 0..count {
            at += match rng.below(40) {
                0 => 0.0,
                1 => -interval * 10.0,
                2 => interval * 1000.0,
                3 if rng.chance(5) => *rng.pick(&[f64::NAN, f64::INFINITY, 1e300]),
                _ => interval * (0.5 + rng.unit()),
            };
            current = current.saturating_add(rng.magnitude() % (1 << 30));
            if advancing && (i + 1 == count || rng.chance(50)) {
                consumer = consumer
                    .saturating_add(1 + rng.magnitude() % 1000)
                    .min(current);
            }
            let retained = match rng.below(20) {
                0 => None,
                1 => Some(*rng.pick(&[i64::MAX, i64::MIN, -1, 0])),
                _ => Some(crate::lsn::bytes_between(current, consumer)),
            };
            let lost = rng.chance(2);
            track.record(Sample {
                at,
                current_lsn: current,
                restart_lsn: Some(consumer),
                confirmed_flush_lsn: Some(consumer),
                retained_bytes: retained.filter(|_| !lost),
                safe_wal_size: rng
                    .chance(50)
                    .then(|| *rng.pick(&[i64::MAX, i64::MIN, 0, -1, 1 << 30])),
                active: rng.chance(70),
                wal_status: Some(if lost {
                    WalStatus::Lost
                } else {
                    WalStatus::Reserved
                }),
                lost,
                sent_txns: rng.chance(50).then_some(i as i64),
                spill_bytes: rng.chance(50).then_some(i as i64 * 4096),
                reply_at: rng
                    .chance(50)
                    .then_some(at - (rng.magnitude() % 100) as f64),
            });
        }
        let limits = HistoryLimits {
            forecast_window_secs: 10.0 + rng.unit() * 86_390.0,
            ..HistoryLimits::default()
        };
        let latest = *track.latest().unwrap();
        let now = latest.at + *rng.pick(&[0.0, 0.5, interval, limits.forecast_window_secs / 2.0]);
        let any = rng.next() as i64;
        let ceiling = *rng.pick(&[0, -1, 1 << 40, i64::MAX, any]);
        let (findings, f) = history_findings(&track, now, ceiling, &limits);
        for value in [f.growth_bytes_per_sec, f.eta_secs].into_iter().flatten() {
            assert!(value.is_finite(), "{f:?}");
        }
        if let Some(eta) = f.eta_secs {
            assert!(eta >= 0.0, "{f:?}");
            assert!(
                !latest.lost && f.growth_bytes_per_sec.unwrap() > 0.0,
                "{f:?}"
            );
            let window = limits.forecast_window_secs;
            assert!(
                !track.last_progress_at.is_some_and(|p| matches!(
                    p.partial_cmp(&(now - window)),
                    Some(Ordering::Greater | Ordering::Equal)
                )),
                "an ETA while the slot advances: {f:?}"
            );
        }
        if advancing && track.last_progress_at == Some(latest.at) {
            assert_eq!(
                f.eta_secs, None,
                "the consumer advanced at the last sample: {f:?}"
            );
        }
        assert!(findings.iter().all(|f| !f.summary.is_empty()));
        assert_eq!(f, forecast(&track, now, ceiling, &limits));
    });
}
