//! A sink: where alert transitions are POSTed, which of them, and how.
//!
//! [`SinkConfig::parse`] is the one gate for what an administrator writes in
//! `cdc_health.sinks`: everything is checked there, so the delivery worker can trust the
//! config it loads. Sinks hold credentials (a webhook secret, a PagerDuty routing key,
//! `Authorization` headers, Slack's secret URL path, basic auth in URLs), so errors and the
//! views pg_monitor reads never show them: URLs go through [`mask_url`], secret values are
//! only ever named.

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::clickhouse::{read_duration, DurationError};
use crate::finding::{FindingCode, Severity};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    Alertmanager,
    Webhook,
    Slack,
    Pagerduty,
}

impl SinkKind {
    pub const ALL: [SinkKind; 4] = [
        Self::Alertmanager,
        Self::Webhook,
        Self::Slack,
        Self::Pagerduty,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alertmanager => "alertmanager",
            Self::Webhook => "webhook",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SinkConfig {
    pub kind: SinkKind,
    /// One URL, or for alertmanager one per instance of an HA group (each gets every batch).
    pub urls: Vec<String>,
    /// Option "min_severity": "warning" (default) or "critical".
    pub min_severity: Severity,
    /// Option "findings": only these codes; `None` for all.
    pub findings: Option<Vec<String>>,
    /// Option "secret" (webhook only): the HMAC key of X-CDC-Health-Signature.
    pub secret: Option<String>,
    /// Option "routing_key" (pagerduty only, required there).
    pub routing_key: Option<String>,
    /// Option "headers": sent with every request, in this order.
    pub headers: Vec<(String, String)>,
    /// Option "timeout": for the whole request; default 10 s, at most 300 s.
    pub timeout: Duration,
}

const OPTIONS: [&str; 6] = [
    "min_severity",
    "findings",
    "timeout",
    "headers",
    "secret",
    "routing_key",
];

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_TIMEOUT: Duration = Duration::from_secs(300);

/// Headers the request itself defines; a sink setting them would corrupt it or forge ours.
const RESERVED_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];
const RESERVED_PREFIX: &str = "x-cdc-health-";

impl SinkConfig {
    /// Validates everything; an error is one sentence naming the problem and the offending
    /// option, kind or (masked) URL, and never the value of "secret", "routing_key" or a header.
    ///
    /// URLs: scheme http or https (case-insensitive), a non-empty host, no whitespace or
    /// control characters, an optional port 1-65535, no fragment. Surrounding whitespace is
    /// trimmed. `options` must be a JSON object (null is treated as {}); an option whose value
    /// is null counts as not given.
    pub fn parse(kind: &str, url: &str, options: &Value) -> Result<SinkConfig, String> {
        let kind = SinkKind::parse(kind).ok_or_else(|| {
            format!(
                "unknown sink kind {kind:?} (expected alertmanager, webhook, slack or pagerduty)"
            )
        })?;
        let urls = parse_urls(kind, url)?;

        let empty = Map::new();
        let options = match options {
            Value::Null => &empty,
            Value::Object(map) => map,
            other => {
                return Err(format!(
                    "options must be a JSON object, not {}",
                    json_type(other)
                ))
            }
        };
        if let Some(name) = options.keys().find(|n| !OPTIONS.contains(&n.as_str())) {
            return Err(format!(
                "unknown option {name:?} (expected min_severity, findings, timeout, headers, secret or routing_key)"
            ));
        }
        let get = |name: &str| options.get(name).filter(|v| !v.is_null());

        let min_severity = match get("min_severity") {
            None => Severity::Warning,
            Some(Value::String(s)) if s == "warning" => Severity::Warning,
            Some(Value::String(s)) if s == "critical" => Severity::Critical,
            Some(other) => {
                return Err(format!(
                    "option \"min_severity\" must be \"warning\" or \"critical\", not {}",
                    shown(other)
                ))
            }
        };
        let findings = get("findings").map(parse_findings).transpose()?;
        let secret = get("secret")
            .map(|v| credential(kind, SinkKind::Webhook, "secret", v))
            .transpose()?;
        let routing_key = get("routing_key")
            .map(|v| credential(kind, SinkKind::Pagerduty, "routing_key", v))
            .transpose()?;
        if kind == SinkKind::Pagerduty && routing_key.is_none() {
            return Err("sink kind pagerduty needs option \"routing_key\"".to_string());
        }
        let headers = get("headers").map(parse_headers).transpose()?;
        let timeout = get("timeout")
            .map(parse_timeout)
            .transpose()?
            .unwrap_or(DEFAULT_TIMEOUT);

        Ok(SinkConfig {
            kind,
            urls,
            min_severity,
            findings,
            secret,
            routing_key,
            headers: headers.unwrap_or_default(),
            timeout,
        })
    }

    /// Whether an alert with this finding code (as text) and severity goes to this sink:
    /// severity >= min_severity and (findings None or contains it). Severity Ok never matches.
    pub fn matches(&self, finding: &str, severity: Severity) -> bool {
        severity > Severity::Ok
            && severity >= self.min_severity
            && self
                .findings
                .as_ref()
                .is_none_or(|codes| codes.iter().any(|c| c == finding))
    }

