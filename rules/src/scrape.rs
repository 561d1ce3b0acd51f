//! The `/metrics` endpoint's HTTP: reading a request head and deciding the answer.
//!
//! Only what a scraper needs: `GET` or `HEAD` of `/metrics`, an optional bearer token, one
//! request per connection. Everything else gets a short 4xx and the connection is closed.

/// Request heads larger than this are refused (431) without reading further.
pub const MAX_HEAD_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// The head has not ended yet: read more.
    Incomplete,
    Request(Request),
    /// Not an HTTP/1.x request head.
    Malformed,
    /// The head is longer than `MAX_HEAD_BYTES`.
    TooLarge,
}

/// Parses what has been read so far of a request.
pub fn parse(buf: &[u8]) -> Parsed {
    let end = match buf.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) if end + 4 <= MAX_HEAD_BYTES => end,
        Some(_) => return Parsed::TooLarge,
        None if buf.len() >= MAX_HEAD_BYTES => return Parsed::TooLarge,
        None => return Parsed::Incomplete,
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Malformed;
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Parsed::Malformed;
    };
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Parsed::Malformed;
    }
    let mut authorization = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Parsed::Malformed;
        };
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.trim().to_string());
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    Parsed::Request(Request {
        method: method.to_string(),
        path: path.to_string(),
        authorization,
    })
}

/// What to answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The metrics (`head_only` for `HEAD`).
    Metrics { head_only: bool },
    /// A short error: status code and reason.
    Refuse(u16, &'static str),
}

/// Decides the answer to a request; `token` is `cdc_health.metrics_auth_token` when set.
pub fn decide(req: &Request, token: Option<&str>) -> Reply {
    if req.path != "/metrics" {
        return Reply::Refuse(404, "Not Found");
    }
    let head_only = match req.method.as_str() {
        "GET" => false,
        "HEAD" => true,
        _ => return Reply::Refuse(405, "Method Not Allowed"),
    };
    if let Some(token) = token {
        let given = req.authorization.as_deref().and_then(bearer);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), token.as_bytes())) {
            return Reply::Refuse(401, "Unauthorized");
        }
    }
    Reply::Metrics { head_only }
}

/// The credentials of a `Bearer` authorization (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

/// Compares secrets in time that depends on their lengths only, not on where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The whole response to a refusal.
pub fn refusal(code: u16, reason: &str) -> Vec<u8> {
    let body = format!("{code} {reason}\n");
    let auth = if code == 401 {
        "WWW-Authenticate: Bearer realm=\"cdc_health\"\r\n"
    } else if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response head of the metrics, `len` bytes of them.
pub fn metrics_head(len: usize) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {len}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

/// What to do with a new connection to the endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Accept,
    /// Accept it in place of the client at this index, which is told 408 and closed.
    Evict(usize),
    /// Answer 503 and close it.
    Refuse,
}

/// A connected client as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// Seconds since it connected.
    pub age_secs: f64,
    /// Still sending its request head (not yet answered).
    pub reading: bool,
}

