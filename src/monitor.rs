//! One look at every slot, and one monitoring pass built on it.
//!
//! `observe` samples the catalogs, feeds the worker's history in shared memory and assesses
//! each slot (used by `cdc_health()` and by the pass). `pass` then writes history, raises and
//! resolves alerts and beats the heartbeat; the background worker and `check_now()` run it.

use std::collections::HashMap;

use cdc_health_rules::alerts::Event;
use cdc_health_rules::alerts::Observed;
use cdc_health_rules::consumer::{
    consumer_findings, stall_kind, stall_remedy, summarize, LiveSession,
};
use cdc_health_rules::failover::{
    failover_unready, standby_slot_blocking, synced_copy_unready, FailoverSetup,
};
use cdc_health_rules::history::{history_findings, HistoryLimits, Sample};
use cdc_health_rules::idle_timeout::idle_timeout_finding;
use cdc_health_rules::json::Json;
use cdc_health_rules::remediation::remedy_for;
use cdc_health_rules::transactions::{
    blockers_to_terminate, creation_finding, long_transaction_finding, Creation, Transaction,
};
use cdc_health_rules::SlotType;
use cdc_health_rules::{assess_slot, worst_first, Finding, ServerObservation, SlotObservation};
use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use serde_json::{json, Value};

use crate::alerts::Applied;
use crate::pg::clock::now_secs;
use crate::pg::role::Switched;
use crate::server::wal;
use crate::slots::consumers::Consumers;
use crate::slots::view::{HistoryView, SlotView, Untracked};
use crate::slots::{creations, sampling};
use crate::{alerts, history, settings, shmem};

fn view_of(
    (at, entry): (usize, &shmem::Entry),
    now: f64,
    limits: &HistoryLimits,
    ceiling: i64,
) -> HistoryView {
    let (findings, forecast) = history_findings(&entry.track, now, ceiling, limits);
    HistoryView {
        entry: at,
        findings,
        forecast,
        last_progress_at: entry.track.last_progress_at,
        inactive_for: entry.track.inactive_for(now),
        oldest_position: entry.track.samples.front().and_then(|s| s.consumer_lsn()),
    }
}

/// What the worker's history adds to each slot (in the slots' order), and whether a slot
/// without history could have an entry (a pass assigns them; a read only finds them).
struct Histories {
    views: Option<Vec<Option<HistoryView>>>,
    room: bool,
}

/// The transactions and standbys that bear on the slots: waiting creations, long
/// transactions, walsenders waiting for standbys, readiness for a promotion.
struct Surroundings {
    waiting: Vec<Creation>,
    long: Vec<Transaction>,
    long_warning: f64,
    creation_critical: f64,
    blocking: Vec<(String, Finding)>,
    /// Per slot, in the slots' order.
    unready: Vec<Option<Finding>>,
}

/// Samples and assesses every slot, worst first. With `record` the samples also go into the
/// shared history (the monitoring pass does this; plain `cdc_health()` calls only read it).
pub fn observe(record: bool) -> SpiResult<(ServerObservation, Vec<SlotView>)> {
    let server = sampling::server();
    let slots = sampling::slots();
    let now = now_secs();
    // Read once, outside the lock, for every slot's history. Without a budget the volume
    // holding pg_wal is the limit growing WAL runs into (one statvfs).
    let hist_limits = HistoryLimits {
        disk_free_bytes: (server.wal_budget_bytes.is_none() && settings::wal_volume_check())
            .then(crate::server::volume::wal_volume)
            .flatten()
            .map(|v| v.free_bytes),
        ..settings::history_limits()
    };
    // Before the histories: a sample records what the consumer's walsender sent it.
    let consumers = Consumers::read(&slots)?;
    let histories = histories(record, &slots, &server, &consumers, now, &hist_limits);
    let surroundings = surroundings(&slots, &server)?;
    let views = worst_first_order(assess_each(
        slots,
        &server,
        histories,
        surroundings,
        consumers,
        &hist_limits,
    ));
    if record {
        let untracked = views
            .iter()
            .filter(|v| v.untracked == Untracked::NoRoom)
            .count();
        shmem::update_worker(|w| w.untracked_slots = u32::try_from(untracked).unwrap_or(u32::MAX));
    }
    Ok((server, views))
}