    /// The URL(s) as shown to pg_monitor, see [`mask_url`]; several joined with ", ".
    pub fn masked_url(&self) -> String {
        let masked: Vec<String> = self.urls.iter().map(|u| mask_url(self.kind, u)).collect();
        masked.join(", ")
    }

    /// The options as pg_monitor may see them: {"min_severity": "...", "findings": [...] (only
    /// if set), "timeout": "<secs>s", "headers": [names only] (only if any), "secret": "(set)"
    /// (only if set), "routing_key": "(set)" (only if set)}.
    pub fn public_options(&self) -> Value {
        let mut out = Map::new();
        out.insert("min_severity".into(), json!(self.min_severity.as_str()));
        if let Some(codes) = &self.findings {
            out.insert("findings".into(), json!(codes));
        }
        // Seconds as a duration text that parse reads back ("0.5s", "10s").
        let timeout = format!("{}s", self.timeout.as_secs_f64());
        out.insert("timeout".into(), json!(timeout));
        if !self.headers.is_empty() {
            let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
            out.insert("headers".into(), json!(names));
        }
        if self.secret.is_some() {
            out.insert("secret".into(), json!("(set)"));
        }
        if self.routing_key.is_some() {
            out.insert("routing_key".into(), json!("(set)"));
        }
        Value::Object(out)
    }
}

/// A URL with its credentials hidden: userinfo replaced by "***@", a query string by "?***"
/// (a fragment likewise by "#***") and, for kind slack, every path segment after
/// "/services/" by "***" (Slack's webhook path is the secret; a slack URL without
/// "/services/" has all its segments hidden).
///
/// Works on any text, valid URL or not, since error messages show rejected URLs too. It errs
/// on the side of hiding: an "@" anywhere before the query ends the userinfo, so a password
/// holding an unescaped "/" is still hidden.
pub fn mask_url(kind: SinkKind, url: &str) -> String {
    let (scheme, mut rest) = match url.find("://") {
        Some(i) if is_scheme(&url[..i]) => url.split_at(i + 3),
        _ => ("", url),
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    let before_query = rest.find(['?', '#']).unwrap_or(rest.len());
    if let Some(at) = rest[..before_query].rfind('@') {
        out.push_str("***@");
        rest = &rest[at + 1..];
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((before, after)) => (before, Some(after)),
        None => (rest, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((before, after)) => (before, Some(after)),
        None => (rest, None),
    };
    let path_start = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    out.push_str(authority);
    // Slack's webhook path is its credential; so is many a webhook's (Discord, Mattermost,
    // Zapier): only the host is shown of those.
    if matches!(kind, SinkKind::Slack | SinkKind::Webhook) {
        let (kept, secret) = match path.find("/services/") {
            Some(i) if kind == SinkKind::Slack => path.split_at(i + "/services/".len()),
            _ => ("", path),
        };
        out.push_str(kept);
        let hidden: Vec<&str> = secret
            .split('/')
            .map(|s| if s.is_empty() { "" } else { "***" })
            .collect();
        out.push_str(&hidden.join("/"));
    } else {
        out.push_str(path);
    }
    for (mark, part) in [('?', query), ('#', fragment)] {
        if let Some(part) = part {
            out.push(mark);
            if !part.is_empty() {
                out.push_str("***");
            }
        }
    }
    out
}

/// RFC 3986 scheme characters; anything else before "://" is not a scheme.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
}

fn parse_urls(kind: SinkKind, text: &str) -> Result<Vec<String>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("sink kind {} needs a URL", kind.as_str()));
    }
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let listed = |parts: &[&str]| {
        let masked: Vec<String> = parts.iter().map(|p| mask_url(kind, p)).collect();
        masked.join(", ")
    };
    if kind != SinkKind::Alertmanager {
        // A comma is legal inside a URL; only a list of whole URLs is refused.
        if parts.len() > 1 && parts.iter().all(|p| has_http_scheme(p).is_some()) {
            return Err(format!(
                "sink kind {} takes exactly one URL, not the list \"{}\" (only alertmanager takes several)",
                kind.as_str(),
                listed(&parts)
            ));
        }
        validate_url(kind, text)?;
        return Ok(vec![text.to_string()]);
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "the URL list \"{}\" has an empty entry",
            listed(&parts)
        ));
    }
    let mut urls: Vec<String> = Vec::with_capacity(parts.len());
    for part in parts {
        validate_url(kind, part)?;
        if urls.iter().any(|u| u == part) {
            return Err(format!("URL \"{}\" is listed twice", mask_url(kind, part)));
        }
        urls.push(part.to_string());
    }
    Ok(urls)
}

/// The text after "http://" or "https://", either in any case.
fn has_http_scheme(url: &str) -> Option<&str> {
    ["http://", "https://"].into_iter().find_map(|prefix| {
        url.get(..prefix.len())
            .filter(|s| s.eq_ignore_ascii_case(prefix))
            .map(|_| &url[prefix.len()..])
    })
}

