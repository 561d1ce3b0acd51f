//! What of a log line may hold a secret, decided without allocating: the server's log hook
//! calls this inside error reporting, in every backend.

/// A secret setting: every message that names it is cut after its name, however quoted
/// (`"cdc_health"."metrics_auth_token"` too). The client sees the cut message as well.
const SECRET_SETTING: &[u8] = b"metrics_auth_token";

/// The one function whose arguments are secrets (a URL's password, a routing key). Our own
/// error messages about it hold none and keep their words; the server's own log lines about
/// a statement that calls it (`log_statement`, `log_min_duration_statement`: LOG level, in
/// whatever language `lc_messages` says) are cut after it.
const SECRET_CALL: &[u8] = b"add_sink";

/// Written where a text is cut, when it fits.
const CUT_NOTE: &[u8] = b" (not logged)";

fn find_end(text: &[u8], marker: &[u8]) -> Option<usize> {
    text.windows(marker.len())
        .position(|w| w.eq_ignore_ascii_case(marker))
        .map(|at| at + marker.len())
}

/// Where the first of `markers` in `text` ends.
fn first_end(text: &[u8], markers: &[&[u8]]) -> Option<usize> {
    markers.iter().filter_map(|m| find_end(text, m)).min()
}

/// Does a running statement hold a secret? Then its text, its context and its parameters
/// are left out of every report made while it runs.
pub fn statement_has_secret(query: &[u8]) -> bool {
    first_end(query, &[SECRET_SETTING, SECRET_CALL]).is_some()
}

/// Cuts a report's message in place: after the secret setting's name wherever it appears,
/// and, in a server log line (`log_line`: LOG level) made while a statement with a secret
/// runs, after the secret call. `buf` is the C string's bytes and its NUL as the last byte;
/// only bytes inside it are written. True when it cut.
pub fn redact_message(buf: &mut [u8], log_line: bool) -> bool {
    let Some((_, text)) = buf.split_last() else {
        return false;
    };
    let markers: &[&[u8]] = if log_line {
        &[SECRET_SETTING, SECRET_CALL]
    } else {
        &[SECRET_SETTING]
    };
    let Some(end) = first_end(text, markers) else {
        return false;
    };
    cut_at(buf, end);
    true
}

/// Cuts a text that quotes a secret statement or its parameters (a log line's detail, the
/// internal query) after the first secret marker, or whole when it names none (parameters).
pub fn redact_quoting(buf: &mut [u8]) {
    let Some((_, text)) = buf.split_last() else {
        return;
    };
    let end = first_end(text, &[SECRET_SETTING, SECRET_CALL]).unwrap_or(0);
    cut_at(buf, end);
}

/// Ends the C string in `buf` at `end`, with `CUT_NOTE` after it when it fits.
fn cut_at(buf: &mut [u8], end: usize) {
    let room = buf.len() - 1 - end;
    let note = if room >= CUT_NOTE.len() {
        CUT_NOTE
    } else {
        &[]
    };
    buf[end..end + note.len()].copy_from_slice(note);
    buf[end + note.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut_with(text: &str, f: impl Fn(&mut [u8])) -> String {
        let mut buf = text.as_bytes().to_vec();
        buf.push(0);
        f(&mut buf);
        let end = buf.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(buf[..end].to_vec()).unwrap()
    }

    fn cut(text: &str, log_line: bool) -> String {
        cut_with(text, |b| {
            redact_message(b, log_line);
        })
    }

    #[test]
    fn messages_are_cut_after_the_first_marker() {
        assert_eq!(
            cut(
                "parameter \"cdc_health.metrics_auth_token\" changed to \"s3cret-token-value\"",
                false
            ),
            "parameter \"cdc_health.metrics_auth_token (not logged)"
        );
        assert_eq!(
            cut(
                "statement: ALTER SYSTEM SET \"cdc_health\".\"METRICS_AUTH_TOKEN\" = 'x'",
                true
            ),
            "statement: ALTER SYSTEM SET \"cdc_health\".\"METRICS_AUTH_TOKEN"
        );
        // A LOG line about the statement, in any language.
        assert_eq!(
            cut(
                "Anweisung: SELECT cdc_health.ADD_SINK('pd', 'pagerduty', 'http://u:pw@h/')",
                true
            ),
            "Anweisung: SELECT cdc_health.ADD_SINK (not logged)"
        );
        // Our own messages about add_sink hold no secret and keep their words.
        let own = "cdc_health.add_sink(\"x\"): webhook URL must start with http:// or https://";
        assert_eq!(cut(own, false), own);
        assert_eq!(
            cut("checkpoint starting: time", true),
            "checkpoint starting: time"
        );
        assert!(!redact_message(&mut [], true));
    }

    #[test]
    fn quoting_texts_are_cut_after_a_marker_or_whole() {
        assert_eq!(
            cut_with(
                "SELECT cdc_health.add_sink('pd', 'http://u:pw@h/')",
                redact_quoting
            ),
            "SELECT cdc_health.add_sink (not logged)"
        );
        assert_eq!(
            cut_with("parameters: $1 = 'http://u:pw@h/'", redact_quoting),
            " (not logged)"
        );
        assert_eq!(cut_with("short", redact_quoting), "");
        redact_quoting(&mut []);
        assert!(statement_has_secret(b"SELECT CDC_HEALTH.Add_Sink($1)"));
        assert!(!statement_has_secret(b"SELECT cdc_health.sinks()"));
    }
}