/// Step 1: each slot's history, recorded into shared memory first when `record`.
fn histories(
    record: bool,
    slots: &[SlotObservation],
    server: &ServerObservation,
    consumers: &Consumers,
    now: f64,
    hist_limits: &HistoryLimits,
) -> Histories {
    let ceiling = settings::forecast_ceiling_bytes();
    let mut room = false;
    let views = if record {
        let names: Vec<&str> = slots.iter().map(|s| s.slot_name.as_str()).collect();
        shmem::write_assigned(&names, |entries, assigned| {
            slots
                .iter()
                .zip(assigned)
                .map(|(slot, at)| {
                    let at = at?;
                    let entry = &mut entries[at];
                    let live = consumers.live_of(slot);
                    entry.track.record(Sample {
                        reply_at: live.and_then(|l| l.reply_at),
                        ..Sample::observe(slot, server.current_lsn, now)
                    });
                    Some(view_of((at, entry), now, hist_limits, ceiling))
                })
                .collect()
        })
    } else {
        shmem::read(|entries| {
            let at = shmem::locate(entries, slots.iter().map(|s| s.slot_name.as_str()));
            room = entries.iter().filter(|e| e.in_use).count() < settings::max_tracked_slots();
            at.into_iter()
                .map(|at| at.map(|i| view_of((i, &entries[i]), now, hist_limits, ceiling)))
                .collect()
        })
    };
    Histories { views, room }
}

/// Step 2: what around the slots bears on them, looked for only where it could matter.
fn surroundings(slots: &[SlotObservation], server: &ServerObservation) -> SpiResult<Surroundings> {
    // Creations leave a logical slot without a confirmed position; long transactions pin
    // logical slots.
    let logical = |s: &&SlotObservation| s.slot_type == SlotType::Logical;
    let waiting = if slots
        .iter()
        .filter(logical)
        .any(|s| s.confirmed_flush_lsn.is_none())
    {
        creations::in_progress()?
    } else {
        Vec::new()
    };
    let long_warning = settings::long_transaction_warning_secs();
    // A transaction can only pin a slot whose catalog_xmin is not newer than its xid, and the
    // oldest running one is known for free: skip pg_stat_activity when none is that old.
    let oldest = sampling::oldest_running_xid_age();
    // With nothing running the snapshot's xmin is the next xid (age 0): nothing can pin.
    let pinnable = |s: &SlotObservation| match (s.catalog_xmin_age, oldest) {
        (_, Some(0)) => false,
        (Some(slot_age), Some(oldest)) => slot_age <= oldest,
        _ => true,
    };
    let long = if slots.iter().filter(logical).any(pinnable) {
        creations::long_transactions(long_warning)?
    } else {
        Vec::new()
    };
    // Failover slots waiting on a standby (17+): only looked for when standbys are listed.
    let listed = sampling::synchronized_standby_slots();
    let blocking = if listed.is_empty() {
        Vec::new()
    } else {
        standby_slot_blocking(slots, &listed, &creations::waiting_for_standby()?)
    };
    Ok(Surroundings {
        waiting,
        long,
        long_warning,
        creation_critical: settings::stall_after_secs(),
        blocking,
        unready: unready(slots, server, listed),
    })
}

