//! Sending a sink's requests over HTTP, on a thread that touches nothing of PostgreSQL.
//!
//! The worker starts one thread per sink and goes on with the others, so a receiver that
//! accepts and never answers holds up only its own queue, and only until its timeout.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use cdc_health_rules::delivery::sink::mask_url;
use cdc_health_rules::delivery::{classify, Request, SinkConfig, Verdict};

/// What one run of requests ended with: the first that was not delivered, or the last.
pub struct Sent {
    pub verdict: Verdict,
    pub status: Option<u16>,
}

fn agent(config: &SinkConfig) -> ureq::Agent {
    // A redirect is an answer (permanent), not an instruction.
    let user_agent = concat!("cdc_health/", env!("CARGO_PKG_VERSION"));
    crate::pg::http_client::agent(config.timeout, config.timeout, user_agent)
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// An error's text with the URL masked: a Slack webhook's path or a URL's password is a
/// credential, and this text is shown to pg_monitor and logged.
fn masked(config: &SinkConfig, url: &str, text: &str) -> String {
    let shown = mask_url(config.kind, url);
    format!("{shown}: {}", text.replace(url, &shown))
}

/// Sends `requests` in order, stopping at the first that is not delivered.
pub fn send_all(config: &SinkConfig, requests: &[Request]) -> Sent {
    let agent = agent(config);
    let mut last = Sent {
        verdict: Verdict::Delivered,
        status: None,
    };
    for r in requests {
        let mut request = agent.post(&r.url);
        for (name, value) in &r.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        last = match request.send(&r.body[..]) {
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = response
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                // Read (a little of) the body so the connection ends cleanly; it is not kept.
                let _ = response.into_body().read_to_vec();
                let verdict = match classify(status, retry_after.as_deref(), now_unix()) {
                    Verdict::Retry { after, reason } => Verdict::Retry {
                        after,
                        reason: masked(config, &r.url, &reason),
                    },
                    Verdict::Permanent { reason } => Verdict::Permanent {
                        reason: masked(config, &r.url, &reason),
                    },
                    Verdict::Delivered => Verdict::Delivered,
                };
                Sent {
                    verdict,
                    status: Some(status),
                }
            }
            Err(e) => Sent {
                verdict: Verdict::Retry {
                    after: None,
                    reason: masked(config, &r.url, &e.to_string()),
                },
                status: None,
            },
        };
        if last.verdict != Verdict::Delivered {
            break;
        }
    }
    last
}

/// Sends each request (one per Alertmanager of an HA group) whatever the others answer:
/// delivered when any accepted, as Prometheus does; a member that was down gets the open
/// alerts again at the next resend.
pub fn send_any(config: &SinkConfig, requests: &[Request]) -> Sent {
    let mut first_failure = None;
    let mut delivered = None;
    for r in requests {
        let sent = send_all(config, std::slice::from_ref(r));
        if sent.verdict == Verdict::Delivered {
            delivered.get_or_insert(sent);
        } else {
            first_failure.get_or_insert(sent);
        }
    }
    delivered.or(first_failure).unwrap_or(Sent {
        verdict: Verdict::Delivered,
        status: None,
    })
}

/// Runs `f` on a new thread; its result arrives on the receiver.
pub fn spawn<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Waits for a spawned result in a backend, answering cancellation and statement_timeout
/// every 50 ms (the thread itself ends at its own timeout).
pub fn wait_interruptible<T>(rx: &Receiver<T>) -> Option<T> {
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Timeout) => {
                pgrx::pg_sys::check_for_interrupts!();
            }
            Err(RecvTimeoutError::Disconnected) => return None,
        }
    }
}
