//! The readings of the volume holding `pg_wal`, kept for the fill forecast: any pass (the
//! worker's or `check_now()`'s) and `wal_usage()` see the same ones.
//!
//! Its critical sections keep the rule of `shmem` (mod.rs): nothing in them raises an error or
//! allocates on the PostgreSQL side.

use cdc_health_rules::wal_volume::{VolumeSample, VOLUME_SAMPLES};

use super::{Locked, HEADER};

/// A ring of readings, oldest overwritten first.
pub struct VolumeRing {
    samples: [VolumeSample; VOLUME_SAMPLES],
    /// Where the next reading goes.
    next: usize,
    len: usize,
}

impl VolumeRing {
    pub(super) const fn new() -> Self {
        VolumeRing {
            samples: [VolumeSample {
                at: 0.0,
                total_bytes: 0,
                free_bytes: 0,
            }; VOLUME_SAMPLES],
            next: 0,
            len: 0,
        }
    }
}

/// Keeps `sample` unless the last one kept is newer than `at - spacing` (so the ring spans
/// at least `VOLUME_SAMPLES * spacing` seconds whatever the interval), or the clock went back.
pub fn record_volume(sample: VolumeSample, spacing: f64) {
    let Some(_lock) = Locked::acquire(true) else {
        return;
    };
    // SAFETY: the lock is held exclusively and HEADER is valid.
    let ring = unsafe { &mut (*HEADER).volume };
    if ring.len > 0 {
        let last = ring.samples[(ring.next + VOLUME_SAMPLES - 1) % VOLUME_SAMPLES];
        if sample.at < last.at + spacing {
            return;
        }
    }
    ring.samples[ring.next] = sample;
    ring.next = (ring.next + 1) % VOLUME_SAMPLES;
    ring.len = (ring.len + 1).min(VOLUME_SAMPLES);
}

/// The readings kept, oldest first (empty without shared memory).
pub fn volume_samples() -> Vec<VolumeSample> {
    let mut out = Vec::with_capacity(VOLUME_SAMPLES);
    let Some(_lock) = Locked::acquire(false) else {
        return out;
    };
    // SAFETY: the lock is held and HEADER is valid.
    let ring = unsafe { &(*HEADER).volume };
    let start = (ring.next + VOLUME_SAMPLES - ring.len) % VOLUME_SAMPLES;
    out.extend((0..ring.len).map(|i| ring.samples[(start + i) % VOLUME_SAMPLES]));
    out
}