/// Readiness for a promotion, per slot: on the primary from its slots and settings, on a
/// standby from its synchronized copies and its own settings.
fn unready(
    slots: &[SlotObservation],
    server: &ServerObservation,
    listed: Vec<String>,
) -> Vec<Option<Finding>> {
    let expect = settings::expect_failover();
    let judged = expect != settings::ExpectFailover::Off;
    let failover_setup = (judged && !server.in_recovery).then(|| FailoverSetup {
        listed,
        expected: expect == settings::ExpectFailover::On,
    });
    let standby_sync =
        (judged && server.in_recovery && slots.iter().any(|s| s.synced == Some(true)))
            .then(sampling::standby_sync);
    let physical: Vec<SlotObservation> = match failover_setup {
        Some(_) => slots
            .iter()
            .filter(|s| s.slot_type == SlotType::Physical)
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    slots
        .iter()
        .map(|s| match (&failover_setup, &standby_sync) {
            (Some(f), _) => failover_unready(s, &physical, f),
            (None, Some(sync)) => synced_copy_unready(s, sync),
            (None, None) => None,
        })
        .collect()
}

/// Step 3: each slot's verdict from its observation, its history and its surroundings.
fn assess_each(
    slots: Vec<SlotObservation>,
    server: &ServerObservation,
    mut histories: Histories,
    surroundings: Surroundings,
    consumers: Consumers,
    hist_limits: &HistoryLimits,
) -> Vec<SlotView> {
    let limits = settings::thresholds();
    let Surroundings {
        mut waiting,
        long,
        long_warning,
        creation_critical,
        blocking,
        unready,
    } = surroundings;
    let now = now_secs();
    slots
        .into_iter()
        .zip(unready)
        .enumerate()
        .map(|(i, (mut slot, unready))| {
            let (mut history, untracked) = match &mut histories.views {
                None => (None, Untracked::NotPreloaded),
                Some(h) => match h[i].take() {
                    Some(view) => (Some(view), Untracked::No),
                    None if histories.room => (None, Untracked::NotYetSampled),
                    None => (None, Untracked::NoRoom),
                },
            };
            if slot.inactive_for_secs.is_none() {
                slot.inactive_for_secs = history.as_ref().and_then(|h| h.inactive_for);
            }
            let mut verdict = assess_slot(&slot, server, &limits);
            // Moved, not copied: the view keeps its history only for the figures.
            if let Some(h) = &mut history {
                verdict.add_findings(std::mem::take(&mut h.findings));
            }
            let creation = waiting
                .iter()
                .position(|c| c.slot_name == slot.slot_name)
                .map(|i| waiting.swap_remove(i));
            let mut extra: Vec<Finding> = creation
                .iter()
                .map(|c| creation_finding(c, creation_critical))
                .collect();
            extra.extend(long_transaction_finding(&slot, &long, long_warning));
            extra.extend(
                blocking
                    .iter()
                    .filter(|(name, _)| *name == slot.slot_name)
                    .map(|(_, f)| f.clone()),
            );
            extra.extend(unready);
            extra.extend(idle_timeout_finding(
                &slot,
                server,
                hist_limits.eta_warning_secs,
                hist_limits.eta_critical_secs,
            ));
            let live = consumers.live_of(&slot).copied();
            let consumer = summarize(
                consumers.events_of(&slot),
                live.as_ref(),
                history.as_ref().and_then(|h| h.oldest_position),
                now,
                hist_limits.forecast_window_secs,
            );
            extra.extend(consumer_findings(
                &consumer,
                now,
                hist_limits.forecast_window_secs,
                hist_limits.stall_after_secs,
                slot.confirmed_flush_lsn.or(slot.restart_lsn),
                slot.is_lost(),
            ));
            verdict.add_findings(extra);
            explain_stall(
                &mut verdict,
                live.as_ref(),
                now,
                hist_limits.stall_after_secs,
            );
            SlotView {
                slot,
                verdict,
                history,
                untracked,
                creation,
                consumer,
                live,
            }
        })
        .collect()
}

/// A `stalled` finding's remedy says which stall it is, when the consumer's last reply is
/// known: answering keepalives without flushing, or silent.
fn explain_stall(
    verdict: &mut cdc_health_rules::SlotAssessment,
    live: Option<&LiveSession>,
    now: f64,
    stall_after: f64,
) {
    let Some(live) = live else { return };
    let Some(kind) = stall_kind(live, now, stall_after) else {
        return;
    };
    for f in &mut verdict.findings {
        if f.code == cdc_health_rules::FindingCode::Stalled {
            f.remedy = Some(stall_remedy(kind, now, live));
        }
    }
}

/// The views worst first. A view is several hundred bytes: sorting them in place moved each
/// one about log2(n) times, a measurable share of a pass at thousands of slots, so the sort
/// runs on indices and each view moves once.
fn worst_first_order(views: Vec<SlotView>) -> Vec<SlotView> {
    let mut order: Vec<usize> = (0..views.len()).collect();
    order.sort_by(|&a, &b| worst_first(&views[a].verdict, &views[b].verdict));
    let mut taken: Vec<Option<SlotView>> = views.into_iter().map(Some).collect();
    // Sized up front: collecting from filter_map grew it by doubling, moving every view again.
    let mut sorted = Vec::with_capacity(order.len());
    sorted.extend(order.into_iter().filter_map(|i| taken[i].take()));
    sorted
}

/// The `detail` of one slot, including what the worker knows or why it knows nothing.
/// `worker` is `shmem::worker_status()`, read once by the caller for all rows.
pub fn detail(
    view: &SlotView,
    server: &ServerObservation,
    worker: Option<shmem::WorkerStatus>,
) -> Json {
    let mut detail = view.verdict.detail(&view.slot, server);
    if let Some(c) = &view.creation {
        let (snapshots, lsn) = shmem::nudges_for(c.pid, &c.slot_name);
        let creation = json!({
            "pid": c.pid,
            "backend_type": c.backend_type,
            "waiting_secs": c.waiting_secs,
            "blockers": c.blockers,
            "snapshots_logged": snapshots,
            "last_snapshot_lsn": lsn.map(cdc_health_rules::lsn::format_lsn),
        });
        detail.insert("creation", creation.into());
    }
    let worker = match (view.untracked, worker) {
        (Untracked::NotPreloaded, _) | (_, None) => Json::object([
            ("running", false.into()),
            (
                "note",
                "the background worker is not running: add cdc_health to \
                 shared_preload_libraries for stalled, growth and forecast findings"
                    .into(),
            ),
        ]),
        (untracked, Some(w)) => Json::object([
            ("running", (w.pid != 0).into()),
            ("pid", w.pid.into()),
            ("passes", w.passes.into()),
            (
                "history",
                match untracked {
                    Untracked::NoRoom => "not kept: more slots than cdc_health.max_tracked_slots",
                    Untracked::NotYetSampled => {
                        "not sampled yet: the slot is newer than the worker's last pass"
                    }
                    _ => "kept",
                }
                .into(),
            ),
        ]),
    };
    detail.insert("worker", worker);
    detail.insert(
        "consumer",
        cdc_health_rules::consumer::detail(&view.consumer, view.live.as_ref()),
    );
    detail
}

/// The standby's can't-nudge message is logged once per worker.
static STANDBY_NUDGE_NOTED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Takes the lock that serialises passes (the worker's and `check_now()`'s) for the rest of
/// the transaction; false when `wait` is off and another pass holds it.
///
/// Not an advisory lock: any role can take those, and a role holding the key would silently
/// switch monitoring off. This is a heavyweight lock on the extension object itself (sub-id 1,
/// apart from the DDL locks on sub-id 0), which no SQL command lets an ordinary role take;
/// waiting for it is interruptible and seen by the deadlock detector like any lock.
fn lock_passes(wait: bool, extension: Option<pg_sys::Oid>) -> bool {
    // SAFETY: catalog lookup and lock manager call in a backend inside a transaction.
    unsafe {
        let extension =
            extension.unwrap_or_else(|| pg_sys::get_extension_oid(c"cdc_health".as_ptr(), true));
        let tag = pg_sys::LOCKTAG {
            locktag_field1: pg_sys::MyDatabaseId.to_u32(),
            locktag_field2: pg_sys::ExtensionRelationId.to_u32(),
            locktag_field3: extension.to_u32(),
            locktag_field4: 1,
            locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
            locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
        };
        let got = pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as i32, false, !wait);
        got != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
    }
}

