//! One ClickHouse query over HTTP, read as a stream of chunks.
//!
//! The request runs on a helper thread that touches nothing of PostgreSQL; the backend waits
//! on a bounded channel in short steps, so `statement_timeout` and Ctrl-C are answered while
//! ClickHouse thinks, and a large result never sits in memory at once. On cancellation the
//! query is also killed on the ClickHouse side.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::Duration;

use cdc_health_rules::clickhouse::{quote_literal, remote_error, RowReader, Server};
use pgrx::pg_sys;

use crate::pg::errors::SqlError;

/// Credentials from the user mapping.
#[derive(Clone, Default)]
pub struct Credentials {
    pub user: Option<String>,
    pub password: Option<String>,
}

enum Chunk {
    /// The response's `X-ClickHouse-Exception-Tag` (25.11+), before any body bytes.
    Tag(String),
    Data(Vec<u8>),
    End,
    Failed(String),
}

/// Bytes read per chunk and chunks in flight: at most about 1 MB buffered per scan.
const CHUNK: usize = 64 * 1024;
const IN_FLIGHT: usize = 16;
/// How often the waiting backend looks at its interrupts.
const POLL: Duration = Duration::from_millis(50);
/// Longest error body kept.
const ERROR_BODY: u64 = 64 * 1024;

pub struct Stream {
    rx: Receiver<Chunk>,
    server: Server,
    credentials: Credentials,
    query_id: String,
    done: bool,
    tag: Option<String>,
    pub bytes_received: u64,
}

fn agent(server: &Server) -> ureq::Agent {
    crate::pg::http_client::agent(server.connect_timeout, server.timeout, "cdc_health")
}

fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sends `sql` and reads the answer into `tx`; runs on the helper thread.
fn run(
    server: Server,
    credentials: Credentials,
    query_id: String,
    sql: String,
    tx: std::sync::mpsc::SyncSender<Chunk>,
) {
    // ClickHouse stops the query itself a little after we would give up.
    let limit = server.timeout.as_secs().max(1) + 1;
    let url = format!(
        "{}/?database={}&query_id={}&max_execution_time={limit}",
        server.url,
        encode(&server.database),
        encode(&query_id)
    );
    let mut request = agent(&server).post(&url);
    if let Some(user) = &credentials.user {
        request = request.header("X-ClickHouse-User", user);
    }
    if let Some(password) = &credentials.password {
        request = request.header("X-ClickHouse-Key", password);
    }
    let response = match request.send(sql.as_bytes()) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Chunk::Failed(transport_error(&server, &e)));
            return;
        }
    };
    let status = response.status().as_u16();
    let code = response
        .headers()
        .get("X-ClickHouse-Exception-Code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(tag) = response
        .headers()
        .get("X-ClickHouse-Exception-Tag")
        .and_then(|v| v.to_str().ok())
    {
        let _ = tx.send(Chunk::Tag(tag.to_string()));
    }
    let mut reader = response.into_body().into_reader();
    if status >= 300 {
        let mut body = Vec::new();
        let _ = reader.by_ref().take(ERROR_BODY).read_to_end(&mut body);
        let error = remote_error(status, code.as_deref(), &String::from_utf8_lossy(&body));
        let _ = tx.send(Chunk::Failed(error.to_string()));
        return;
    }
    loop {
        let mut buf = vec![0u8; CHUNK];
        match reader.read(&mut buf) {
            Ok(0) => {
                let _ = tx.send(Chunk::End);
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                // The backend went away (scan ended or cancelled): stop reading.
                if tx.send(Chunk::Data(buf)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let why = match io_reason(&e) {
                    None => format!(
                        "no complete answer within timeout ({:?}); a large scan needs a \
                         larger timeout option on the server",
                        server.timeout
                    ),
                    Some(other) => other,
                };
                let _ = tx.send(Chunk::Failed(format!(
                    "reading the answer of ClickHouse at {} failed: {why}",
                    server.url
                )));
                return;
            }
        }
    }
}

/// Why a read failed; `None` for a timeout.
fn io_reason(e: &std::io::Error) -> Option<String> {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ureq::Error>())
    {
        Some(ureq::Error::Timeout(_)) => None,
        Some(inner) => Some(inner.to_string()),
        None if e.kind() == std::io::ErrorKind::TimedOut => None,
        None => Some(e.to_string()),
    }
}

