//! What of a log line may hold a secret, decided without allocating: the server's log hook
//! calls this inside error reporting, in every backend.

/// A secret setting: every message that names it is cut after its name, however quoted
/// (`"cdc_health"."metrics_auth_token"` too). The client sees the cut message as well.
const SECRET_SETTING: &[u8] = b"metrics_auth_token";

/// The one function whose arguments are secrets (a URL's password, a routing key). Our own
/// messages about it hold none, so only the server's lines that quote the statement (with
/// `log_statement`, `log_min_duration_statement`) are cut after it.
const SECRET_CALL: &[u8] = b"add_sink";

/// How the server's lines that quote a statement begin.
const STATEMENT_LINES: [&[u8]; 3] = [b"statement: ", b"duration: ", b"execute "];

/// How the detail that quotes a statement's bind parameters begins.
const PARAMETERS: &[u8] = b"parameters:";

/// Written after the marker where a message is cut, when it fits.
const CUT_NOTE: &[u8] = b" (not logged)";

fn find_end(text: &[u8], marker: &[u8]) -> Option<usize> {
    text.windows(marker.len())
        .position(|w| w.eq_ignore_ascii_case(marker))
        .map(|at| at + marker.len())
}

fn starts_with_ignoring_case(text: &[u8], prefix: &[u8]) -> bool {
    text.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

/// Does a running statement hold a secret? Then its text is left out of every report made
/// while it runs (`hide_stmt`), and so are its bind parameters.
pub fn statement_has_secret(query: &[u8]) -> bool {
    find_end(query, SECRET_SETTING).is_some() || find_end(query, SECRET_CALL).is_some()
}

/// Cuts a message in place: after the secret setting's name wherever it appears, and after
/// the secret call in a line that quotes a statement. `buf` is the C string's bytes and its
/// NUL as the last byte; only bytes inside it are written. True when it cut.
pub fn redact_message(buf: &mut [u8]) -> bool {
    let Some((_, text)) = buf.split_last() else {
        return false;
    };
    let quotes_statement = STATEMENT_LINES
        .iter()
        .any(|p| starts_with_ignoring_case(text, p));
    let call = quotes_statement
        .then(|| find_end(text, SECRET_CALL))
        .flatten();
    let end = match (find_end(text, SECRET_SETTING), call) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => match a.or(b) {
            Some(end) => end,
            None => return false,
        },
    };
    cut_at(buf, end);
    true
}

/// Cuts a detail that quotes bind parameters ("parameters: $1 = '...'") after its label.
pub fn redact_parameters(buf: &mut [u8]) -> bool {
    let Some((_, text)) = buf.split_last() else {
        return false;
    };
    if !starts_with_ignoring_case(text, PARAMETERS) {
        return false;
    }
    cut_at(buf, PARAMETERS.len());
    true
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

    fn cut_with(text: &str, f: fn(&mut [u8]) -> bool) -> String {
        let mut buf = text.as_bytes().to_vec();
        buf.push(0);
        f(&mut buf);
        let end = buf.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(buf[..end].to_vec()).unwrap()
    }

    fn cut(text: &str) -> String {
        cut_with(text, redact_message)
    }

    #[test]
    fn messages_are_cut_after_the_first_marker() {
        assert_eq!(
            cut("parameter \"cdc_health.metrics_auth_token\" changed to \"s3cret-token-value\""),
            "parameter \"cdc_health.metrics_auth_token (not logged)"
        );
        assert_eq!(
            cut("statement: ALTER SYSTEM SET \"cdc_health\".\"METRICS_AUTH_TOKEN\" = 'x'"),
            "statement: ALTER SYSTEM SET \"cdc_health\".\"METRICS_AUTH_TOKEN"
        );
        assert_eq!(
            cut("statement: SELECT cdc_health.add_sink('pd', 'pagerduty', 'http://u:pw@h/')"),
            "statement: SELECT cdc_health.add_sink (not logged)"
        );
        assert_eq!(
            cut("duration: 0.5 ms  statement: select cdc_health.ADD_SINK('x', 'pd', 'u', '{}')"),
            "duration: 0.5 ms  statement: select cdc_health.ADD_SINK (not logged)"
        );
        // Our own messages about add_sink hold no secret and keep their words.
        let own = "cdc_health.add_sink(\"x\"): webhook URL must start with http:// or https://";
        assert_eq!(cut(own), own);
        assert_eq!(
            cut("checkpoint starting: time"),
            "checkpoint starting: time"
        );
        assert!(!redact_message(&mut []));
        assert_eq!(
            cut_with("parameters: $1 = 'http://u:pw@h/'", redact_parameters),
            "parameters: (not logged)"
        );
        assert_eq!(cut_with("Some detail", redact_parameters), "Some detail");
        assert!(statement_has_secret(b"SELECT CDC_HEALTH.Add_Sink($1)"));
        assert!(!statement_has_secret(b"SELECT cdc_health.sinks()"));
    }
}