/// What one pass saw and did.
pub struct Pass {
    pub server: ServerObservation,
    pub views: Vec<SlotView>,
    pub applied: Vec<Applied>,
}

/// One monitoring pass. With `wait` it queues behind a concurrent pass; without, it skips
/// (returns `None`, counted in `worker_status().skipped_passes`) when another pass is running.
/// Writes nothing on a standby. `extension` is the extension's OID when the caller has just
/// read it (see `installed`).
pub fn pass(wait: bool, extension: Option<pg_sys::Oid>) -> SpiResult<Option<Pass>> {
    // check_now() runs this in the caller's session: our statements, not its search_path.
    let _path = Switched::safe_search_path();
    // A standby only samples into shared memory: it can write nothing, and nothing else
    // runs passes there (check_now() refuses), so no lock is needed.
    if crate::pg::backend::in_recovery() {
        let (server, views) = observe(true)?;
        // The standby's own volume fills too: kept for wal_usage(), no alert written here.
        wal::assess(&server, views.iter().map(|v| &v.slot), now_secs(), true)?;
        if views.iter().any(|v| v.creation.is_some())
            && !STANDBY_NUDGE_NOTED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            log!(
                "cdc_health: a logical slot creation waits on this standby; standby snapshots \
                 can only be logged on the primary (SELECT pg_log_standby_snapshot() there)"
            );
        }
        return Ok(Some(Pass {
            server,
            views,
            applied: Vec::new(),
        }));
    }
    if !lock_passes(wait, extension) {
        shmem::update_worker(|w| w.skipped_passes += 1);
        return Ok(None);
    }
    let (server, views) = observe(true)?;
    let mut applied = unblock(&views)?;
    let now = now_secs();
    history::record(&server, &views, now)?;
    let worker = shmem::worker_status();
    let wal_state = wal::assess(&server, views.iter().map(|v| &v.slot), now, true)?;
    let server_observed = wal::observed(&wal_state);
    let observed: Vec<Observed> = views
        .iter()
        .flat_map(|v| {
            v.verdict.findings.iter().map(move |f| Observed {
                subject: v.subject(),
                finding: f.clone(),
                remediation: None,
                detail: Value::Null,
            })
        })
        .chain(server_observed.iter().cloned())
        .collect();
    let by_name: std::cell::OnceCell<HashMap<&str, &SlotView>> = std::cell::OnceCell::new();
    let content = |subject: &str, f: &Finding| {
        let by_name = by_name.get_or_init(|| {
            views
                .iter()
                .map(|v| (v.slot.slot_name.as_str(), v))
                .collect()
        });
        let view = subject
            .strip_prefix("slot:")
            .and_then(|name| by_name.get(name));
        match view {
            Some(v) => (
                Some(remedy_for(f, &v.slot)),
                Value::from(detail(v, &server, worker)),
            ),
            // The server's findings carry their content (there are at most two).
            None => server_observed
                .iter()
                .find(|o| o.subject == subject && o.finding.code == f.code)
                .map_or((None, Value::Null), |o| {
                    (o.remediation.clone(), o.detail.clone())
                }),
        }
    };
    applied.extend(alerts::apply(&observed, now, &content)?);
    history::beat_heartbeat()?;
    Ok(Some(Pass {
        server,
        views,
        applied,
    }))
}

