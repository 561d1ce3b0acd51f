//! The `/metrics` endpoint: a background worker of its own, with no database connection,
//! serving the shared-memory snapshot when `cdc_health.metrics_address` is set.
//!
//! One process, non-blocking sockets and `poll`: a slow or hostile client holds one of a few
//! connection places until its deadline, never the worker or the server. Nothing here takes
//! a heavyweight lock or a connection slot, so scrapes answer while tables are locked or
//! `max_connections` is reached.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use cdc_health_rules::scrape::{self, admit, Admission, Parsed, Place, Reply};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::settings;

/// Connections served at once. When all are taken, a client that has been sending its head
/// for `PATIENCE` makes room for the newcomer (`scrape::admit`); else the newcomer is
/// answered 503 and closed.
const MAX_CLIENTS: usize = 64;
/// How long a client may take over its request head before a newcomer may push it out.
const PATIENCE: Duration = Duration::from_secs(1);
/// While every place is taken, a newcomer's head is waited for up to this long before it is
/// judged (a scraper's arrives within microseconds of its connection) ...
const HEAD_WAIT: Duration = Duration::from_millis(5);
/// ... and all newcomers' waits in one turn together at most this long, so silent
/// connections cannot stall the loop (one that sent a byte ends its wait at once).
const HEAD_WAITS_PER_TURN: Duration = Duration::from_millis(20);
/// Time to send the request head.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// Time to take the whole answer.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// A failed bind is retried this often.
const BIND_RETRY: Duration = Duration::from_secs(10);
/// Refused requests are summed up in the log at most this often.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Longest sleep between looks at signals and settings.
const TICK: Duration = Duration::from_millis(250);

pub fn register() {
    BackgroundWorkerBuilder::new("cdc_health metrics")
        .set_type("cdc_health metrics")
        .set_library("cdc_health")
        .set_function("cdc_health_metrics_main")
        .set_start_time(BgWorkerStartTime::PostmasterStart)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_metrics_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let mut server = Server::default();
    let postmaster = std::os::unix::process::parent_id();
    loop {
        // No latch wait here, so the postmaster's death is checked by hand (an orphan is
        // re-parented): it must not keep the port.
        if BackgroundWorker::sigterm_received() || std::os::unix::process::parent_id() != postmaster
        {
            break;
        }
        if BackgroundWorker::sighup_received() {
            crate::pg::backend::reload_config();
        }
        server.configure(settings::metrics_address());
        server.turn(settings::metrics_auth_token().as_deref());
    }
}

struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    input: Vec<u8>,
    /// The whole answer, once decided; `sent` bytes of it are out.
    output: Option<Vec<u8>>,
    sent: usize,
    deadline: Instant,
    connected_at: Instant,
}

/// Refusals since the last log line about them.
#[derive(Default)]
struct Refusals {
    count: u64,
    last: Option<(u16, SocketAddr)>,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, code: u16, peer: SocketAddr) {
        self.count += 1;
        self.last = Some((code, peer));
        self.flush();
    }

    /// Logs the count if the last line is old enough (the first refusal is logged at once).
    fn flush(&mut self) {
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_EVERY);
        if self.count == 0 || !due {
            return;
        }
        if let Some((code, peer)) = self.last {
            log!(
                "cdc_health: metrics endpoint refused {} request(s) since the last report \
                 (last: {code} to {})",
                self.count,
                peer.ip()
            );
        }
        self.count = 0;
        self.logged_at = Some(Instant::now());
    }
}

#[derive(Default)]
struct Server {
    address: String,
    listener: Option<TcpListener>,
    retry_at: Option<Instant>,
    /// The last bind failure logged, so a failing address is one log line, not one a retry.
    bind_error: Option<String>,
    clients: Vec<Client>,
    refusals: Refusals,
}

impl Server {
    fn configure(&mut self, address: String) {
        if address == self.address {
            return;
        }
        if self.listener.take().is_some() {
            log!(
                "cdc_health: metrics endpoint no longer listens on {}",
                self.address
            );
        }
        self.address = address;
        self.retry_at = None;
        self.bind_error = None;
    }