/// Host and port are read as an HTTP client reads them: the authority ends at the first
/// "/", "?" or "#", and the userinfo at its last "@".
fn validate_url(kind: SinkKind, url: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("malformed URL {:?}: {why}", mask_url(kind, url)));
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("it contains whitespace or a control character");
    }
    let Some(rest) = has_http_scheme(url) else {
        return bad("must start with http:// or https://");
    };
    if url.contains('#') {
        return bad("a fragment (#...) is not sent to the server");
    }
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if host_port.starts_with('[') {
        match host_port.find(']') {
            Some(end) => host_port.split_at(end + 1),
            None => return bad("its IPv6 host lacks the closing \"]\""),
        }
    } else {
        host_port.split_at(host_port.find(':').unwrap_or(host_port.len()))
    };
    let host_ok = match host.strip_prefix('[') {
        Some(ip) => {
            let ip = ip.trim_end_matches(']');
            ip.contains(':')
                && ip
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
        }
        None => host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%".contains(c)),
    };
    if host.is_empty() {
        return bad("it has no host");
    }
    if !host_ok {
        return bad("its host has a character a host name cannot have");
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').unwrap_or("x");
        let number = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse::<u32>().ok())
            .flatten();
        if !matches!(number, Some(1..=65535)) {
            return bad("the port must be a number from 1 to 65535");
        }
    }
    Ok(())
}

fn parse_findings(value: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "option \"findings\" must be a JSON array of finding codes, not {}",
            shown(value)
        ));
    };
    if items.is_empty() {
        return Err(
            "option \"findings\" must not be an empty array (leave it out to include every finding)"
                .to_string(),
        );
    }
    let mut codes: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let Value::String(code) = item else {
            return Err(format!(
                "option \"findings\" must list finding codes as strings, not {}",
                shown(item)
            ));
        };
        if FindingCode::parse(code).is_none() {
            return Err(format!(
                "option \"findings\" names unknown finding code {code:?}"
            ));
        }
        // A repeated code changes nothing; keep the first.
        if !codes.contains(code) {
            codes.push(code.clone());
        }
    }
    Ok(codes)
}

/// "secret" and "routing_key": only for their kind, a non-empty string, never echoed.
fn credential(
    kind: SinkKind,
    owner: SinkKind,
    name: &str,
    value: &Value,
) -> Result<String, String> {
    if kind != owner {
        return Err(format!(
            "option {name:?} is only for sink kind {}, not {}",
            owner.as_str(),
            kind.as_str()
        ));
    }
    match value {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        _ => Err(format!("option {name:?} must be a non-empty string")),
    }
}

fn parse_headers(value: &Value) -> Result<Vec<(String, String)>, String> {
    // Never show `value` here: it holds the header values.
    let Value::Object(map) = value else {
        return Err(format!(
            "option \"headers\" must be a JSON object of header names and string values, not {}",
            json_type(value)
        ));
    };
    let mut headers: Vec<(String, String)> = Vec::with_capacity(map.len());
    for (name, value) in map {
        if name.is_empty() {
            return Err("option \"headers\" has an empty header name".to_string());
        }
        if !name.bytes().all(is_tchar) {
            return Err(format!(
                "header name {name:?} in option \"headers\" is not a valid HTTP header name"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with(RESERVED_PREFIX) {
            return Err(format!(
                "header {name:?} in option \"headers\" is reserved: cdc_health sets it"
            ));
        }
        if headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "header {name:?} is given twice in option \"headers\" (header names ignore case)"
            ));
        }
        let Value::String(text) = value else {
            return Err(format!(
                "header {name:?} in option \"headers\" must have a string value"
            ));
        };
        // CR and LF would split the header (request smuggling); other controls but tab are
        // refused by HTTP clients at send time, which would fail every delivery.
        if text
            .chars()
            .any(|c| (c.is_control() && c != '\t') || !c.is_ascii())
        {
            return Err(format!(
                "header {name:?} in option \"headers\" has a line break, a control or a non-ASCII character in its value"
            ));
        }
        headers.push((name.clone(), text.clone()));
    }
    Ok(headers)
}

/// RFC 7230 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn parse_timeout(value: &Value) -> Result<Duration, String> {
    let range = || {
        format!(
            "option \"timeout\" must be more than 0 and at most 300 seconds, not {}",
            shown(value)
        )
    };
    let timeout = match value {
        Value::String(text) => match read_duration(text) {
            Ok(d) => d,
            Err(DurationError::TooLong) => return Err(range()),
            Err(DurationError::Malformed) => {
                return Err(format!(
                    "option \"timeout\" must be a duration such as \"10s\", \"500ms\" or \"2min\", or a number of seconds, not {}",
                    shown(value)
                ))
            }
        },
        Value::Number(n) => match n.as_f64() {
            // Checked before converting: from_secs_f64 panics on negatives.
            Some(secs) if secs > 0.0 && secs <= MAX_TIMEOUT.as_secs_f64() => {
                Duration::from_secs_f64(secs)
            }
            _ => return Err(range()),
        },
        other => {
            return Err(format!(
                "option \"timeout\" must be a duration text such as \"10s\" or a number of seconds, not {}",
                json_type(other)
            ))
        }
    };
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(range());
    }
    Ok(timeout)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A non-secret option value as JSON text, cut so an error stays one readable line.
