//! Rules that need a slot's history rather than one observation: `stalled`,
//! `budget_exhaustion_soon` and the growth forecast behind the latter.
//!
//! The background worker keeps one [`SlotTrack`] per slot in PostgreSQL shared memory, so
//! every type here is fixed-size and holds no heap pointer.

use serde::Serialize;

use crate::finding::{sort_findings, Finding, FindingCode, Severity};
use crate::lsn::bytes_between;
use crate::observation::{SlotObservation, WalStatus};
use crate::units::{pretty_bytes, pretty_duration};

/// Ring capacity: the oldest sample is dropped when a new one does not fit.
pub const SAMPLES_PER_SLOT: usize = 64;

/// Least time between two points of each thinned ring. At a short interval 64 samples span
/// too little for the fit (64 s at 1 s against the default 600 s window); a ring that keeps
/// one sample per spacing reaches further. Each ring serves windows up to 4 times its reach
/// (the fit needs a quarter of the window): 1920 s, 4.3 h and 34 h, which covers every
/// `cdc_health.forecast_window` (10 s .. 1 d) at every `cdc_health.interval` (1 s .. 1 h).
pub const THINNED_SPACING_SECS: [f64; 3] = [32.0, 256.0, 2048.0];

/// Points per thinned ring: with 16 each ring spans 15 spacings.
pub const THINNED_POINTS: usize = 16;

/// PostgreSQL names are at most `NAMEDATALEN - 1` bytes.
const MAX_NAME_BYTES: usize = 63;

/// What the worker saw of one slot at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Unix seconds.
    pub at: f64,
    /// Server WAL position at sampling time.
    pub current_lsn: u64,
    pub restart_lsn: Option<u64>,
    /// Logical slots only.
    pub confirmed_flush_lsn: Option<u64>,
    /// `current_lsn - restart_lsn`; `None` once lost or when the slot never reserved WAL.
    pub retained_bytes: Option<i64>,
    pub safe_wal_size: Option<i64>,
    pub active: bool,
    pub wal_status: Option<WalStatus>,
    /// The slot was lost when sampled: [`SlotObservation::is_lost`] (`wal_status = 'lost'` or
    /// an invalidation reason). The history rules read only this, so "lost" keeps one
    /// definition.
    pub lost: bool,
    /// [`SlotObservation::sent_txns`]: transactions sent to the consumer so far.
    pub sent_txns: Option<i64>,
    /// Bytes decoding spilled to disk so far (`pg_stat_replication_slots.spill_bytes`).
    pub spill_bytes: Option<i64>,
    /// The consumer's last reply (`pg_stat_replication.reply_time`), Unix seconds.
    pub reply_at: Option<f64>,
}

impl Sample {
    /// What the worker records of `slot` at `at`, the server being at `current_lsn`.
    /// Retained WAL and `safe_wal_size` are only known while the slot holds WAL.
    pub fn observe(slot: &SlotObservation, current_lsn: Option<u64>, at: f64) -> Sample {
        let current = current_lsn.unwrap_or(0);
        let holds = slot.holds_wal();
        Sample {
            at,
            current_lsn: current,
            restart_lsn: slot.restart_lsn,
            confirmed_flush_lsn: slot.confirmed_flush_lsn,
            retained_bytes: slot
                .restart_lsn
                .filter(|_| holds)
                .map(|r| bytes_between(current, r)),
            safe_wal_size: slot.safe_wal_size.filter(|_| holds),
            active: slot.active,
            wal_status: slot.wal_status,
            lost: slot.is_lost(),
            sent_txns: slot.sent_txns,
            spill_bytes: slot.decoding.map(|d| d.spill_bytes),
            reply_at: None,
        }
    }

    /// How far the consumer got: `confirmed_flush_lsn` for a logical slot, `restart_lsn`
    /// for a physical one (which has no confirmed position).
    pub fn consumer_lsn(&self) -> Option<u64> {
        self.confirmed_flush_lsn.or(self.restart_lsn)
    }
}

/// What the growth fit needs of a sample; the thinned rings keep only this.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitPoint {
    /// Unix seconds.
    pub at: f64,
    pub retained_bytes: i64,
}

/// `FitPoint::retained_bytes` of a sample whose retained WAL is not known (lost, or never
/// reserved): no slot retains that much.
const UNKNOWN: i64 = i64::MIN;

/// History of one slot, kept in shared memory by the background worker.
#[derive(Debug, Clone)]
pub struct SlotTrack {
    /// Slot names are at most 63 bytes.
    pub name: heapless::String<64>,
    pub samples: heapless::Deque<Sample, SAMPLES_PER_SLOT>,
    /// The samples' time and retained WAL (`UNKNOWN` where not known), one for one: the fit
    /// reads these 16 bytes a sample from one kilobyte instead of striding through the
    /// samples (120 bytes each), which made the forecast wait on memory for every slot.
    pub points: heapless::Deque<FitPoint, SAMPLES_PER_SLOT>,
    /// The samples that know their retained WAL, thinned to `THINNED_SPACING_SECS[k]` apart
    /// in ring `k`. A point takes a fifth of a sample's bytes, so the rings add about 15%.
    pub thinned: [heapless::Deque<FitPoint, THINNED_POINTS>; THINNED_SPACING_SECS.len()],
    /// When the consumer's position last advanced (the first sample counts: a slot is not
    /// stalled before it has been watched).
    pub last_progress_at: Option<f64>,
    /// Server `current_lsn` at that moment, to tell a stalled consumer from an idle server.
    pub lsn_at_progress: Option<u64>,
    /// Transactions sent to the consumer by then (see [`Sample::sent_txns`]).
    pub txns_at_progress: Option<i64>,
    /// When the current consumer connected (the sample at which the slot turned active), the
    /// server position and the transactions sent then: a consumer that just (re)connected
    /// has not stalled yet.
    pub connected_at: Option<(f64, u64)>,
    pub txns_at_connection: Option<i64>,
    /// First sample at which the slot was seen inactive; `None` while active.
    pub inactive_since: Option<f64>,
    /// First sample since the consumer's last progress (or connection) at which more
    /// transactions had been sent to it ([`Sample::sent_txns`], counted once a transaction is
    /// decoded and sent whole): the stall clock where that count is known. WAL of a
    /// transaction still being written, decoded or sent is nothing the consumer can confirm.
    pub owed_since: Option<f64>,
}

impl SlotTrack {
    /// An empty track; `None` when `name` cannot be a slot name (more than 63 bytes).
    pub fn new(name: &str) -> Option<SlotTrack> {
        if name.len() > MAX_NAME_BYTES {
            return None;
        }
        Some(SlotTrack {
            name: heapless::String::try_from(name).ok()?,
            samples: heapless::Deque::new(),
            points: heapless::Deque::new(),
            thinned: [const { heapless::Deque::new() }; THINNED_SPACING_SECS.len()],
            last_progress_at: None,
            lsn_at_progress: None,
            txns_at_progress: None,
            connected_at: None,
            txns_at_connection: None,
            inactive_since: None,
            owed_since: None,
        })
    }