    fn bind(&mut self) {
        if self.address.is_empty()
            || self.listener.is_some()
            || self.retry_at.is_some_and(|at| Instant::now() < at)
        {
            return;
        }
        let bound = self
            .address
            .to_socket_addrs()
            .map_err(|e| format!("not a host:port address ({e})"))
            .and_then(|addrs| {
                let addrs: Vec<SocketAddr> = addrs.collect();
                TcpListener::bind(&addrs[..]).map_err(|e| e.to_string())
            })
            .and_then(|l| {
                l.set_nonblocking(true)
                    .map(|_| l)
                    .map_err(|e| e.to_string())
            });
        match bound {
            Ok(listener) => {
                let at = listener
                    .local_addr()
                    .map_or_else(|_| self.address.clone(), |a| a.to_string());
                log!("cdc_health: serving metrics on http://{at}/metrics");
                self.listener = Some(listener);
                self.bind_error = None;
            }
            Err(e) => {
                if self.bind_error.as_deref() != Some(&e) {
                    warning!(
                        "cdc_health: cannot serve metrics on \"{}\" (cdc_health.metrics_address): \
                         {e}; retrying every {} s",
                        self.address,
                        BIND_RETRY.as_secs()
                    );
                    self.bind_error = Some(e);
                }
                self.retry_at = Some(Instant::now() + BIND_RETRY);
            }
        }
    }

    /// Waits up to one tick for sockets to be ready and serves what is.
    fn turn(&mut self, token: Option<&str>) {
        self.bind();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.clients.len() + 1);
        if let Some(l) = &self.listener {
            fds.push(libc::pollfd {
                fd: l.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        for c in &self.clients {
            let events = if c.output.is_some() {
                libc::POLLOUT
            } else {
                libc::POLLIN
            };
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        let now = Instant::now();
        let wait = self
            .clients
            .iter()
            .map(|c| c.deadline.saturating_duration_since(now))
            .chain([self
                .retry_at
                .map_or(TICK, |at| at.saturating_duration_since(now))])
            .fold(TICK, Duration::min);
        // SAFETY: `fds` is a valid array of its length; EINTR (a signal) just ends the wait.
        let ready = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                wait.as_millis() as libc::c_int,
            )
        };
        if ready > 0 {
            let offset = usize::from(self.listener.is_some());
            let mut i = 0;
            // Clients first (indices match `fds`), then new connections.
            self.clients.retain_mut(|c| {
                let revents = fds[offset + i].revents;
                i += 1;
                revents == 0 || serve(c, token, &mut self.refusals)
            });
            if offset == 1 && fds[0].revents != 0 {
                self.accept(token);
            }
        }
        let now = Instant::now();
        let refusals = &mut self.refusals;
        self.clients.retain_mut(|c| {
            if now < c.deadline {
                return true;
            }
            if c.output.is_none() {
                refusals.note(408, c.peer);
                let _ = c.stream.write(&scrape::refusal(408, "Request Timeout"));
            }
            false
        });
        self.refusals.flush();
    }

    fn accept(&mut self, token: Option<&str>) {
        let Some(listener) = &self.listener else {
            return;
        };
        let mut waited = Duration::ZERO;
        // A bounded number per turn, so a flood cannot keep the loop from the clients.
        for _ in 0..(MAX_CLIENTS * 2) {
            let (stream, peer) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // Out of descriptors or the like: try again next turn.
                Err(_) => return,
            };
            let mut stream = stream;
            if stream.set_nonblocking(true).is_err() {
                self.refusals.note(503, peer);
                let _ = stream.write(&scrape::refusal(503, "Service Unavailable"));
                continue;
            }
            let _ = stream.set_nodelay(true);
            let now = Instant::now();
            let mut client = Client {
                stream,
                peer,
                input: Vec::new(),
                output: None,
                sent: 0,
                deadline: now + READ_DEADLINE,
                connected_at: now,
            };
            let full = self.clients.len() >= MAX_CLIENTS;
            if full && waited < HEAD_WAITS_PER_TURN {
                let wait = HEAD_WAIT.min(HEAD_WAITS_PER_TURN - waited);
                wait_readable(&client.stream, wait);
                waited += now.elapsed();
            }
            // What it sent already is read now: a whole request is answered at once, and
            // when the answer fits the socket's buffer it needs no place at all.
            if !serve(&mut client, token, &mut self.refusals) {
                continue;
            }
            let ready = client.output.is_some();
            let admission = if full {
                let places: Vec<Place> = self
                    .clients
                    .iter()
                    .map(|c| Place {
                        age_secs: now.duration_since(c.connected_at).as_secs_f64(),
                        reading: c.output.is_none(),
                    })
                    .collect();
                admit(&places, MAX_CLIENTS, PATIENCE.as_secs_f64(), ready)
            } else {
                Admission::Accept
            };
            match admission {
                Admission::Accept => {}
                Admission::Evict(i) => {
                    let mut slow = self.clients.swap_remove(i);
                    self.refusals.note(408, slow.peer);
                    let _ = slow.stream.write(&scrape::refusal(408, "Request Timeout"));
                }
                // Its answer has begun (and every place is being written to): a refusal
                // now would land inside it. It finishes above the cap, as the others free
                // their places within WRITE_DEADLINE; past twice the cap it is closed.
                Admission::Refuse if ready => {
                    if self.clients.len() >= 2 * MAX_CLIENTS {
                        self.refusals.note(503, peer);
                        continue;
                    }
                }
                Admission::Refuse => {
                    self.refusals.note(503, peer);
                    let _ = client
                        .stream
                        .write(&scrape::refusal(503, "Service Unavailable"));
                    continue;
                }
            }
            self.clients.push(client);
        }
    }
}