/// The URL carries no credentials (the validator refuses them), so it may be named.
fn transport_error(server: &Server, e: &ureq::Error) -> String {
    let why = match e {
        ureq::Error::Timeout(ureq::Timeout::Connect) => format!(
            "no connection within connect_timeout ({:?})",
            server.connect_timeout
        ),
        ureq::Error::Timeout(_) => format!("no answer within timeout ({:?})", server.timeout),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    format!("could not query ClickHouse at {}: {why}", server.url)
}

/// Starts `sql` on a helper thread. Signals stay with the backend's own thread: PostgreSQL's
/// handlers (cancel, timeouts, latches) must not run on a thread of ours.
pub fn start(server: &Server, credentials: &Credentials, sql: String) -> Stream {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    let query_id = format!(
        "cdc_health-{}-{}",
        crate::pg::backend::my_pid(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let (s, c, q) = (server.clone(), credentials.clone(), query_id.clone());
    with_signals_blocked(|| {
        std::thread::Builder::new()
            .name("cdc_health http".into())
            .spawn(move || run(s, c, q, sql, tx))
    })
    .unwrap_or_else(|e| super::Error::NoThread(e.to_string()).raise());
    Stream {
        rx,
        server: server.clone(),
        credentials: credentials.clone(),
        query_id,
        done: false,
        tag: None,
        bytes_received: 0,
    }
}

fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: only this thread's signal mask changes, and it is restored before returning:
    // a thread spawned inside inherits the mask, so signals stay with the backend's thread.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
        let r = f();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        r
    }
}

impl Stream {
    /// Pushes the next chunk of the answer into `reader` (telling it the exception tag first);
    /// false at the end of the answer, after `reader.finish()`. An error is the message to
    /// report.
    pub fn feed(&mut self, reader: &mut RowReader) -> Result<bool, String> {
        match self.next()? {
            Some(chunk) => {
                if let Some(tag) = self.tag.take() {
                    reader.set_exception_tag(Some(&tag));
                }
                reader.push(&chunk);
                Ok(true)
            }
            None => {
                reader.finish();
                Ok(false)
            }
        }
    }

    /// The next chunk of the answer, `None` at its end. Waits while answering interrupts;
    /// an error is the message to report.
    fn next(&mut self) -> Result<Option<Vec<u8>>, String> {
        if self.done {
            return Ok(None);
        }
        loop {
            match self.rx.recv_timeout(POLL) {
                Ok(Chunk::Tag(tag)) => self.tag = Some(tag),
                Ok(Chunk::Data(d)) => {
                    self.bytes_received += d.len() as u64;
                    return Ok(Some(d));
                }
                Ok(Chunk::End) => {
                    self.done = true;
                    return Ok(None);
                }
                Ok(Chunk::Failed(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    return Err("the ClickHouse request ended without an answer".into());
                }
                Err(RecvTimeoutError::Timeout) => self.answer_interrupts(),
            }
        }
    }

    fn answer_interrupts(&mut self) {
        // SAFETY: plain reads of the backend's interrupt flags, on its own thread.
        unsafe {
            if pg_sys::InterruptPending != 0
                && (pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0)
            {
                self.kill_remote();
            }
        }
        pgrx::check_for_interrupts!();
    }

    /// Asks ClickHouse to stop our query, without waiting for the answer.
    fn kill_remote(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut server = self.server.clone();
        server.timeout = server.connect_timeout.min(Duration::from_secs(5));
        let credentials = self.credentials.clone();
        let kill_id = format!("{}-kill", self.query_id);
        let sql = format!(
            "KILL QUERY WHERE query_id = {} ASYNC",
            quote_literal(&self.query_id)
        );
        let _ = with_signals_blocked(|| {
            std::thread::Builder::new()
                .name("cdc_health kill".into())
                .spawn(move || {
                    let (tx, _rx) = sync_channel(IN_FLIGHT);
                    run(server, credentials, kill_id, sql, tx);
                })
        });
    }
}

impl Drop for Stream {
    /// A scan that stops early (LIMIT, an error) leaves nothing running in ClickHouse.
    fn drop(&mut self) {
        self.kill_remote();
    }
}
