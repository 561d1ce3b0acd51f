//! The delivery worker: sends each sink's queue in order, one thread per sink in flight, and
//! records every outcome in a short transaction of its own.
//!
//! Nothing here waits on the network inside a transaction: a batch is read and committed,
//! sent, and only then is the outcome written. A crash in between leaves the rows pending,
//! so they are sent again with the same delivery ids.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use cdc_health_rules::alerts::Observed;
use cdc_health_rules::delivery::{backoff_secs, batches, requests, Request, Verdict};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use serde_json::json;

use super::send::{self, Sent};
use crate::outbox::{self, Outcome, StoredSink};
use crate::pg::clock::now_secs;
use crate::pg::errors::{Internal, OrRaise};
use crate::pg::transaction::{guarded, limit_own_statements};
use crate::{alerts, settings};

/// Transitions read per sink and round: Alertmanager takes them in one request, the other
/// kinds one request each.
const BATCH: i64 = 100;
/// How often expiry, the queue bound, pruning and `delivery_failed` are looked at.
const HOUSEKEEPING_SECS: f64 = 5.0;
/// How long a sink waits after its outcome could not be recorded.
const HOLD_SECS: f64 = 5.0;

pub fn register() {
    BackgroundWorkerBuilder::new("cdc_health delivery")
        .set_type("cdc_health delivery")
        .set_library("cdc_health")
        .set_function("cdc_health_delivery_worker_main")
        .enable_spi_access()
        // A standby writes no alerts; its primary delivers them.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Requests for a group of transitions sent together, and the delivery ids they carry.
struct Unit {
    ids: Vec<i64>,
    requests: Vec<Request>,
}

struct InFlight {
    rx: Receiver<Vec<(Vec<i64>, Sent)>>,
    /// Failed attempts of the head before this one.
    attempts: i32,
    /// A periodic resend of open alerts to Alertmanager, not queued transitions.
    resend: bool,
}

/// Sends units in order on the current thread; stops after the first retryable failure
/// (what follows must not overtake it), goes on after a permanent one.
fn send_units(
    config: cdc_health_rules::delivery::SinkConfig,
    units: Vec<Unit>,
) -> Vec<(Vec<i64>, Sent)> {
    let mut out = Vec::new();
    for unit in units {
        let sent = if batches(config.kind) {
            send::send_any(&config, &unit.requests)
        } else {
            send::send_all(&config, &unit.requests)
        };
        let stop = matches!(sent.verdict, Verdict::Retry { .. });
        out.push((unit.ids, sent));
        if stop {
            break;
        }
    }
    out
}

/// A jitter factor in [0, 1): the clock's nanoseconds are random enough to spread retries.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// Raises or clears `delivery_failed` on `sink:<name>` from the sink's row.
fn judge(sink: &str) -> SpiResult<()> {
    let subject = format!("sink:{sink}");
    let observed: Vec<Observed> = outbox::sink_finding(sink)?
        .into_iter()
        .map(|f| Observed {
            subject: subject.clone(),
            remediation: f.remedy.clone(),
            detail: json!({ "sink": sink }),
            finding: f,
        })
        .collect();
    alerts::apply_subject(&subject, &observed, now_secs(), settings::alert_policy())?;
    Ok(())
}

/// Writes what the receiver said; a permanent failure raises `delivery_failed` at once.
fn record(name: &str, attempts: i32, resend: bool, results: &[(Vec<i64>, Sent)]) -> SpiResult<()> {
    if resend {
        let error = results.iter().find_map(|(_, s)| match &s.verdict {
            Verdict::Retry { reason, .. } | Verdict::Permanent { reason } => Some(reason.clone()),
            Verdict::Delivered => None,
        });
        return outbox::resent(name, error.as_deref());
    }
    let mut failed = false;
    for (ids, sent) in results {
        let outcome = match &sent.verdict {
            Verdict::Delivered => Outcome::Delivered,
            Verdict::Retry { after, reason } => {
                let attempts = u32::try_from(attempts).unwrap_or(0) + 1;
                Outcome::Retry {
                    reason: reason.clone(),
                    wait_secs: backoff_secs(attempts, *after, jitter()),
                }
            }
            Verdict::Permanent { reason } => {
                failed = true;
                Outcome::Failed {
                    reason: reason.clone(),
                }
            }
        };
        outbox::record(name, ids, &outcome, sent.status)?;
    }
    if failed {
        // A delivery after the refused one must not hide the loss.
        outbox::set_failing(name)?;
        warning!(
            "cdc_health: sink \"{name}\" refused an alert transition for good: {}",
            results
                .iter()
                .find_map(|(_, s)| match &s.verdict {
                    Verdict::Permanent { reason } => Some(reason.as_str()),
                    _ => None,
                })
                .unwrap_or("")
        );
        judge(name)?;
    }
    Ok(())
}

fn housekeeping() -> SpiResult<()> {
    let sinks = outbox::load_sinks()?;
    // Read-only while there is nothing to do: an idle server spends no transaction ids here.
    let due = outbox::housekeeping_due()?;
    if sinks.is_empty() && !due.any() {
        return Ok(());
    }
    if due.expired {
        for (sink, n) in outbox::give_up_expired()? {
            warning!(
                "cdc_health: gave up {n} alert transition(s) for sink \"{sink}\" after \
                 cdc_health.delivery_max_age"
            );
        }
    }
    if due.overflow {
        for (sink, n) in outbox::drop_overflow()? {
            warning!(
                "cdc_health: dropped the {n} oldest alert transition(s) waiting for sink \
                 \"{sink}\": more than cdc_health.delivery_max_pending ({}) waited",
                settings::delivery_max_pending()
            );
        }
    }
    if due.prunable {
        outbox::prune()?;
    }
    for sink in sinks {
        judge(&sink.name)?;
    }
    Ok(())
}

/// What to send next for `sink`, if anything is due.
fn next_units(sink: &StoredSink, now: f64) -> SpiResult<Option<(Vec<Unit>, bool)>> {
    if sink.next_attempt_at.is_some_and(|at| at > now) {
        return Ok(None);
    }
    let batch = outbox::pending(&sink.name, BATCH)?;
    if !batch.is_empty() {
        let units = if batches(sink.config.kind) {
            vec![Unit {
                ids: batch.iter().map(|t| t.delivery_id).collect(),
                requests: requests(&sink.config, &batch),
            }]
        } else {
            batch
                .iter()
                .map(|t| Unit {
                    ids: vec![t.delivery_id],
                    requests: requests(&sink.config, std::slice::from_ref(t)),
                })
                .collect()
        };
        return Ok(Some((units, false)));
    }
    // Alertmanager forgets an alert not sent again within its resolve_timeout.
    let resend_due = sink
        .resent_at
        .is_none_or(|at| now - at >= settings::alertmanager_resend_secs());
    if batches(sink.config.kind) && resend_due {
        let open = outbox::open_alerts(sink)?;
        if open.is_empty() {
            return Ok(None);
        }
        let units = vec![Unit {
            ids: Vec::new(),
            requests: requests(&sink.config, &open),
        }];
        return Ok(Some((units, true)));
    }
    Ok(None)
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_delivery_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = settings::database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    limit_own_statements();
    log!("cdc_health: delivery worker started in database \"{database}\"");
    let mut in_flight: HashMap<String, InFlight> = HashMap::new();
    // Sinks whose last outcome could not be recorded wait this long (Unix time) before the
    // next try, rather than being sent the same rows again at once.
    let mut held: HashMap<String, f64> = HashMap::new();
    let mut last_housekeeping = 0.0;
    let mut last_failure: Option<(String, f64)> = None;
    loop {
        if BackgroundWorker::sighup_received() {
            crate::pg::backend::reload_config();
        }
        // Outcomes of finished sends.
        let mut finished = Vec::new();
        in_flight.retain(|name, flight| match flight.rx.try_recv() {
            Ok(results) => {
                finished.push((name.clone(), flight.attempts, flight.resend, results));
                false
            }
            Err(TryRecvError::Empty) => true,
            // The thread panicked: nothing is known, so everything is sent again, later.
            Err(TryRecvError::Disconnected) => {
                held.insert(name.clone(), now_secs() + HOLD_SECS);
                false
            }
        });
        for (name, attempts, resend, results) in finished {
            if let Err(m) = transaction(|| record(&name, attempts, resend, &results)) {
                held.insert(name.clone(), now_secs() + HOLD_SECS);
                crate::pg::transaction::log_failure(
                    "recording a delivery failed",
                    m,
                    &mut last_failure,
                );
            }
        }
        let now = now_secs();
        let installed = transaction(|| Ok(crate::pg::extension::installed()?.is_current()));
        if installed == Ok(true) {
            if now - last_housekeeping >= HOUSEKEEPING_SECS {
                last_housekeeping = now;
                if let Err(m) = transaction(housekeeping) {
                    crate::pg::transaction::log_failure(
                        "delivery housekeeping failed",
                        m,
                        &mut last_failure,
                    );
                }
            }
            held.retain(|_, until| *until > now);
            let busy: Vec<String> = in_flight.keys().chain(held.keys()).cloned().collect();
            let starts = transaction(|| {
                let mut starts = Vec::new();
                for sink in outbox::load_sinks()? {
                    if busy.contains(&sink.name) {
                        continue;
                    }
                    if let Some((units, resend)) = next_units(&sink, now)? {
                        starts.push((sink, units, resend));
                    }
                }
                Ok(starts)
            });
            match starts {
                Ok(starts) => {
                    for (sink, units, resend) in starts {
                        let config = sink.config.clone();
                        let rx = send::spawn(move || send_units(config, units));
                        in_flight.insert(
                            sink.name,
                            InFlight {
                                rx,
                                attempts: sink.attempts,
                                resend,
                            },
                        );
                    }
                }
                Err(m) => crate::pg::transaction::log_failure(
                    "reading the outbox failed",
                    m,
                    &mut last_failure,
                ),
            }
        }
        let wait = if in_flight.is_empty() { 250 } else { 20 };
        if !BackgroundWorker::wait_latch(Some(Duration::from_millis(wait))) {
            break;
        }
    }
    log!("cdc_health: delivery worker stopped");
}

/// Runs `body` in a transaction of its own; an SPI error aborts it like any other error, so
/// no half of a round's writes is committed.
fn transaction<T>(
    body: impl FnOnce() -> SpiResult<T> + std::panic::UnwindSafe,
) -> Result<T, String> {
    guarded(|| body().or_raise(|e| Internal("a delivery round", e)))
}