    /// Appends `s`, dropping the oldest sample when the ring is full, and updates the
    /// progress and inactivity marks.
    pub fn record(&mut self, s: Sample) {
        let progressed = match self.samples.back() {
            None => true,
            Some(prev) => match (prev.consumer_lsn(), s.consumer_lsn()) {
                (Some(before), Some(after)) => after > before,
                // The slot got a position it did not have (e.g. a standby connected).
                (None, Some(_)) => true,
                (_, None) => false,
            },
        };
        if progressed {
            self.last_progress_at = Some(s.at);
            self.lsn_at_progress = Some(s.current_lsn);
            self.txns_at_progress = s.sent_txns;
        }
        if s.active {
            self.inactive_since = None;
            if self.connected_at.is_none() {
                self.connected_at = Some((s.at, s.current_lsn));
                self.txns_at_connection = s.sent_txns;
            }
        } else {
            self.connected_at = None;
            self.txns_at_connection = None;
            if self.inactive_since.is_none() {
                self.inactive_since = Some(s.at);
            }
        }
        let txns_then = match self.connected_at {
            Some((connected, _)) if self.last_progress_at.is_none_or(|p| connected > p) => {
                self.txns_at_connection
            }
            _ => self.txns_at_progress,
        };
        let sent_more = matches!((s.sent_txns, txns_then), (Some(now), Some(then)) if now > then);
        if progressed || !s.active {
            self.owed_since = None;
        } else if sent_more && self.owed_since.is_none() {
            self.owed_since = Some(s.at);
        }
        if self.samples.is_full() {
            self.samples.pop_front();
            self.points.pop_front();
        }
        // Cannot fail: there is room now.
        let _ = self.samples.push_back(s);
        let _ = self.points.push_back(FitPoint {
            at: s.at,
            retained_bytes: s.retained_bytes.unwrap_or(UNKNOWN),
        });
        if let Some(retained_bytes) = s.retained_bytes {
            let point = FitPoint {
                at: s.at,
                retained_bytes,
            };
            for (ring, spacing) in self.thinned.iter_mut().zip(THINNED_SPACING_SECS) {
                // A clock that stepped back (or a NaN) starts the spacing over: the ring must
                // not wait until the clock is back where it was.
                let due = ring
                    .back()
                    .is_none_or(|p| !(0.0..spacing).contains(&(s.at - p.at)));
                if due {
                    if ring.is_full() {
                        ring.pop_front();
                    }
                    let _ = ring.push_back(point);
                }
            }
        }
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    /// Bytes spilled to disk per minute over about the last minute of samples (at least two,
    /// a second apart); `None` without them or when the statistics were reset meanwhile.
    pub fn spill_bytes_per_min(&self, now: f64) -> Option<f64> {
        let latest = self.samples.back()?;
        let newest = latest.spill_bytes?;
        let earliest = self
            .samples
            .iter()
            .filter(|s| s.spill_bytes.is_some())
            .find(|s| now - s.at <= 60.0 || std::ptr::eq(*s, latest))?;
        let span = latest.at - earliest.at;
        let spilled = newest - earliest.spill_bytes?;
        (span >= 1.0 && spilled >= 0).then(|| spilled as f64 * 60.0 / span)
    }

    /// Seconds since the slot was first seen inactive; `None` while it is active or before
    /// any sample. Never negative, even if the clock stepped back.
    pub fn inactive_for(&self, now: f64) -> Option<f64> {
        self.inactive_since.map(|since| (now - since).max(0.0))
    }

    /// The span the fit covers: the forecast window, widened to 2.5 sampling intervals when
    /// samples come further apart (a 10 s window at a 1 h interval), since a window that can
    /// never hold three samples would never give a forecast.
    ///
    /// The window ends at `now`, which lies up to an interval after the last sample: the
    /// widening counts that time too (up to one interval), or between two samples the
    /// window would hold only two and the forecast would come and go with the clock.
    fn fit_window(&self, now: f64, window_secs: f64) -> f64 {
        let mut times = self.points.iter().rev().map(|p| p.at);
        match (times.next(), times.next()) {
            (Some(last), Some(before)) if (last - before).is_finite() => {
                let interval = last - before;
                let since_last = (now - last).clamp(0.0, interval.max(0.0));
                window_secs.max(2.5 * interval + since_last)
            }
            _ => window_secs,
        }
    }

    /// The line through retained WAL over the fit window, from the finest history that spans
    /// enough of it: the samples, else the thinned rings from the densest on. Computed on the
    /// points where they lie: collecting them (a kilobyte per ring) and moving the copies
    /// around was most of the forecast's time, which every slot pays every pass.
    fn fit(&self, now: f64, window_secs: f64) -> Option<Fit> {
        let window = self.fit_window(now, window_secs);
        let since = now - window;
        let within = move |&(t, _): &(f64, f64)| since <= t && t <= now;
        let samples = || {
            self.points
                .iter()
                .filter(|p| p.retained_bytes != UNKNOWN)
                .map(|p| (p.at, p.retained_bytes as f64))
                .filter(within)
        };
        fit_on(samples, window).or_else(|| {
            self.thinned.iter().find_map(|ring| {
                let points = || {
                    ring.iter()
                        .map(|p| (p.at, p.retained_bytes as f64))
                        .filter(within)
                };
                fit_on(points, window)
            })
        })
    }

    /// Least-squares slope of retained WAL over the last `window_secs`, in bytes per second
    /// (negative while the consumer catches up). `None` without at least 3 samples spanning
    /// a quarter of the window (and 2 s): fewer would make a single burst look like a trend.
    /// At a short interval the fit uses the thinned rings, and when samples are further apart
    /// than the window it widens to hold three.
    pub fn growth_bytes_per_sec(&self, now: f64, window_secs: f64) -> Option<f64> {
        self.fit(now, window_secs).map(|f| f.slope)
    }
}

/// A growth fit and what the forecast needs to know about it.
struct Fit {
    slope: f64,
    /// The span it covers: the forecast window or, with sparse samples, more.
    window: f64,
    mostly_growing: bool,
}

/// The fit through the points `points()` yields (each call from the first again).
fn fit_on<I: Iterator<Item = (f64, f64)>>(points: impl Fn() -> I, window: f64) -> Option<Fit> {
    Some(Fit {
        slope: least_squares(&points, window)?,
        window,
        mostly_growing: mostly_growing(points()),
    })
}

/// The least-squares slope through the points; `None` without 3 of them spanning a quarter
/// of `window` (and 2 s), or when they give no finite slope.
pub(crate) fn least_squares<I: Iterator<Item = (f64, f64)>>(
    points: &impl Fn() -> I,
    window: f64,
) -> Option<f64> {
    let (count, first, last, sum_t, sum_y) = points().fold(
        (0usize, f64::INFINITY, f64::NEG_INFINITY, 0.0, 0.0),
        |(n, lo, hi, st, sy), (t, y)| (n + 1, lo.min(t), hi.max(t), st + t, sy + y),
    );
    if count < 3 {
        return None;
    }
    let span = last - first;
    if span.is_nan() || span < (window / 4.0).max(2.0) {
        return None;
    }
    // Centred sums: unix seconds squared would lose the precision the slope needs.
    let n = count as f64;
    let (mean_t, mean_y) = (sum_t / n, sum_y / n);
    let (sxx, sxy) = points().fold((0.0, 0.0), |(sxx, sxy), (t, y)| {
        let dt = t - mean_t;
        (sxx + dt * dt, sxy + dt * (y - mean_y))
    });
    let slope = sxy / sxx;
    (sxx > 0.0 && slope.is_finite()).then_some(slope)
}

/// Whether retained WAL rose in at least 2/3 of the consecutive pairs of `points`: a steady
/// climb, not one burst in an otherwise flat history. Flat pairs do not count as rising:
/// with a stuck consumer retained WAL never shrinks, so "did not shrink" would let every
/// burst through.
pub(crate) fn mostly_growing(points: impl Iterator<Item = (f64, f64)>) -> bool {
    let (mut pairs, mut grew, mut before) = (0usize, 0usize, None);
    for (_, y) in points {
        if let Some(prev) = before {
            pairs += 1;
            grew += usize::from(y > prev);
        }
        before = Some(y);
    }
    pairs > 0 && grew * 3 >= pairs * 2
}

/// The limits of the history rules (the `cdc_health.*` settings).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HistoryLimits {
    /// `stalled` warning after this long without progress; critical after 4 times it.
    pub stall_after_secs: f64,
    /// `budget_exhaustion_soon` warning when the forecast reaches its target within this.
    pub eta_warning_secs: f64,
    /// `budget_exhaustion_soon` critical within this.
    pub eta_critical_secs: f64,
    /// `decoding_spill` warning above this many bytes spilled per minute; 0 turns it off.
    pub spill_warning_bytes_per_min: i64,
    /// How much history the growth rate is fitted on; widened to 2.5 sampling intervals when
    /// samples are further apart than that, so the fit can hold three.
    pub forecast_window_secs: f64,
    /// `stalled` needs at least this much WAL written and unconfirmed: an idle server still
    /// writes small records (running transactions, checkpoints) that a healthy consumer has
    /// nothing to confirm for.
    pub stall_min_bytes: i64,
    /// Free space on the volume holding `pg_wal`, given only while `max_slot_wal_keep_size`
    /// is unlimited: that volume, not a budget, is then what growing WAL runs into, and the
    /// forecast aims at it rather than at the ceiling.
    pub disk_free_bytes: Option<i64>,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        Self {
            stall_after_secs: 120.0,
            eta_warning_secs: 3600.0,
            eta_critical_secs: 900.0,
            forecast_window_secs: 600.0,
            stall_min_bytes: 1 << 20,
            spill_warning_bytes_per_min: 100 << 20,
            disk_free_bytes: None,
        }
    }
}

/// What the forecast counts down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForecastTarget {
    /// `safe_wal_size` reaching zero: the slot is lost (`max_slot_wal_keep_size` is set).
    Budget,
    /// Retained WAL reaching the ceiling the caller passed (no budget is set).
    Ceiling,
    /// The volume holding `pg_wal` full (no budget is set): the server stops.
    Disk,
    /// No estimate.
    None,
}

/// Where retained WAL is heading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Forecast {
    /// Shown even when no ETA is given (e.g. negative while the consumer catches up).
    pub growth_bytes_per_sec: Option<f64>,
    pub eta_secs: Option<f64>,
    pub to: ForecastTarget,
}