/// Admission at `capacity` places. A scraper sends its whole head at once, so a client still
/// reading after `patience_secs` is slow or hostile: when every place is taken, the longest
/// such reader makes room for the newcomer. A newcomer whose whole request is already in
/// (`ready`) may push out any reader, however new: trickling clients that come back at once
/// after each 408 or 503 keep every place young, and must still not keep a scraper out. A
/// burst of fresh connections that sent nothing gets 503s rather than pushing out one another.
pub fn admit(places: &[Place], capacity: usize, patience_secs: f64, ready: bool) -> Admission {
    if places.len() < capacity {
        return Admission::Accept;
    }
    places
        .iter()
        .enumerate()
        .filter(|(_, p)| p.reading && (ready || p.age_secs >= patience_secs))
        .max_by(|(_, a), (_, b)| a.age_secs.total_cmp(&b.age_secs))
        .map_or(Admission::Refuse, |(i, _)| Admission::Evict(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(text: &str) -> Request {
        match parse(text.as_bytes()) {
            Parsed::Request(r) => r,
            other => panic!("{text:?}: {other:?}"),
        }
    }

    #[test]
    fn a_prometheus_scrape_is_parsed() {
        let r = request(
            "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9188\r\nUser-Agent: Prometheus/2.42.0\r\n\
             Accept-Encoding: gzip\r\nAuthorization: Bearer s3cret\r\n\r\n",
        );
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/metrics");
        assert_eq!(r.authorization.as_deref(), Some("Bearer s3cret"));
        assert_eq!(
            decide(&r, Some("s3cret")),
            Reply::Metrics { head_only: false }
        );
        assert_eq!(decide(&r, None), Reply::Metrics { head_only: false });
    }

    #[test]
    fn incomplete_oversized_and_malformed_heads() {
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Parsed::Incomplete
        );
        assert_eq!(parse(&vec![b'a'; MAX_HEAD_BYTES]), Parsed::TooLarge);
        let mut long = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        long.extend(vec![b'a'; MAX_HEAD_BYTES]);
        long.extend(b"\r\n\r\n");
        assert_eq!(parse(&long), Parsed::TooLarge);
        for bad in [
            "\x16\x03\x01\x02\x00\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "get /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET /metrics HTTP/1.1 extra\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
        ] {
            assert_eq!(parse(bad.as_bytes()), Parsed::Malformed, "{bad:?}");
        }
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\n\xff\xfe\r\n\r\n"),
            Parsed::Malformed
        );
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let r = request("GET /metrics?x=1 HTTP/1.0\r\n\r\n");
        assert_eq!(decide(&r, None), Reply::Metrics { head_only: false });
        let r = request("HEAD /metrics HTTP/1.1\r\n\r\n");
        assert_eq!(decide(&r, None), Reply::Metrics { head_only: true });
        let r = request("GET / HTTP/1.1\r\n\r\n");
        assert_eq!(decide(&r, None), Reply::Refuse(404, "Not Found"));
        let r = request("POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(decide(&r, None), Reply::Refuse(405, "Method Not Allowed"));
        let r = request("GET /metricsx HTTP/1.1\r\n\r\n");
        assert_eq!(decide(&r, None), Reply::Refuse(404, "Not Found"));
    }

    #[test]
    fn the_token_must_match_exactly() {
        let with = |auth: &str| {
            request(&format!(
                "GET /metrics HTTP/1.1\r\nAuthorization: {auth}\r\n\r\n"
            ))
        };
        let unauthorized = Reply::Refuse(401, "Unauthorized");
        assert_eq!(
            decide(&request("GET /metrics HTTP/1.1\r\n\r\n"), Some("t0k")),
            unauthorized
        );
        assert_eq!(decide(&with("Bearer t0"), Some("t0k")), unauthorized);
        assert_eq!(decide(&with("Bearer t0kk"), Some("t0k")), unauthorized);
        assert_eq!(decide(&with("Basic t0k"), Some("t0k")), unauthorized);
        assert_eq!(decide(&with("t0k"), Some("t0k")), unauthorized);
        assert_eq!(
            decide(&with("bearer t0k"), Some("t0k")),
            Reply::Metrics { head_only: false }
        );
        let mixed = request("GET /metrics HTTP/1.1\r\nauthorization:Bearer  t0k \r\n\r\n");
        assert_eq!(
            decide(&mixed, Some("t0k")),
            Reply::Metrics { head_only: false }
        );
    }

    #[test]
    fn refusals_are_complete_responses() {
        let text = String::from_utf8(refusal(401, "Unauthorized")).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("WWW-Authenticate: Bearer"));
        assert!(text.ends_with("\r\n\r\n401 Unauthorized\n"));
        assert!(text.contains("Content-Length: 17\r\n"));
        let head = String::from_utf8(metrics_head(5)).unwrap();
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"));
        assert!(head.contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn secrets_compare_by_content() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
        assert!(same_secret(b"", b""));
    }

    #[test]
    fn a_full_endpoint_evicts_the_longest_slow_reader_and_refuses_a_burst() {
        let p = |age_secs, reading| Place { age_secs, reading };
        assert_eq!(admit(&[p(9.0, true)], 2, 1.0, false), Admission::Accept);
        let full = [p(0.2, true), p(3.0, true), p(4.0, false), p(2.0, true)];
        assert_eq!(admit(&full, 4, 1.0, false), Admission::Evict(1));
        // Being answered, or too new to be called slow: nobody makes room ...
        let fresh = [p(0.2, true), p(0.9, true), p(4.0, false)];
        assert_eq!(admit(&fresh, 3, 1.0, false), Admission::Refuse);
        assert_eq!(admit(&[], 0, 1.0, false), Admission::Refuse);
        // ... unless the newcomer's request is whole: then the oldest reader goes.
        assert_eq!(admit(&fresh, 3, 1.0, true), Admission::Evict(1));
        assert_eq!(admit(&[p(4.0, false)], 1, 1.0, true), Admission::Refuse);
    }
}