/// True the first time (in this process, among the last few) a blocker is spared: the log
/// says so once, not every pass.
fn first_time_spared(pid: i32) -> bool {
    static SPARED: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());
    let Ok(mut spared) = SPARED.lock() else {
        return false;
    };
    if spared.contains(&pid) {
        return false;
    }
    if spared.len() >= 64 {
        spared.remove(0);
    }
    spared.push(pid);
    true
}

/// Helps waiting slot creations along: one standby snapshot per pass while any has waited
/// `cdc_health.unblock_after`, and (only when enabled) terminates idle blockers.
fn unblock(views: &[SlotView]) -> SpiResult<Vec<Applied>> {
    let waiting: Vec<&Creation> = views.iter().filter_map(|v| v.creation.as_ref()).collect();
    let keys: Vec<(i32, &str)> = waiting
        .iter()
        .map(|c| (c.pid, c.slot_name.as_str()))
        .collect();
    shmem::retain_nudges(&keys);
    let after = settings::unblock_after_secs();
    let due: Vec<&&Creation> = waiting.iter().filter(|c| c.waiting_secs >= after).collect();
    if settings::unblock_slot_creation() && !due.is_empty() {
        if let Some(lsn) = creations::log_standby_snapshot()? {
            for c in &due {
                shmem::record_nudge(c.pid, &c.slot_name, lsn);
            }
        }
    }
    let mut applied = Vec::new();
    for v in views {
        let Some(c) = &v.creation else { continue };
        for pid in blockers_to_terminate(c, settings::terminate_blockers_after()) {
            let Some(blocker) = c.blockers.iter().find(|b| b.pid == Some(pid)) else {
                continue;
            };
            if !creations::terminate(pid, c.pid)? {
                if first_time_spared(pid) {
                    log!(
                        "cdc_health: not terminating {} although it blocks slot {}: the \
                         creating backend's role could not terminate it itself, or it is no \
                         longer idle in transaction",
                        blocker.describe(),
                        c.slot_name
                    );
                }
                continue;
            }
            let summary = format!(
                "terminated {} because it blocked the creation of slot {} for {:.0}s \
                 (cdc_health.terminate_blockers_after)",
                blocker.describe(),
                c.slot_name,
                c.waiting_secs
            );
            let finding = Finding::new(
                cdc_health_rules::FindingCode::CreationBlocked,
                cdc_health_rules::Severity::Warning,
                summary,
            );
            let detail =
                json!({ "terminated": blocker, "slot_name": c.slot_name, "creator_pid": c.pid });
            applied.push(alerts::announce(
                Event::BlockerTerminated,
                &v.subject(),
                finding,
                detail,
            )?);
        }
    }
    Ok(applied)
}