/// Extrapolates retained WAL growth to the budget (`safe_wal_size`) or, without one, to
/// `ceiling_bytes`. No ETA while the slot advances, shrinks, bursts or is lost: the
/// forecast is meant for a consumer that has stopped, not one that is merely busy.
/// A `ceiling_bytes` of zero or less means there is no ceiling.
pub fn forecast(
    track: &SlotTrack,
    now: f64,
    ceiling_bytes: i64,
    limits: &HistoryLimits,
) -> Forecast {
    let fit = track.fit(now, limits.forecast_window_secs);
    let growth = fit.as_ref().map(|f| f.slope);
    let no_eta = Forecast {
        growth_bytes_per_sec: growth,
        eta_secs: None,
        to: ForecastTarget::None,
    };
    let Some(fit) = fit.filter(|f| f.slope > 0.0) else {
        return no_eta;
    };
    if track
        .last_progress_at
        .is_some_and(|at| at >= now - fit.window)
    {
        return no_eta;
    }
    let Some(latest) = track.latest() else {
        return no_eta;
    };
    let Some(retained) = latest.retained_bytes.filter(|_| !latest.lost) else {
        return no_eta;
    };
    if !fit.mostly_growing {
        return no_eta;
    }
    let (remaining, to) = match (latest.safe_wal_size, limits.disk_free_bytes) {
        (Some(safe), _) => (safe.max(0), ForecastTarget::Budget),
        (None, Some(free)) => (free.max(0), ForecastTarget::Disk),
        (None, None) if ceiling_bytes > 0 => (
            ceiling_bytes.saturating_sub(retained).max(0),
            ForecastTarget::Ceiling,
        ),
        (None, None) => return no_eta,
    };
    // A vanishing rate would put the ETA at infinity: that is no forecast either.
    let eta = remaining as f64 / fit.slope;
    if !eta.is_finite() {
        return no_eta;
    }
    Forecast {
        growth_bytes_per_sec: growth,
        eta_secs: Some(eta),
        to,
    }
}

/// The history rules for one slot (worst first), and the forecast for the
/// `growth_bytes_per_sec` and `eta_to_lost` columns.
pub fn history_findings(
    track: &SlotTrack,
    now: f64,
    ceiling_bytes: i64,
    limits: &HistoryLimits,
) -> (Vec<Finding>, Forecast) {
    let forecast = forecast(track, now, ceiling_bytes, limits);
    let mut findings = Vec::new();
    findings.extend(stalled_finding(track, now, limits));
    findings.extend(budget_finding(&forecast, ceiling_bytes, limits));
    findings.extend(spill_finding(track, now, limits));
    sort_findings(&mut findings);
    (findings, forecast)
}

/// Decoding that spills more than `cdc_health.spill_warning` to disk per minute.
fn spill_finding(track: &SlotTrack, now: f64, limits: &HistoryLimits) -> Option<Finding> {
    let limit = limits.spill_warning_bytes_per_min;
    let rate = track.spill_bytes_per_min(now)?;
    if limit <= 0 || rate <= limit as f64 {
        return None;
    }
    Some(Finding::new(
        FindingCode::DecodingSpill,
        Severity::Warning,
        format!(
            "decoding spills {} per minute to disk, above cdc_health.spill_warning ({}): \
             transactions larger than logical_decoding_work_mem",
            pretty_bytes(rate as i64),
            pretty_bytes(limit)
        ),
    ))
}