fn shown(value: &Value) -> String {
    const MAX_CHARS: usize = 60;
    let text = value.to_string();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(kind: &str, url: &str, options: Value) -> Result<SinkConfig, String> {
        SinkConfig::parse(kind, url, &options)
    }

    fn error(kind: &str, url: &str, options: Value) -> String {
        match parse(kind, url, options) {
            Ok(config) => panic!("accepted: {config:?}"),
            Err(e) => e,
        }
    }

    const SLACK: &str = "https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXXXXXXXXXXXXXX";
    const PD: &str = "https://events.pagerduty.com/v2/enqueue";

    #[test]
    fn kinds_round_trip() {
        for kind in SinkKind::ALL {
            assert_eq!(SinkKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SinkKind::Pagerduty.as_str(), "pagerduty");
        assert_eq!(SinkKind::parse("Slack"), None);
        assert_eq!(SinkKind::parse(""), None);
    }

    #[test]
    fn defaults() {
        let sink = parse("webhook", "https://example.com/hook", Value::Null).unwrap();
        assert_eq!(
            sink,
            SinkConfig {
                kind: SinkKind::Webhook,
                urls: vec!["https://example.com/hook".to_string()],
                min_severity: Severity::Warning,
                findings: None,
                secret: None,
                routing_key: None,
                headers: vec![],
                timeout: Duration::from_secs(10),
            }
        );
        assert_eq!(
            parse("webhook", "https://example.com/hook", json!({})),
            Ok(sink)
        );
    }

    #[test]
    fn every_option_is_read() {
        let sink = parse(
            "webhook",
            "  http://example.com:8080/hook?x=1,2  ",
            json!({
                "min_severity": "critical",
                "findings": ["lost", "stalled", "lost", "delivery_failed"],
                "secret": "s3cr3t",
                "headers": {"Authorization": "Bearer abc", "X-Team": "db"},
                "timeout": "500ms",
            }),
        )
        .unwrap();
        assert_eq!(sink.urls, ["http://example.com:8080/hook?x=1,2"]);
        assert_eq!(sink.min_severity, Severity::Critical);
        assert_eq!(
            sink.findings.as_deref(),
            Some(
                &[
                    "lost".to_string(),
                    "stalled".into(),
                    "delivery_failed".into()
                ][..]
            )
        );
        assert_eq!(sink.secret.as_deref(), Some("s3cr3t"));
        assert_eq!(sink.routing_key, None);
        assert_eq!(
            sink.headers,
            [
                ("Authorization".to_string(), "Bearer abc".to_string()),
                ("X-Team".to_string(), "db".to_string())
            ]
        );
        assert_eq!(sink.timeout, Duration::from_millis(500));
    }

    #[test]
    fn null_option_values_count_as_absent() {
        let sink = parse(
            "slack",
            SLACK,
            json!({"secret": null, "timeout": null, "findings": null}),
        )
        .unwrap();
        assert_eq!((sink.secret, sink.findings), (None, None));
        assert_eq!(sink.timeout, DEFAULT_TIMEOUT);
        assert_eq!(
            error("pagerduty", PD, json!({"routing_key": null})),
            "sink kind pagerduty needs option \"routing_key\""
        );
    }

    #[test]
    fn pagerduty_needs_its_routing_key() {
        assert_eq!(
            error("pagerduty", PD, Value::Null),
            "sink kind pagerduty needs option \"routing_key\""
        );
        let sink = parse("pagerduty", PD, json!({"routing_key": "R0UT1NG"})).unwrap();
        assert_eq!(sink.routing_key.as_deref(), Some("R0UT1NG"));
    }

    #[test]
    fn alertmanager_takes_an_ha_list() {
        let sink = parse(
            "alertmanager",
            "http://am-0:9093 , http://am-1:9093/,https://am-2.example.com",
            Value::Null,
        )
        .unwrap();
        assert_eq!(
            sink.urls,
            [
                "http://am-0:9093",
                "http://am-1:9093/",
                "https://am-2.example.com"
            ]
        );
        assert_eq!(
            sink.masked_url(),
            "http://am-0:9093, http://am-1:9093/, https://am-2.example.com"
        );
        assert_eq!(
            error("alertmanager", "http://a:9093,,http://b:9093", Value::Null),
            "the URL list \"http://a:9093, , http://b:9093\" has an empty entry"
        );
        assert_eq!(
            error("alertmanager", "http://a:9093,", Value::Null),
            "the URL list \"http://a:9093, \" has an empty entry"
        );
        assert_eq!(
            error("alertmanager", "http://a:9093, http://a:9093", Value::Null),
            "URL \"http://a:9093\" is listed twice"
        );
        assert_eq!(
            error("alertmanager", "http://a:9093, ftp://b", Value::Null),
            "malformed URL \"ftp://b\": must start with http:// or https://"
        );
    }

    #[test]
    fn other_kinds_take_one_url() {
        assert_eq!(
            error("webhook", "https://a/x, https://b/x", Value::Null),
            "sink kind webhook takes exactly one URL, not the list \"https://a/***, https://b/***\" (only alertmanager takes several)"
        );
        let e = error("slack", &format!("{SLACK},{SLACK}"), Value::Null);
        assert!(
            e.starts_with("sink kind slack takes exactly one URL"),
            "{e}"
        );
        assert!(!e.contains("XXXX"), "{e}");
        // A comma inside one URL is fine.
        assert!(parse("webhook", "https://a/x?tags=a,b", Value::Null).is_ok());
    }

    #[test]
    fn url_errors() {
        let cases = [
            ("", "sink kind webhook needs a URL"),
            ("   ", "sink kind webhook needs a URL"),
            (
                "ftp://x",
                "malformed URL \"ftp://x\": must start with http:// or https://",
            ),
            (
                "example.com/hook",
                "malformed URL \"example.com/***\": must start with http:// or https://",
            ),
            (
                "http:/example.com",
                "malformed URL \"http:/***\": must start with http:// or https://",
            ),
            ("https://", "malformed URL \"https://\": it has no host"),
            ("https:///x", "malformed URL \"https:///***\": it has no host"),
            ("https://:80/x", "malformed URL \"https://:80/***\": it has no host"),
            (
                "https://u:p@/x",
                "malformed URL \"https://***@/***\": it has no host",
            ),
            (
                "https://exa mple.com",
                "malformed URL \"https://exa mple.com\": it contains whitespace or a control character",
            ),
            (
                "https://example.com/\u{7}",
                "malformed URL \"https://example.com/***\": it contains whitespace or a control character",
            ),
            (
                "https://example.com/x#top",
                "malformed URL \"https://example.com/***#***\": a fragment (#...) is not sent to the server",
            ),
            (
                "https://example.com:0/",
                "malformed URL \"https://example.com:0/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://example.com:65536/",
                "malformed URL \"https://example.com:65536/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://example.com:/",
                "malformed URL \"https://example.com:/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://example.com:+80/",
                "malformed URL \"https://example.com:+80/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://example.com:80:81/",
                "malformed URL \"https://example.com:80:81/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://example.com:99999999999999999999/",
                "malformed URL \"https://example.com:99999999999999999999/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://[::1/x",
                "malformed URL \"https://[::1/***\": its IPv6 host lacks the closing \"]\"",
            ),
            (
                "https://[::1]x/",
                "malformed URL \"https://[::1]x/\": the port must be a number from 1 to 65535",
            ),
            (
                "https://[]/",
                "malformed URL \"https://[]/\": its host has a character a host name cannot have",
            ),
            (
                "https://exa\"mple.com/",
                "malformed URL \"https://exa\\\"mple.com/\": its host has a character a host name cannot have",
            ),
            (
                "https://a\\b/",
                "malformed URL \"https://a\\\\b/\": its host has a character a host name cannot have",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(error("webhook", url, Value::Null), expected, "{url:?}");
        }
    }

    #[test]
    fn good_urls() {
        for url in [
            "http://localhost",
            "HTTPS://Example.COM/x",
            "Http://example.com:1/",
            "https://example.com:65535",
            "https://user:pass@example.com/x",
            "https://[::1]:9093",
            "https://[2001:db8::1]/",
            "http://10.0.0.1:9093?x=1",
            "https://xn--bcher-kva.example/x",
            "https://my_host.internal/x",
        ] {
            let sink = parse("webhook", url, Value::Null);
            assert_eq!(sink.map(|s| s.urls), Ok(vec![url.to_string()]), "{url}");
        }
        // HTTP clients send only ASCII hosts: an IDN is written in its punycode form.
        assert!(parse("webhook", "https://bücher.example/x", Value::Null).is_err());
    }

    #[test]
    fn masking() {
        let cases = [
            (
                SinkKind::Pagerduty,
                "https://example.com/x",
                "https://example.com/x",
            ),
            (
                SinkKind::Alertmanager,
                "https://user:pw@host:9093/x",
                "https://***@host:9093/x",
            ),
            (
                SinkKind::Pagerduty,
                "https://host/x?token=abc&b=2",
                "https://host/x?***",
            ),
            (SinkKind::Pagerduty, "https://host/x?", "https://host/x?"),
            (
                SinkKind::Pagerduty,
                "https://u@host/x?t=1#frag",
                "https://***@host/x?***#***",
            ),
            (
                SinkKind::Slack,
                SLACK,
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                SinkKind::Slack,
                "https://hooks.slack.com/services/T0/B0/XX/",
                "https://hooks.slack.com/services/***/***/***/",
            ),
            (
                SinkKind::Slack,
                "https://proxy/slack/services/T0/B0/XX?x=1",
                "https://proxy/slack/services/***/***/***?***",
            ),
            (
                SinkKind::Slack,
                "https://hooks.slack.com/triggers/T0/123/abc",
                "https://hooks.slack.com/***/***/***/***",
            ),
            (
                SinkKind::Slack,
                "https://hooks.slack.com",
                "https://hooks.slack.com",
            ),
            // Only slack's and webhook's paths are secret.
            (
                SinkKind::Pagerduty,
                "https://host/services/T0/B0",
                "https://host/services/T0/B0",
            ),
            // An unescaped "/" in a password does not leak it.
            (
                SinkKind::Pagerduty,
                "https://user:pa/ss@host/x",
                "https://***@host/x",
            ),
            (
                SinkKind::Pagerduty,
                "https://a:b@c@host/",
                "https://***@host/",
            ),
            // A webhook's path is often its credential (Discord, Mattermost, Zapier).
            (
                SinkKind::Webhook,
                "https://discord.com/api/webhooks/123/t0ken",
                "https://discord.com/***/***/***/***",
            ),
            (
                SinkKind::Webhook,
                "https://u:p@host/x?t=1",
                "https://***@host/***?***",
            ),
            (SinkKind::Webhook, "https://host", "https://host"),
            // Not URLs at all, still masked.
            (SinkKind::Pagerduty, "user:pw@host/x", "***@host/x"),
            (SinkKind::Pagerduty, "x?secret", "x?***"),
            (SinkKind::Pagerduty, "", ""),
            (SinkKind::Pagerduty, "a b://u@h", "***@h"),
        ];
        for (kind, url, expected) in cases {
            assert_eq!(mask_url(kind, url), expected, "{url}");
        }
    }

    #[test]
    fn masked_url_of_a_slack_sink() {
        let sink = parse("slack", SLACK, Value::Null).unwrap();
        assert_eq!(
            sink.masked_url(),
            "https://hooks.slack.com/services/***/***/***"
        );
    }

    #[test]
    fn url_errors_mask_the_url() {
        let e = error(
            "slack",
            "https://hooks.slack.com/services/T0/B0/SECRETPATH#x",
            Value::Null,
        );
        assert!(e.contains("malformed URL"), "{e}");
        assert!(!e.contains("SECRETPATH"), "{e}");
        let e = error("webhook", "https://user:hunter2@host:99999/", Value::Null);
        assert!(e.contains("port"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let e = error("webhook", "https://host/x?token=hunter2 y", Value::Null);
        assert!(e.contains("whitespace") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn kind_and_options_errors() {
        let hook = "https://example.com/hook";
        let cases = [
            (
                "smtp",
                json!({}),
                "unknown sink kind \"smtp\" (expected alertmanager, webhook, slack or pagerduty)",
            ),
            (
                "webhook",
                json!([]),
                "options must be a JSON object, not an array",
            ),
            (
                "webhook",
                json!("x"),
                "options must be a JSON object, not a string",
            ),
            (
                "webhook",
                json!({"min_sev": "critical"}),
                "unknown option \"min_sev\" (expected min_severity, findings, timeout, headers, secret or routing_key)",
            ),
            (
                "webhook",
                json!({"min_severity": "ok"}),
                "option \"min_severity\" must be \"warning\" or \"critical\", not \"ok\"",
            ),
            (
                "webhook",
                json!({"min_severity": "Critical"}),
                "option \"min_severity\" must be \"warning\" or \"critical\", not \"Critical\"",
            ),
            (
                "webhook",
                json!({"min_severity": 2}),
                "option \"min_severity\" must be \"warning\" or \"critical\", not 2",
            ),
            (
                "webhook",
                json!({"findings": []}),
                "option \"findings\" must not be an empty array (leave it out to include every finding)",
            ),
            (
                "webhook",
                json!({"findings": "lost"}),
                "option \"findings\" must be a JSON array of finding codes, not \"lost\"",
            ),
            (
                "webhook",
                json!({"findings": ["lost", 3]}),
                "option \"findings\" must list finding codes as strings, not 3",
            ),
            (
                "webhook",
                json!({"findings": ["lost", "losst"]}),
                "option \"findings\" names unknown finding code \"losst\"",
            ),
            (
                "webhook",
                json!({"findings": ["Lost"]}),
                "option \"findings\" names unknown finding code \"Lost\"",
            ),
            (
                "slack",
                json!({"secret": "x"}),
                "option \"secret\" is only for sink kind webhook, not slack",
            ),
            (
                "webhook",
                json!({"secret": ""}),
                "option \"secret\" must be a non-empty string",
            ),
            (
                "webhook",
                json!({"secret": 42}),
                "option \"secret\" must be a non-empty string",
            ),
            (
                "webhook",
                json!({"routing_key": "x"}),
                "option \"routing_key\" is only for sink kind pagerduty, not webhook",
            ),
            (
                "webhook",
                json!({"headers": ["X-A"]}),
                "option \"headers\" must be a JSON object of header names and string values, not an array",
            ),
            (
                "webhook",
                json!({"headers": {"": "v"}}),
                "option \"headers\" has an empty header name",
            ),
            (
                "webhook",
                json!({"headers": {"X Team": "v"}}),
                "header name \"X Team\" in option \"headers\" is not a valid HTTP header name",
            ),
            (
                "webhook",
                json!({"headers": {"X-Team:": "v"}}),
                "header name \"X-Team:\" in option \"headers\" is not a valid HTTP header name",
            ),
            (
                "webhook",
                json!({"headers": {"Tëam": "v"}}),
                "header name \"Tëam\" in option \"headers\" is not a valid HTTP header name",
            ),
            (
                "webhook",
                json!({"headers": {"X-Team": 5}}),
                "header \"X-Team\" in option \"headers\" must have a string value",
            ),
            (
                "webhook",
                json!({"headers": {"X-A": "1", "x-a": "2"}}),
                "header \"x-a\" is given twice in option \"headers\" (header names ignore case)",
            ),
            (
                "webhook",
                json!({"timeout": "ten"}),
                "option \"timeout\" must be a duration such as \"10s\", \"500ms\" or \"2min\", or a number of seconds, not \"ten\"",
            ),
            (
                "webhook",
                json!({"timeout": "-1s"}),
                "option \"timeout\" must be a duration such as \"10s\", \"500ms\" or \"2min\", or a number of seconds, not \"-1s\"",
            ),
            (
                "webhook",
                json!({"timeout": "0s"}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not \"0s\"",
            ),
            (
                "webhook",
                json!({"timeout": "301s"}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not \"301s\"",
            ),
            (
                "webhook",
                json!({"timeout": "1h"}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not \"1h\"",
            ),
            (
                "webhook",
                json!({"timeout": "99999999999999999999h"}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not \"99999999999999999999h\"",
            ),
            (
                "webhook",
                json!({"timeout": 0}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not 0",
            ),
            (
                "webhook",
                json!({"timeout": -5}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not -5",
            ),
            (
                "webhook",
                json!({"timeout": 300.5}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not 300.5",
            ),
            (
                "webhook",
                json!({"timeout": 1e-12}),
                "option \"timeout\" must be more than 0 and at most 300 seconds, not 1e-12",
            ),
            (
                "webhook",
                json!({"timeout": true}),
                "option \"timeout\" must be a duration text such as \"10s\" or a number of seconds, not a boolean",
            ),
        ];
        for (kind, options, expected) in cases {
            assert_eq!(error(kind, hook, options.clone()), expected, "{options}");
        }
    }

    #[test]
    fn reserved_headers_are_refused_in_any_case() {
        for name in [
            "Content-Type",
            "content-length",
            "HOST",
            "Transfer-Encoding",
            "X-CDC-Health-Signature",
            "x-cdc-health-anything",
        ] {
            let e = error("webhook", "https://h/", json!({"headers": {name: "v"}}));
            assert_eq!(
                e,
                format!("header {name:?} in option \"headers\" is reserved: cdc_health sets it")
            );
        }
        // Near misses are fine.
        let sink = parse(
            "webhook",
            "https://h/",
            json!({"headers": {"X-CDC-Health": "a", "Content-Typo": "b", "Authorization": ""}}),
        )
        .unwrap();
        assert_eq!(sink.headers.len(), 3);
    }

    #[test]
    fn header_values_with_control_characters_are_refused() {
        for value in [
            "a\r\nX-Evil: 1",
            "a\nb",
            "a\rb",
            "a\0b",
            "a\u{1}b",
            "a\u{7f}b",
        ] {
            let e = error("webhook", "https://h/", json!({"headers": {"X-A": value}}));
            assert_eq!(
                e,
                "header \"X-A\" in option \"headers\" has a line break, a control or a non-ASCII character in its value"
            );
        }
        let sink = parse(
            "webhook",
            "https://h/",
            json!({"headers": {"X-A": "tab\tand text"}}),
        )
        .unwrap();
        assert_eq!(sink.headers[0].1, "tab\tand text");
        // HTTP clients refuse non-ASCII header values when sending.
        assert!(parse(
            "webhook",
            "https://h/",
            json!({"headers": {"X-A": "ünïcode"}})
        )
        .is_err());
    }

    #[test]
    fn secrets_never_appear_in_errors() {
        const SECRET: &str = "hunter2-SECRET";
        let hook = "https://example.com/hook";
        let errors = [
            error("slack", SLACK, json!({"secret": SECRET})),
            error("webhook", hook, json!({"routing_key": SECRET})),
            error("alertmanager", "http://am", json!({"routing_key": SECRET})),
            error("webhook", hook, json!({"secret": [SECRET]})),
            error("pagerduty", PD, json!({"routing_key": {"k": SECRET}})),
            error("pagerduty", PD, json!({"routing_key": [SECRET]})),
            error(
                "webhook",
                hook,
                json!({"headers": {"X-A": format!("{SECRET}\n")}}),
            ),
            error("webhook", hook, json!({"headers": {"X-A": [SECRET]}})),
            error("webhook", hook, json!({"headers": [SECRET]})),
            error("webhook", hook, json!({"headers": SECRET})),
            error("webhook", hook, json!({"headers": {"Host": SECRET}})),
            error(
                "webhook",
                hook,
                json!({"headers": {"X-A": SECRET, "x-A": SECRET}}),
            ),
            error("webhook", hook, json!({"headers": {"Bad Name": SECRET}})),
            // Another option's error while a secret is set.
            error(
                "webhook",
                hook,
                json!({"secret": SECRET, "min_severity": "ok"}),
            ),
            error(
                "pagerduty",
                PD,
                json!({"routing_key": SECRET, "timeout": "x"}),
            ),
            error("webhook", &format!("https://u:{SECRET}@h:0/"), json!({})),
            error("webhook", &format!("https://h/?k={SECRET}#f"), json!({})),
            error(
                "slack",
                &format!("https://hooks.slack.com/services/T/B/{SECRET} "),
                json!({"timeout": 0}),
            ),
            error(
                "slack",
                &format!("https://hooks.slack.com/services/T/B/{SECRET}"),
                json!({"secret": SECRET}),
            ),
        ];
        for e in errors {
            assert!(!e.contains(SECRET) && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn timeouts() {
        let timeout = |v: Value| {
            parse("webhook", "https://h/", json!({ "timeout": v }))
                .unwrap()
                .timeout
        };
        assert_eq!(timeout(json!("500ms")), Duration::from_millis(500));
        assert_eq!(timeout(json!("10s")), Duration::from_secs(10));
        assert_eq!(timeout(json!("2min")), Duration::from_secs(120));
        assert_eq!(timeout(json!("5min")), Duration::from_secs(300));
        assert_eq!(timeout(json!("3")), Duration::from_secs(3));
        assert_eq!(timeout(json!(2)), Duration::from_secs(2));
        assert_eq!(timeout(json!(0.25)), Duration::from_millis(250));
        assert_eq!(timeout(json!(300)), Duration::from_secs(300));
        assert_eq!(timeout(json!("1ms")), Duration::from_millis(1));
    }

    #[test]
    fn matching() {
        let sink = parse("webhook", "https://h/", json!({})).unwrap();
        assert!(sink.matches("lost", Severity::Warning));
        assert!(sink.matches("anything", Severity::Critical));
        assert!(!sink.matches("lost", Severity::Ok));

        let sink = parse(
            "webhook",
            "https://h/",
            json!({"min_severity": "critical", "findings": ["lost", "delivery_failed"]}),
        )
        .unwrap();
        assert!(sink.matches("lost", Severity::Critical));
        assert!(sink.matches("delivery_failed", Severity::Critical));
        assert!(!sink.matches("lost", Severity::Warning));
        assert!(!sink.matches("stalled", Severity::Critical));
        assert!(!sink.matches("Lost", Severity::Critical));

        // Built by hand with min_severity Ok, Ok still never matches.
        let mut sink = sink;
        sink.min_severity = Severity::Ok;
        sink.findings = None;
        assert!(!sink.matches("lost", Severity::Ok));
        assert!(sink.matches("lost", Severity::Warning));
    }

    #[test]
    fn every_finding_code_is_accepted_in_filters() {
        let mut all: Vec<&str> = FindingCode::ALL.iter().map(|c| c.as_str()).collect();
        let sink = parse("webhook", "https://h/", json!({ "findings": all })).unwrap();
        assert_eq!(sink.findings.unwrap().len(), all.len());
        // Repeats are kept once.
        all.push("lost");
        let sink = parse("webhook", "https://h/", json!({ "findings": all })).unwrap();
        assert_eq!(sink.findings.unwrap().len(), FindingCode::ALL.len());
    }

    #[test]
    fn public_options_hide_credentials() {
        let sink = parse(
            "webhook",
            "https://h/",
            json!({
                "secret": "s3cr3t",
                "headers": {"Authorization": "Bearer tok3n", "X-Team": "db"},
                "findings": ["lost"],
                "timeout": "1500ms",
            }),
        )
        .unwrap();
        let public = sink.public_options();
        assert_eq!(
            public,
            json!({
                "min_severity": "warning",
                "findings": ["lost"],
                "timeout": "1.5s",
                "headers": ["Authorization", "X-Team"],
                "secret": "(set)",
            })
        );
        let text = public.to_string();
        assert!(
            !text.contains("s3cr3t") && !text.contains("tok3n"),
            "{text}"
        );

        let sink = parse("pagerduty", PD, json!({"routing_key": "R0UT1NG"})).unwrap();
        assert_eq!(
            sink.public_options(),
            json!({"min_severity": "warning", "timeout": "10s", "routing_key": "(set)"})
        );
    }

    #[test]
    fn public_timeout_reads_back() {
        for text in ["500ms", "10s", "0.001s", "2min", "300s", "1.25s"] {
            let sink = parse("webhook", "https://h/", json!({ "timeout": text })).unwrap();
            let public = sink.public_options()["timeout"].clone();
            let again = parse("webhook", "https://h/", json!({ "timeout": public })).unwrap();
            assert_eq!(again.timeout, sink.timeout, "{text} -> {public}");
        }
    }

    #[test]
    fn long_values_are_cut_in_errors() {
        let long = "x".repeat(500);
        let e = error("webhook", "https://h/", json!({ "min_severity": long }));
        assert!(e.ends_with('…') && e.chars().count() < 140, "{e}");
    }
}