/// Waits up to `wait` for `stream` to have something to read.
fn wait_readable(stream: &TcpStream, wait: Duration) {
    let mut fd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; a signal or an error just ends the wait early.
    unsafe { libc::poll(&mut fd, 1, wait.as_millis().max(1) as libc::c_int) };
}

/// Reads or writes what the socket takes now; false when the connection is done.
fn serve(c: &mut Client, token: Option<&str>, refusals: &mut Refusals) -> bool {
    if c.output.is_none() {
        let mut chunk = [0u8; 4096];
        loop {
            match c.stream.read(&mut chunk) {
                Ok(0) => return false,
                Ok(n) => {
                    c.input.extend_from_slice(&chunk[..n]);
                    if c.input.len() >= scrape::MAX_HEAD_BYTES {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        let answer = match scrape::parse(&c.input) {
            Parsed::Incomplete => return true,
            Parsed::TooLarge => Err((431, "Request Header Fields Too Large")),
            Parsed::Malformed => Err((400, "Bad Request")),
            Parsed::Request(req) => match scrape::decide(&req, token) {
                Reply::Metrics { head_only } => Ok(head_only),
                Reply::Refuse(code, reason) => Err((code, reason)),
            },
        };
        c.output = Some(match answer {
            Ok(head_only) => metrics_response(head_only),
            Err((code, reason)) => {
                refusals.note(code, c.peer);
                scrape::refusal(code, reason)
            }
        });
        c.input = Vec::new();
        c.deadline = Instant::now() + WRITE_DEADLINE;
    }
    let Some(out) = &c.output else {
        return true;
    };
    while c.sent < out.len() {
        match c.stream.write(&out[c.sent..]) {
            Ok(0) => return false,
            Ok(n) => c.sent += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    let _ = c.stream.shutdown(std::net::Shutdown::Write);
    false
}

fn metrics_response(head_only: bool) -> Vec<u8> {
    let (mut body, truncated) = super::snapshot::read().unwrap_or_default();
    body.extend_from_slice(super::render_worker_now(truncated).as_bytes());
    let mut out = scrape::metrics_head(body.len());
    if !head_only {
        out.extend_from_slice(&body);
    }
    out
}