/// A connected consumer that confirms nothing while the server writes WAL. An idle server
/// is not a stall, and a disconnected consumer is the `inactive` finding's job.
fn stalled_finding(track: &SlotTrack, now: f64, limits: &HistoryLimits) -> Option<Finding> {
    let latest = track.latest()?;
    if !latest.active || latest.lost {
        return None;
    }
    if latest.sent_txns.is_some() {
        return sent_txns_stall(track, latest, now, limits);
    }
    // The stall clock starts at the last progress or at the (re)connection, whichever is later.
    let progress = (track.last_progress_at?, track.lsn_at_progress?);
    let ((since, lsn_then), txns_then) = match track.connected_at {
        Some(connected) if connected.0 > progress.0 => (connected, track.txns_at_connection),
        _ => (progress, track.txns_at_progress),
    };
    let stalled_for = now - since;
    let written = bytes_between(latest.current_lsn, lsn_then);
    let unconfirmed = bytes_between(latest.current_lsn, latest.consumer_lsn()?);
    // Two signals of "it had something to confirm". Transactions decoded and sent to the
    // consumer are one at any traffic: an idle server's running-xacts and checkpoint records
    // are no transactions. Where that count is unknown (physical slots), enough WAL written
    // and unconfirmed, above what an idle server writes.
    let sent = match (latest.sent_txns, txns_then) {
        (Some(now_sent), Some(then)) => now_sent - then,
        _ => 0,
    };
    let floor = limits.stall_min_bytes.max(1);
    let had_something = sent > 0 || (written >= floor && unconfirmed >= floor);
    if !(stalled_for >= limits.stall_after_secs && unconfirmed > 0 && had_something) {
        return None;
    }
    let severity = if stalled_for >= 4.0 * limits.stall_after_secs {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let sent_text = match sent {
        0 => String::new(),
        1 => " and sent it 1 transaction".to_string(),
        n => format!(" and sent it {n} transactions"),
    };
    Some(Finding::new(
        FindingCode::Stalled,
        severity,
        format!(
            "connected but has confirmed nothing for {} while the server wrote {} of WAL{sent_text}",
            pretty_duration(stalled_for),
            pretty_bytes(written)
        ),
    ))
}

/// The severity of a stall that has lasted `stalled_for`.
fn stall_severity(stalled_for: f64, limits: &HistoryLimits) -> Severity {
    if stalled_for >= 4.0 * limits.stall_after_secs {
        Severity::Critical
    } else {
        Severity::Warning
    }
}

/// Where the transactions sent to a consumer are counted (logical slots), it is stalled when
/// it has been sent whole transactions and confirms none of them for `stall_after`, or when
/// it has stopped answering the server while WAL waits for it. WAL written since its last
/// progress is no sign on its own: while a large transaction is written, decoded and sent,
/// the consumer has nothing it could confirm, and is busy, not stalled.
fn sent_txns_stall(
    track: &SlotTrack,
    latest: &Sample,
    now: f64,
    limits: &HistoryLimits,
) -> Option<Finding> {
    let confirmed = latest.consumer_lsn()?;
    let unconfirmed = bytes_between(latest.current_lsn, confirmed);
    let connected = track.connected_at.map(|(at, _)| at);
    let later = |a: f64| connected.map_or(a, |c| a.max(c));
    if let Some(since) = track.owed_since {
        let stalled_for = now - later(since);
        let txns_then = match track.connected_at {
            Some((c, _)) if track.last_progress_at.is_none_or(|p| c > p) => {
                track.txns_at_connection
            }
            _ => track.txns_at_progress,
        };
        let sent = latest.sent_txns.unwrap_or(0) - txns_then.unwrap_or(0);
        if stalled_for >= limits.stall_after_secs && unconfirmed > 0 {
            let lsn_then = track.lsn_at_progress.unwrap_or(latest.current_lsn);
            return Some(Finding::new(
                FindingCode::Stalled,
                stall_severity(stalled_for, limits),
                format!(
                    "connected but has confirmed nothing for {} while the server wrote {} of WAL{}",
                    pretty_duration(stalled_for),
                    pretty_bytes(bytes_between(latest.current_lsn, lsn_then)),
                    sent_text(sent)
                ),
            ));
        }
    }
    // Silent: its walsender may be blocked writing to it, the count still.
    let floor = limits.stall_min_bytes.max(1);
    let heard = later(latest.reply_at?);
    let silent_for = now - heard;
    let silent_after = limits
        .stall_after_secs
        .max(crate::consumer::SILENT_AFTER_SECS);
    (silent_for >= silent_after && unconfirmed >= floor).then(|| {
        Finding::new(
            FindingCode::Stalled,
            stall_severity(silent_for, limits),
            format!(
                "connected but has not answered the server for {} while {} of WAL waits for it",
                pretty_duration(silent_for),
                pretty_bytes(unconfirmed)
            ),
        )
    })
}

/// " and sent it N transactions", or nothing for none.
fn sent_text(sent: i64) -> String {
    match sent {
        i64::MIN..=0 => String::new(),
        1 => " and sent it 1 transaction".to_string(),
        n => format!(" and sent it {n} transactions"),
    }
}

fn budget_finding(
    forecast: &Forecast,
    ceiling_bytes: i64,
    limits: &HistoryLimits,
) -> Option<Finding> {
    let eta = forecast.eta_secs?;
    let rate = forecast.growth_bytes_per_sec?;
    let severity = if eta <= limits.eta_critical_secs {
        Severity::Critical
    } else if eta <= limits.eta_warning_secs {
        Severity::Warning
    } else {
        return None;
    };
    // At least 1 so a slow but real growth never reads as "0 bytes/s".
    let per_sec = pretty_bytes(rate.round().max(1.0) as i64);
    let when = pretty_duration(eta);
    let summary = match forecast.to {
        ForecastTarget::Budget => format!(
            "retained WAL grows by {per_sec}/s: the slot uses up max_slot_wal_keep_size and is lost in about {when}"
        ),
        ForecastTarget::Ceiling => format!(
            "retained WAL grows by {per_sec}/s and reaches {} in about {when}",
            pretty_bytes(ceiling_bytes)
        ),
        ForecastTarget::Disk => format!(
            "retained WAL grows by {per_sec}/s with no max_slot_wal_keep_size: the volume \
             holding pg_wal ({} free) is full in about {when}, and the server stops",
            pretty_bytes(limits.disk_free_bytes.unwrap_or(0))
        ),
        ForecastTarget::None => return None,
    };
    Some(Finding::new(
        FindingCode::BudgetExhaustionSoon,
        severity,
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: i64 = 1 << 20;
    /// A realistic unix time, so the tests exercise the precision of the fit.
    const T0: f64 = 1_700_000_000.0;

    /// An active logical slot whose consumer confirmed `confirmed` (restart_lsn follows it).
    fn logical(at: f64, current: u64, confirmed: u64) -> Sample {
        Sample {
            at: T0 + at,
            current_lsn: current,
            restart_lsn: Some(confirmed),
            confirmed_flush_lsn: Some(confirmed),
            retained_bytes: Some(bytes_between(current, confirmed)),
            safe_wal_size: None,
            active: true,
            wal_status: Some(WalStatus::Reserved),
            lost: false,
            sent_txns: None,
            spill_bytes: None,
            reply_at: None,
        }
    }

    /// A logical sample that also knows how many transactions were sent to the consumer.
    fn sending(at: f64, current: u64, confirmed: u64, sent: i64) -> Sample {
        Sample {
            sent_txns: Some(sent),
            ..logical(at, current, confirmed)
        }
    }

    fn physical(at: f64, current: u64, restart: u64) -> Sample {
        Sample {
            confirmed_flush_lsn: None,
            ..logical(at, current, restart)
        }
    }

    #[test]
    fn spilling_decoding_is_a_rate_per_minute() {
        let spilling = |at: f64, spilled: i64| Sample {
            spill_bytes: Some(spilled),
            ..logical(at, 0, 0)
        };
        let limits = HistoryLimits::default(); // 100 MB a minute
                                               // 2 MB a second for 30 s: 120 MB a minute.
        let track = track_of((0..=30).map(|i| spilling(f64::from(i), i64::from(i) * 2 * MB)));
        let rate = track.spill_bytes_per_min(T0 + 30.0).unwrap();
        assert!((rate - 120.0 * MB as f64).abs() < 1.0, "{rate}");
        let (findings, _) = history_findings(&track, T0 + 30.0, 0, &limits);
        let spill = findings
            .iter()
            .find(|f| f.code == FindingCode::DecodingSpill)
            .unwrap();
        assert_eq!(spill.severity, Severity::Warning);
        assert!(
            spill.summary.contains("120 MB per minute"),
            "{}",
            spill.summary
        );
        // Only the last minute counts: an old burst then nothing is not a spill now.
        let mut old = (0..10)
            .map(|i| spilling(f64::from(i), i64::from(i) * 100 * MB))
            .collect::<Vec<_>>();
        old.extend((0..20).map(|i| spilling(100.0 + f64::from(i) * 5.0, 900 * MB)));
        let track = track_of(old);
        assert_eq!(track.spill_bytes_per_min(T0 + 195.0), Some(0.0));
        // A statistics reset (counter goes down) gives no figure, and 0 turns it off.
        let track = track_of([spilling(0.0, 500 * MB), spilling(10.0, MB)]);
        assert_eq!(track.spill_bytes_per_min(T0 + 10.0), None);
        let track = track_of((0..=30).map(|i| spilling(f64::from(i), i64::from(i) * 2 * MB)));
        let off = HistoryLimits {
            spill_warning_bytes_per_min: 0,
            ..limits
        };
        let (findings, _) = history_findings(&track, T0 + 30.0, 0, &off);
        assert!(findings
            .iter()
            .all(|f| f.code != FindingCode::DecodingSpill));
    }

    fn track_of(samples: impl IntoIterator<Item = Sample>) -> SlotTrack {
        let mut track = SlotTrack::new("s").unwrap();
        for s in samples {
            track.record(s);
        }
        track
    }

    /// A consumer stuck at 0 while the server writes `step` bytes every 10 s, from `start`
    /// seconds for `count` samples.
    fn stuck(start: f64, count: usize, step: u64) -> Vec<Sample> {
        (0..count)
            .map(|i| {
                let current = 1000 + step * i as u64;
                logical(start + 10.0 * i as f64, current, 1000)
            })
            .collect()
    }

    fn codes(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|f| f.code.as_str()).collect()
    }

    #[test]
    fn names_longer_than_63_bytes_are_refused() {
        assert!(SlotTrack::new("").is_some());
        assert_eq!(
            SlotTrack::new(&"a".repeat(63)).unwrap().name.as_str(),
            "a".repeat(63)
        );
        assert!(SlotTrack::new(&"a".repeat(64)).is_none());
        // 21 three-byte characters are 63 bytes; one more is 66.
        assert!(SlotTrack::new(&"€".repeat(21)).is_some());
        assert!(SlotTrack::new(&"€".repeat(22)).is_none());
    }

    #[test]
    fn ring_drops_the_oldest_sample_when_full() {
        let track = track_of((0..SAMPLES_PER_SLOT + 6).map(|i| logical(i as f64, 10, 10)));
        assert_eq!(track.samples.len(), SAMPLES_PER_SLOT);
        assert_eq!(track.samples.front().unwrap().at, T0 + 6.0);
        assert_eq!(
            track.latest().unwrap().at,
            T0 + (SAMPLES_PER_SLOT + 5) as f64
        );
    }

    #[test]
    fn empty_track_has_no_latest_and_no_marks() {
        let track = SlotTrack::new("s").unwrap();
        assert_eq!(track.latest(), None);
        assert_eq!(track.inactive_for(T0), None);
        assert_eq!(
            (track.last_progress_at, track.lsn_at_progress),
            (None, None)
        );
    }

    #[test]
    fn first_sample_counts_as_progress() {
        let track = track_of([logical(5.0, 500, 100)]);
        assert_eq!(track.last_progress_at, Some(T0 + 5.0));
        assert_eq!(track.lsn_at_progress, Some(500));
    }

    #[test]
    fn logical_progress_follows_confirmed_flush() {
        let mut track = track_of([logical(0.0, 500, 100)]);
        track.record(logical(10.0, 600, 100));
        assert_eq!(track.last_progress_at, Some(T0), "unchanged position");

        let mut moved_restart_only = logical(20.0, 700, 100);
        moved_restart_only.restart_lsn = Some(150);
        track.record(moved_restart_only);
        assert_eq!(track.last_progress_at, Some(T0), "restart_lsn is not used");

        track.record(logical(30.0, 800, 101));
        assert_eq!(track.last_progress_at, Some(T0 + 30.0));
        assert_eq!(track.lsn_at_progress, Some(800));
    }

    #[test]
    fn physical_progress_follows_restart_lsn() {
        let mut track = track_of([physical(0.0, 500, 100)]);
        track.record(physical(10.0, 600, 100));
        assert_eq!(track.last_progress_at, Some(T0));
        track.record(physical(20.0, 700, 300));
        assert_eq!(track.last_progress_at, Some(T0 + 20.0));
        assert_eq!(track.lsn_at_progress, Some(700));
    }

    #[test]
    fn going_backwards_or_losing_the_position_is_not_progress() {
        let mut track = track_of([logical(0.0, 500, 300)]);
        track.record(logical(10.0, 600, 200));
        let mut lost = logical(20.0, 700, 0);
        lost.restart_lsn = None;
        lost.confirmed_flush_lsn = None;
        track.record(lost);
        assert_eq!(track.last_progress_at, Some(T0));
    }

    #[test]
    fn gaining_a_position_is_progress() {
        let mut none = physical(0.0, 500, 0);
        none.restart_lsn = None;
        let mut track = track_of([none]);
        track.record(physical(10.0, 600, 550));
        assert_eq!(track.last_progress_at, Some(T0 + 10.0));
    }

    #[test]
    fn inactive_since_is_the_first_inactive_sample_and_resets_when_active() {
        let idle = |at| Sample {
            active: false,
            ..logical(at, 10, 10)
        };
        let mut track = track_of([logical(0.0, 10, 10), idle(10.0), idle(20.0)]);
        assert_eq!(track.inactive_since, Some(T0 + 10.0));
        assert_eq!(track.inactive_for(T0 + 70.0), Some(60.0));
        assert_eq!(track.inactive_for(T0), Some(0.0), "clock stepped back");
        track.record(logical(30.0, 10, 10));
        assert_eq!(
            (track.inactive_since, track.inactive_for(T0 + 99.0)),
            (None, None)
        );
        track.record(idle(40.0));
        assert_eq!(track.inactive_since, Some(T0 + 40.0));
    }

    #[test]
    fn growth_is_the_least_squares_slope() {
        // 1 MB every 10 s.
        let track = track_of(stuck(0.0, 20, MB as u64));
        let growth = track.growth_bytes_per_sec(T0 + 190.0, 600.0).unwrap();
        assert!((growth - MB as f64 / 10.0).abs() < 1e-6, "{growth}");
    }

    #[test]
    fn growth_fits_noisy_data_and_can_be_negative() {
        // y = 100 - 2t plus noise uncorrelated with t: the slope stays -2.
        let track = track_of(
            [(0.0, 102), (10.0, 78), (20.0, 58), (30.0, 42)].map(|(t, y)| Sample {
                retained_bytes: Some(y),
                ..logical(t, 0, 0)
            }),
        );
        let growth = track.growth_bytes_per_sec(T0 + 30.0, 100.0).unwrap();
        assert!((growth + 2.0).abs() < 1e-9, "{growth}");
    }

    #[test]
    fn growth_needs_three_samples() {
        let track = track_of(stuck(0.0, 2, 100));
        assert_eq!(track.growth_bytes_per_sec(T0 + 10.0, 40.0), None);
        let track = track_of(stuck(0.0, 3, 100));
        assert_eq!(track.growth_bytes_per_sec(T0 + 20.0, 40.0), Some(10.0));
    }

    #[test]
    fn growth_needs_a_quarter_of_the_window() {
        // Samples span 20 s.
        let track = track_of(stuck(0.0, 3, 100));
        assert_eq!(track.growth_bytes_per_sec(T0 + 20.0, 80.0), Some(10.0));
        assert_eq!(track.growth_bytes_per_sec(T0 + 20.0, 80.1), None);
    }

    #[test]
    fn growth_needs_two_seconds_and_distinct_times() {
        let close = [0.0, 0.9, 1.9].map(|t| logical(t, 1000 + (t * 10.0) as u64, 1000));
        assert_eq!(track_of(close).growth_bytes_per_sec(T0 + 2.0, 4.0), None);
        let spaced = [0.0, 1.0, 2.0].map(|t| logical(t, 1000 + (t * 10.0) as u64, 1000));
        assert_eq!(
            track_of(spaced).growth_bytes_per_sec(T0 + 2.0, 4.0),
            Some(10.0)
        );
        let same = [logical(0.0, 1, 0), logical(0.0, 2, 0), logical(0.0, 3, 0)];
        assert_eq!(track_of(same).growth_bytes_per_sec(T0, 0.0), None);
    }

    #[test]
    fn growth_ignores_old_samples_and_unknown_retained() {
        let mut samples = vec![logical(0.0, 1_000_000, 0)]; // outside the window: huge
        samples.extend(stuck(100.0, 5, 100));
        samples.push(Sample {
            retained_bytes: None,
            ..logical(145.0, 0, 0)
        });
        let track = track_of(samples);
        assert_eq!(track.growth_bytes_per_sec(T0 + 145.0, 50.0), Some(10.0));
        // Sample at exactly now - window is inside.
        assert!(track.growth_bytes_per_sec(T0 + 150.0, 150.0).unwrap() < 0.0);
    }

    #[test]
    fn history_limits_defaults() {
        let l = HistoryLimits::default();
        assert_eq!(
            (
                l.stall_after_secs,
                l.eta_warning_secs,
                l.eta_critical_secs,
                l.forecast_window_secs
            ),
            (120.0, 3600.0, 900.0, 600.0)
        );
    }

    /// A consumer stuck since T0 while retained WAL grows 100 bytes/s, sampled every 10 s
    /// for 20 min; forecast at the last sample.
    fn stuck_track() -> (SlotTrack, f64) {
        (track_of(stuck(0.0, 121, 1000)), T0 + 1200.0)
    }

    #[test]
    fn forecast_counts_down_to_the_budget() {
        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().safe_wal_size = Some(90_000);
        let f = forecast(&track, now, 10 * MB, &HistoryLimits::default());
        assert_eq!(f.to, ForecastTarget::Budget);
        assert!((f.growth_bytes_per_sec.unwrap() - 100.0).abs() < 1e-9);
        assert!((f.eta_secs.unwrap() - 900.0).abs() < 1e-6);
    }

    #[test]
    fn sparse_samples_still_give_an_eta() {
        // interval 256 s, forecast_window 600 s: steady growth over 4 samples, asked at any
        // time before the next sample.
        let samples: Vec<Sample> = (0..4)
            .map(|i| logical(256.0 * f64::from(i), 1000 + 1_000_000 * i as u64, 1000))
            .collect();
        let track = track_of(samples);
        let limits = HistoryLimits {
            forecast_window_secs: 600.0,
            ..HistoryLimits::default()
        };
        for after in (0..256).map(f64::from) {
            let f = forecast(&track, T0 + 768.0 + after, 100 * MB, &limits);
            assert!(f.growth_bytes_per_sec.is_some(), "{after}: {f:?}");
            assert!(f.eta_secs.is_some(), "{after}: {f:?}");
        }
    }

    #[test]
    fn forecast_past_the_budget_is_zero() {
        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().safe_wal_size = Some(-5);
        let f = forecast(&track, now, 10 * MB, &HistoryLimits::default());
        assert_eq!((f.eta_secs, f.to), (Some(0.0), ForecastTarget::Budget));
    }

    #[test]
    fn forecast_without_a_budget_aims_at_the_ceiling() {
        let (track, now) = stuck_track();
        // Retained is 120_000 at the last sample.
        let f = forecast(&track, now, 300_000, &HistoryLimits::default());
        assert_eq!(f.to, ForecastTarget::Ceiling);
        assert!((f.eta_secs.unwrap() - 1800.0).abs() < 1e-6);
        let past = forecast(&track, now, 100_000, &HistoryLimits::default());
        assert_eq!(
            (past.eta_secs, past.to),
            (Some(0.0), ForecastTarget::Ceiling)
        );
    }

    #[test]
    fn without_a_budget_the_volume_holding_pg_wal_is_the_limit() {
        let (track, now) = stuck_track();
        // Retained grows by 100 bytes/s (see forecast_without_a_budget_aims_at_the_ceiling).
        let limits = HistoryLimits {
            disk_free_bytes: Some(180_000),
            ..HistoryLimits::default()
        };
        let f = forecast(&track, now, 300_000, &limits);
        assert_eq!(f.to, ForecastTarget::Disk, "the disk, not the ceiling");
        assert!((f.eta_secs.unwrap() - 1800.0).abs() < 1e-6, "{f:?}");
        let (findings, _) = history_findings(&track, now, 300_000, &limits);
        let b = findings
            .iter()
            .find(|f| f.code == FindingCode::BudgetExhaustionSoon)
            .expect("the volume fills within eta_warning");
        assert!(
            b.summary.contains("volume holding pg_wal (176 kB free)"),
            "{}",
            b.summary
        );
        // A budget, where there is one, stays the limit.
        let mut budgeted = track.clone();
        budgeted.samples.back_mut().unwrap().safe_wal_size = Some(1000);
        assert_eq!(
            forecast(&budgeted, now, 300_000, &limits).to,
            ForecastTarget::Budget
        );
    }

    #[test]
    fn no_ceiling_and_no_budget_means_no_eta() {
        let (track, now) = stuck_track();
        for ceiling in [0, -1] {
            let f = forecast(&track, now, ceiling, &HistoryLimits::default());
            assert_eq!((f.eta_secs, f.to), (None, ForecastTarget::None));
            assert!(f.growth_bytes_per_sec.is_some());
        }
    }

    #[test]
    fn no_forecast_while_the_slot_advances() {
        let (mut track, now) = stuck_track();
        let limits = HistoryLimits::default();
        // Progress exactly at the window's start still counts as advancing.
        track.last_progress_at = Some(now - limits.forecast_window_secs);
        let f = forecast(&track, now, 10 * MB, &limits);
        assert_eq!((f.eta_secs, f.to), (None, ForecastTarget::None));
        assert!(f.growth_bytes_per_sec.unwrap() > 0.0, "growth still shown");
        track.last_progress_at = Some(now - limits.forecast_window_secs - 0.5);
        assert!(forecast(&track, now, 10 * MB, &limits).eta_secs.is_some());
    }

    #[test]
    fn no_eta_when_shrinking_flat_or_unknown() {
        let limits = HistoryLimits::default();
        let flat = track_of(stuck(0.0, 121, 0));
        let f = forecast(&flat, T0 + 1200.0, 10 * MB, &limits);
        assert_eq!((f.growth_bytes_per_sec, f.eta_secs), (Some(0.0), None));

        let shrinking = track_of((0..121).map(|i| Sample {
            retained_bytes: Some(1_000_000 - 10 * i),
            ..logical(10.0 * i as f64, 0, 0)
        }));
        let f = forecast(&shrinking, T0 + 1200.0, 10 * MB, &limits);
        assert!(f.growth_bytes_per_sec.unwrap() < 0.0);
        assert_eq!((f.eta_secs, f.to), (None, ForecastTarget::None));

        let empty = SlotTrack::new("s").unwrap();
        let f = forecast(&empty, T0, 10 * MB, &limits);
        assert_eq!((f.growth_bytes_per_sec, f.eta_secs), (None, None));
    }

    #[test]
    fn no_eta_once_the_latest_sample_is_lost() {
        let limits = HistoryLimits::default();
        let (mut track, now) = stuck_track();
        let latest = track.samples.back_mut().unwrap();
        (latest.wal_status, latest.lost) = (Some(WalStatus::Lost), true);
        assert_eq!(forecast(&track, now, 10 * MB, &limits).eta_secs, None);

        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().retained_bytes = None;
        assert_eq!(forecast(&track, now, 10 * MB, &limits).eta_secs, None);
    }

    /// Retained WAL over 7 samples (6 pairs) in the window, of which `grow` pairs grow.
    fn pairs_track(grow: usize) -> SlotTrack {
        let mut y = 1000;
        let mut samples = stuck(0.0, 100, 0); // old history, outside the window
        for i in 0..7 {
            if i > 0 {
                // Big rises, small dips: the slope stays positive.
                y += if i <= grow { 1000 } else { -10 };
            }
            samples.push(Sample {
                retained_bytes: Some(y),
                ..logical(1000.0 + 100.0 * i as f64, 0, 0)
            });
        }
        track_of(samples)
    }

    #[test]
    fn eta_needs_growth_in_two_thirds_of_the_pairs() {
        let limits = HistoryLimits::default();
        let now = T0 + 1600.0;
        let f = forecast(&pairs_track(4), now, 10 * MB, &limits);
        assert!(f.eta_secs.is_some(), "4 of 6 pairs grew");
        let f = forecast(&pairs_track(3), now, 10 * MB, &limits);
        assert!(f.growth_bytes_per_sec.unwrap() > 0.0);
        assert_eq!(f.eta_secs, None, "3 of 6 pairs grew");
    }

    #[test]
    fn one_burst_in_a_flat_history_gives_no_eta() {
        let mut samples = stuck(0.0, 121, 0);
        for s in &mut samples[100..] {
            s.retained_bytes = Some(50 * MB); // one jump, then flat again
        }
        let track = track_of(samples);
        let f = forecast(&track, T0 + 1200.0, 100 * MB, &HistoryLimits::default());
        assert!(f.growth_bytes_per_sec.unwrap() > 0.0);
        assert_eq!(f.eta_secs, None);
    }

    fn eta_finding(safe_wal_size: i64) -> Option<Finding> {
        let (mut track, now) = stuck_track();
        let latest = track.samples.back_mut().unwrap();
        // Keep stalled out of the picture: the consumer is disconnected.
        latest.active = false;
        latest.safe_wal_size = Some(safe_wal_size);
        let (findings, _) = history_findings(&track, now, 10 * MB, &HistoryLimits::default());
        assert!(findings.len() <= 1);
        findings.into_iter().next()
    }

    #[test]
    fn budget_exhaustion_severity_boundaries() {
        // 100 bytes/s: the ETA is safe_wal_size / 100 seconds.
        let cases = [
            (0, Some(Severity::Critical)),
            (90_000, Some(Severity::Critical)),
            (90_010, Some(Severity::Warning)),
            (360_000, Some(Severity::Warning)),
            (360_010, None),
        ];
        for (safe, expected) in cases {
            let f = eta_finding(safe);
            assert_eq!(f.as_ref().map(|f| f.severity), expected, "{safe}");
            if let Some(f) = f {
                assert_eq!(f.code, FindingCode::BudgetExhaustionSoon);
            }
        }
    }

    #[test]
    fn budget_summary_names_rate_and_time_left() {
        let f = eta_finding(90_000).unwrap();
        assert!(f.summary.contains("100 bytes/s"), "{}", f.summary);
        assert!(f.summary.contains("lost in about 15min"), "{}", f.summary);
    }

    #[test]
    fn ceiling_summary_names_the_ceiling() {
        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().active = false;
        let (findings, f) = history_findings(&track, now, 300_000, &HistoryLimits::default());
        assert_eq!(f.to, ForecastTarget::Ceiling);
        assert_eq!(codes(&findings), ["budget_exhaustion_soon"]);
        assert_eq!(findings[0].severity, Severity::Warning);
        assert!(
            findings[0]
                .summary
                .contains("reaches 293 kB in about 30min"),
            "{}",
            findings[0].summary
        );
    }

    #[test]
    fn slow_growth_never_reads_as_zero_bytes() {
        let f = Forecast {
            growth_bytes_per_sec: Some(0.2),
            eta_secs: Some(10.0),
            to: ForecastTarget::Budget,
        };
        let finding = budget_finding(&f, 0, &HistoryLimits::default()).unwrap();
        assert!(finding.summary.contains("1 bytes/s"), "{}", finding.summary);
    }

    /// Stuck at 1000 from T0 while the server writes 1 MB every 10 s; latest sample at
    /// `now`, which is `secs` after the last progress.
    fn stalled_after(secs: f64) -> Vec<Finding> {
        let mut track = track_of(stuck(0.0, 3, MB as u64));
        track.record(logical(secs, 1000 + 4 * MB as u64, 1000));
        history_findings(&track, T0 + secs, 0, &HistoryLimits::default()).0
    }

    #[test]
    fn a_reconnected_consumer_gets_a_fresh_stall_clock() {
        let limits = HistoryLimits::default();
        let mut track = track_of(stuck(0.0, 3, MB as u64));
        let mut gone = logical(30.0, 1000 + 2 * MB as u64, 1000);
        gone.active = false;
        track.record(gone);
        // Back 180 s later, at the same position, while the server keeps writing.
        track.record(logical(210.0, 1000 + 3 * MB as u64, 1000));
        track.record(logical(260.0, 1000 + 4 * MB as u64, 1000));
        let codes = |t: &SlotTrack, now: f64| -> Vec<FindingCode> {
            history_findings(t, T0 + now, 0, &limits)
                .0
                .iter()
                .map(|f| f.code)
                .collect()
        };
        assert!(
            !codes(&track, 260.0).contains(&FindingCode::Stalled),
            "50 s since reconnecting"
        );
        assert_eq!(
            track.last_progress_at,
            Some(T0),
            "reconnecting is not progress"
        );
        track.record(logical(331.0, 1000 + 5 * MB as u64, 1000));
        assert!(
            codes(&track, 331.0).contains(&FindingCode::Stalled),
            "121 s since reconnecting"
        );
    }

    #[test]
    fn stalled_severity_boundaries() {
        let cases = [
            (30.0, None),
            (119.9, None),
            (120.0, Some(Severity::Warning)),
            (479.9, Some(Severity::Warning)),
            (480.0, Some(Severity::Critical)),
        ];
        for (secs, expected) in cases {
            let findings = stalled_after(secs);
            let stalled = findings.iter().find(|f| f.code == FindingCode::Stalled);
            assert_eq!(stalled.map(|f| f.severity), expected, "{secs}");
        }
    }

    /// A logical sample of a consumer sent `txns` transactions so far, its last reply at
    /// `reply` (seconds after T0).
    fn fed(at: f64, current: u64, confirmed: u64, txns: i64, reply: f64) -> Sample {
        Sample {
            reply_at: Some(T0 + reply),
            ..sending(at, current, confirmed, txns)
        }
    }

    fn stall_limits() -> HistoryLimits {
        HistoryLimits {
            stall_after_secs: 10.0,
            ..HistoryLimits::default()
        }
    }

    fn stalled_at(track: &SlotTrack, at: f64) -> Option<Finding> {
        let (findings, _) = history_findings(track, T0 + at, 0, &stall_limits());
        findings
            .into_iter()
            .find(|f| f.code == FindingCode::Stalled)
    }

    fn upto(samples: &[Sample], at: f64) -> SlotTrack {
        track_of(samples.iter().copied().filter(|s| s.at <= T0 + at))
    }

    #[test]
    fn a_consumer_busy_with_a_large_transaction_is_not_stalled() {
        // 600 MB written over 60 s in one transaction, decoded meanwhile, sent for 30 s after
        // its commit (no transaction counted until then); the consumer answers every second
        // and confirms the commit the second after it is counted.
        let big = 600 * MB as u64;
        let mut samples: Vec<Sample> = (0..=90)
            .map(|i| {
                let written = (i.min(60) as u64) * 10 * MB as u64;
                fed(f64::from(i), 1000 + written, 1000, 5, f64::from(i))
            })
            .collect();
        samples.push(fed(91.0, 1000 + big, 1000, 6, 91.0));
        samples.push(fed(92.0, 1000 + big, 1000 + big, 6, 92.0));
        for s in &samples {
            let at = s.at - T0;
            assert_eq!(stalled_at(&upto(&samples, at), at), None, "at {at}");
        }
    }

    #[test]
    fn a_consumer_sent_transactions_it_does_not_confirm_is_stalled() {
        // Sent more transactions from 5 s on; it keeps answering keepalives.
        let samples: Vec<Sample> = (0..=20)
            .map(|i| {
                let txns = if i >= 5 { 9 } else { 5 };
                fed(f64::from(i), 6000, 1000, txns, f64::from(i))
            })
            .collect();
        assert_eq!(stalled_at(&upto(&samples, 14.0), 14.0), None, "9 s owed");
        let stall = stalled_at(&upto(&samples, 15.0), 15.0).expect("10 s owed");
        assert_eq!(stall.severity, Severity::Warning);
        assert!(
            stall.summary.contains("confirmed nothing for 10s")
                && stall.summary.contains("sent it 4 transactions"),
            "{}",
            stall.summary
        );
        // It confirms part of it: the clock waits for the next transaction sent.
        let mut more = samples.clone();
        more.push(fed(21.0, 6000, 3000, 9, 21.0));
        more.push(fed(35.0, 6000, 3000, 9, 35.0));
        assert_eq!(stalled_at(&upto(&more, 35.0), 35.0), None);
    }

    #[test]
    fn a_silent_consumer_is_stalled_though_nothing_more_was_sent() {
        // The walsender is blocked writing to a consumer that stopped reading and answering.
        let samples: Vec<Sample> = (0..=40)
            .map(|i| fed(f64::from(i), 1000 + i as u64 * 4 * MB as u64, 1000, 5, 2.0))
            .collect();
        let stall = stalled_at(&upto(&samples, 40.0), 40.0).expect("silent for 38 s");
        assert!(
            stall
                .summary
                .contains("has not answered the server for 38s"),
            "{}",
            stall.summary
        );
        assert_eq!(
            stalled_at(&upto(&samples, 24.0), 24.0),
            None,
            "22 s: under 30 s"
        );
    }

    #[test]
    fn stalled_summary_says_how_long_and_how_much() {
        let findings = stalled_after(300.0);
        assert_eq!(
            findings[0].summary,
            "connected but has confirmed nothing for 5min while the server wrote 4 MB of WAL"
        );
    }

    #[test]
    fn idle_server_is_not_a_stall() {
        let track = track_of((0..10).map(|i| logical(60.0 * i as f64, 5000, 1000)));
        let (findings, _) = history_findings(&track, T0 + 540.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn inactive_slot_is_not_stalled() {
        let mut track = track_of(stuck(0.0, 3, MB as u64));
        track.record(Sample {
            active: false,
            ..logical(300.0, 1000 + 4 * MB as u64, 1000)
        });
        let (findings, _) = history_findings(&track, T0 + 300.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn a_low_traffic_consumer_that_confirms_nothing_sent_is_stalled() {
        // A few small transactions a second: far below stall_min_wal, but sent and never
        // confirmed.
        let limits = HistoryLimits {
            stall_after_secs: 5.0,
            ..HistoryLimits::default()
        };
        let mut track = track_of([sending(0.0, 1000, 1000, 10)]);
        for i in 1..=8u32 {
            let t = f64::from(i);
            track.record(sending(
                t,
                1000 + 2_000 * u64::from(i),
                1000,
                10 + 3 * i64::from(i),
            ));
        }
        let (findings, _) = history_findings(&track, T0 + 8.0, 0, &limits);
        assert_eq!(codes(&findings), ["stalled"], "{findings:?}");
        assert!(
            findings[0].summary.contains("sent it 24 transactions"),
            "{findings:?}"
        );
    }

    #[test]
    fn a_low_traffic_consumer_that_confirms_is_not_stalled() {
        let limits = HistoryLimits {
            stall_after_secs: 5.0,
            ..HistoryLimits::default()
        };
        let mut track = track_of([sending(0.0, 1000, 1000, 10)]);
        for i in 1..=20u64 {
            let t = i as f64;
            // Each transaction is confirmed by the next sample.
            track.record(sending(
                t,
                1000 + 2_000 * i,
                1000 + 2_000 * (i - 1),
                10 + i as i64,
            ));
        }
        let (findings, _) = history_findings(&track, T0 + 20.0, 0, &limits);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn an_idle_server_sends_no_transactions_and_nothing_is_stalled() {
        let limits = HistoryLimits {
            stall_after_secs: 5.0,
            ..HistoryLimits::default()
        };
        // Running-xacts records move the position a little; no transaction is sent.
        let mut track = track_of([sending(0.0, 1000, 1000, 10)]);
        for i in 1..=30u64 {
            track.record(sending(i as f64, 1000 + 50 * i, 1000, 10));
        }
        let (findings, _) = history_findings(&track, T0 + 30.0, 0, &limits);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn transactions_sent_before_a_reconnection_do_not_count() {
        let limits = HistoryLimits {
            stall_after_secs: 5.0,
            ..HistoryLimits::default()
        };
        let mut track = track_of([sending(0.0, 1000, 1000, 10)]);
        track.record(sending(1.0, 3000, 1000, 20));
        let mut gone = sending(2.0, 3000, 1000, 20);
        gone.active = false;
        track.record(gone);
        for i in 3..=12u64 {
            track.record(sending(i as f64, 3000, 1000, 20));
        }
        let (findings, _) = history_findings(&track, T0 + 12.0, 0, &limits);
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn lost_slot_is_not_stalled() {
        let mut track = track_of(stuck(0.0, 3, MB as u64));
        track.record(Sample {
            wal_status: Some(WalStatus::Lost),
            lost: true,
            retained_bytes: None,
            ..logical(300.0, 1000 + 4 * MB as u64, 1000)
        });
        let (findings, _) = history_findings(&track, T0 + 300.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn an_idle_servers_small_records_are_not_a_stall() {
        // A healthy consumer has nothing to confirm for running-transactions and checkpoint
        // records: a few hundred bytes written and unconfirmed for minutes are not a stall.
        let track = track_of([logical(0.0, 1000, 1000), logical(600.0, 1500, 1000)]);
        let (findings, _) = history_findings(&track, T0 + 600.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty(), "{findings:?}");
        let floor = HistoryLimits::default().stall_min_bytes as u64;
        let track = track_of([logical(0.0, 1000, 1000), logical(600.0, 1000 + floor, 1000)]);
        let (findings, _) = history_findings(&track, T0 + 600.0, 0, &HistoryLimits::default());
        assert_eq!(codes(&findings), ["stalled"], "from the floor on it is");
    }

    #[test]
    fn nothing_to_confirm_is_not_a_stall() {
        // A standby replaying behind a position copied from its primary: the server moves,
        // the slot is already ahead of it.
        let track = track_of([logical(0.0, 100, 5000), logical(300.0, 4000, 5000)]);
        let (findings, _) = history_findings(&track, T0 + 300.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn physical_slot_stalls_on_restart_lsn() {
        let later = 1000 + 2 * MB as u64;
        let track = track_of([physical(0.0, 1000, 500), physical(200.0, later, 500)]);
        let (findings, _) = history_findings(&track, T0 + 200.0, 0, &HistoryLimits::default());
        assert_eq!(codes(&findings), ["stalled"]);
        let moving = track_of([physical(0.0, 1000, 500), physical(200.0, later, 600)]);
        let (findings, _) = history_findings(&moving, T0 + 200.0, 0, &HistoryLimits::default());
        assert!(findings.is_empty());
    }

    #[test]
    fn both_findings_come_worst_first_with_the_forecast() {
        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().safe_wal_size = Some(300_000); // 50min: warning
        let limits = HistoryLimits {
            stall_min_bytes: 1,
            ..HistoryLimits::default()
        };
        let (findings, f) = history_findings(&track, now, 10 * MB, &limits);
        // Stalled for 20min (>= 4 x 2min): critical, so it sorts first.
        assert_eq!(codes(&findings), ["stalled", "budget_exhaustion_soon"]);
        assert_eq!(findings[0].severity, Severity::Critical);
        assert_eq!(findings[1].severity, Severity::Warning);
        assert_eq!(f.to, ForecastTarget::Budget);
    }

    /// A sample of `slot` (a logical slot stuck at 1000) taken at `at` seconds, the server
    /// having written 1 MB every 10 s since T0.
    fn sampled(slot: &SlotObservation, at: f64) -> Sample {
        let mut slot = slot.clone();
        (slot.restart_lsn, slot.confirmed_flush_lsn) = (Some(1000), Some(1000));
        Sample::observe(&slot, Some(1000 + (at / 10.0) as u64 * MB as u64), T0 + at)
    }

    #[test]
    fn a_sample_is_what_the_worker_saw_with_sizes_only_while_wal_is_held() {
        let mut slot = SlotObservation::logical("s");
        slot.restart_lsn = Some(100);
        slot.safe_wal_size = Some(5000);
        let s = Sample::observe(&slot, Some(1100), T0);
        assert_eq!(
            (s.retained_bytes, s.safe_wal_size, s.current_lsn, s.lost),
            (Some(1000), Some(5000), 1100, false)
        );
        slot.invalidation_reason = Some("rows_removed".into());
        let s = Sample::observe(&slot, None, T0);
        assert_eq!(
            (s.retained_bytes, s.safe_wal_size, s.current_lsn),
            (None, None, 0)
        );
        assert!(
            s.lost,
            "an invalidation reason is lost, whatever wal_status says"
        );
        assert_eq!(s.wal_status, Some(WalStatus::Reserved));
    }

    #[test]
    fn a_slot_invalidated_with_a_reason_is_not_stalled() {
        let healthy = SlotObservation::logical("s");
        let mut invalidated = healthy.clone();
        invalidated.invalidation_reason = Some("wal_level_insufficient".into());
        let limits = HistoryLimits::default();
        let watched = |slot: &SlotObservation| {
            let mut track = track_of([sampled(&healthy, 0.0)]);
            track.record(sampled(slot, 300.0));
            codes(&history_findings(&track, T0 + 300.0, 0, &limits).0)
        };
        assert_eq!(watched(&healthy), ["stalled"]);
        assert!(watched(&invalidated).is_empty());
    }

    #[test]
    fn no_eta_for_a_slot_invalidated_with_a_reason() {
        let (mut track, now) = stuck_track();
        track.samples.back_mut().unwrap().lost = true;
        let f = forecast(&track, now, 10 * MB, &HistoryLimits::default());
        assert_eq!((f.eta_secs, f.to), (None, ForecastTarget::None));
    }

    /// A consumer stuck at 1000 while retained WAL grows 100 bytes/s, sampled every
    /// `interval` seconds for `span` seconds (T0 .. T0 + span).
    fn steady(interval: f64, span: f64) -> SlotTrack {
        let count = (span / interval) as usize;
        track_of((0..=count).map(|i| {
            let at = interval * i as f64;
            logical(at, 1000 + (100.0 * at) as u64, 1000)
        }))
    }

    fn limits_with_window(window: f64) -> HistoryLimits {
        HistoryLimits {
            forecast_window_secs: window,
            ..HistoryLimits::default()
        }
    }

    #[test]
    fn a_one_second_interval_forecasts_over_the_default_window() {
        let track = steady(1.0, 1200.0);
        let f = forecast(&track, T0 + 1200.0, 10 * MB, &HistoryLimits::default());
        assert!(
            (f.growth_bytes_per_sec.unwrap() - 100.0).abs() < 1e-6,
            "{f:?}"
        );
        let left = (10 * MB - 120_000) as f64 / 100.0;
        assert!((f.eta_secs.unwrap() - left).abs() < 1e-3, "{f:?}");
        assert_eq!(f.to, ForecastTarget::Ceiling);
    }

    #[test]
    fn a_ten_second_interval_forecasts_over_a_day_long_window() {
        let track = steady(10.0, 100_000.0);
        let f = forecast(
            &track,
            T0 + 100_000.0,
            100 * MB,
            &limits_with_window(86_400.0),
        );
        assert!(
            (f.growth_bytes_per_sec.unwrap() - 100.0).abs() < 1e-6,
            "{f:?}"
        );
        assert!(f.eta_secs.is_some(), "{f:?}");
    }

    #[test]
    fn a_window_shorter_than_the_interval_fits_the_last_samples() {
        let track = steady(3600.0, 10.0 * 3600.0);
        let f = forecast(&track, T0 + 36_000.0, 100 * MB, &limits_with_window(10.0));
        assert!(
            (f.growth_bytes_per_sec.unwrap() - 100.0).abs() < 1e-6,
            "{f:?}"
        );
        assert!(f.eta_secs.is_some(), "{f:?}");
        // A consumer that confirmed within those samples is advancing: no forecast.
        let mut track = track;
        track.last_progress_at = Some(T0 + 36_000.0 - 7000.0);
        let f = forecast(&track, T0 + 36_000.0, 100 * MB, &limits_with_window(10.0));
        assert_eq!(f.eta_secs, None);
    }

    #[test]
    fn every_allowed_interval_and_window_forecasts_steady_growth() {
        let intervals = [
            1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 17.0, 33.0, 60.0, 100.0, 257.0, 300.0, 343.0, 600.0,
            1000.0, 2049.0, 3600.0,
        ];
        let windows = [
            10.0, 30.0, 100.0, 252.0, 253.0, 600.0, 1000.0, 1920.0, 2000.0, 2530.0, 5000.0,
            15_360.0, 16_000.0, 21_600.0, 50_000.0, 86_400.0,
        ];
        for interval in intervals {
            // Long enough for the first sample (which counts as progress) to leave every window.
            let span = 1.2 * 86_400.0 + 3.0 * interval;
            let track = steady(interval, span);
            let now = T0 + (span / interval).floor() * interval;
            for window in windows {
                let f = forecast(&track, now, 1 << 40, &limits_with_window(window));
                let growth = f.growth_bytes_per_sec.unwrap_or(f64::NAN);
                assert!(
                    f.eta_secs.is_some() && (growth - 100.0).abs() < 1e-6,
                    "interval {interval} s, window {window} s: {f:?}"
                );
            }
        }
    }

    #[test]
    fn no_forecast_while_the_slot_advances_at_a_short_interval() {
        // The consumer confirms every second but falls behind: retained WAL grows 50 bytes/s.
        let track = track_of((0..=1200).map(|i| {
            let at = f64::from(i);
            logical(at, 1000 + 100 * i as u64, 1000 + 50 * i as u64)
        }));
        let f = forecast(&track, T0 + 1200.0, 10 * MB, &HistoryLimits::default());
        assert!(
            (f.growth_bytes_per_sec.unwrap() - 50.0).abs() < 1e-6,
            "growth shown"
        );
        assert_eq!((f.eta_secs, f.to), (None, ForecastTarget::None));
    }

    #[test]
    fn thinned_rings_keep_one_point_per_spacing_and_restart_after_the_clock_steps_back() {
        let track = steady(10.0, 1000.0);
        let times = |k: usize, track: &SlotTrack| -> Vec<f64> {
            track.thinned[k].iter().map(|p| p.at - T0).collect()
        };
        // Every 40 s is the first sample at least 32 s after the last kept one.
        assert_eq!(times(0, &track).len(), THINNED_POINTS);
        assert_eq!(times(0, &track).last(), Some(&1000.0));
        assert!(times(0, &track).windows(2).all(|w| w[1] - w[0] == 40.0));
        assert_eq!(times(1, &track), [0.0, 260.0, 520.0, 780.0]);
        assert_eq!(times(2, &track), [0.0]);
        let mut track = track;
        track.record(logical(-50.0, 1000, 1000));
        assert_eq!(times(2, &track), [0.0, -50.0], "a clock step back is kept");
        let mut unknown = logical(5000.0, 1000, 1000);
        unknown.retained_bytes = None;
        track.record(unknown);
        assert_eq!(
            times(2, &track),
            [0.0, -50.0],
            "only known retained WAL is kept"
        );
    }

    #[test]
    fn fit_points_follow_the_samples_one_for_one() {
        let mut track = SlotTrack::new("s").unwrap();
        for i in 0..(SAMPLES_PER_SLOT + 7) {
            let mut s = logical(i as f64, 1000 + i as u64, 1000);
            if i % 3 == 0 {
                s.retained_bytes = None;
            }
            track.record(s);
        }
        assert_eq!(track.points.len(), track.samples.len());
        for (p, s) in track.points.iter().zip(track.samples.iter()) {
            assert_eq!(p.at, s.at);
            assert_eq!(
                Some(p.retained_bytes).filter(|&r| r != UNKNOWN),
                s.retained_bytes
            );
        }
    }

    #[test]
    fn thinned_rings_grow_shared_memory_by_under_a_fifth() {
        let thinned = std::mem::size_of::<[heapless::Deque<FitPoint, THINNED_POINTS>; 3]>();
        let samples = std::mem::size_of::<heapless::Deque<Sample, SAMPLES_PER_SLOT>>();
        assert!(thinned * 5 < samples, "{thinned} bytes against {samples}");
    }

    #[test]
    fn track_types_are_plain_old_data() {
        fn is_copy<T: Copy>() {}
        is_copy::<Sample>();
        is_copy::<HistoryLimits>();
        is_copy::<Forecast>();
        is_copy::<ForecastTarget>();
        // The samples live inside the track, not behind a pointer.
        assert!(
            std::mem::size_of::<SlotTrack>() >= SAMPLES_PER_SLOT * std::mem::size_of::<Sample>()
        );
    }
}
