//! The columns of `pg_replication_slots` that the server computes rather than stores, worked
//! out from a slot's raw fields the way the view defines them. The extension reads slots
//! from shared memory (no SPI, no planner) and derives these here.

use crate::WalStatus;

/// What the server says of the WAL a slot's `restart_lsn` needs (`GetWALAvailability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// The slot never reserved WAL.
    InvalidLsn,
    Reserved,
    Extended,
    Unreserved,
    Removed,
}

/// `wal_status`. An invalidated slot is lost whatever its position. WAL found removed while a
/// consumer is connected is `unreserved`: the walsender may have moved past it since the
/// position was read, and the checkpointer ends it if not.
pub fn wal_status(
    invalidated: bool,
    availability: Availability,
    active: bool,
) -> Option<WalStatus> {
    if invalidated {
        return Some(WalStatus::Lost);
    }
    match availability {
        Availability::InvalidLsn => None,
        Availability::Reserved => Some(WalStatus::Reserved),
        Availability::Extended => Some(WalStatus::Extended),
        Availability::Unreserved => Some(WalStatus::Unreserved),
        Availability::Removed if active => Some(WalStatus::Unreserved),
        Availability::Removed => Some(WalStatus::Lost),
    }
}

/// The WAL settings `safe_wal_size` depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalKeep {
    pub segment_bytes: u64,
    /// `max_slot_wal_keep_size` in MB; negative when unlimited.
    pub max_slot_wal_keep_mb: i64,
    pub wal_keep_mb: i64,
}

/// `safe_wal_size`: bytes that can still be written before the slot's oldest needed segment
/// falls out of what the server keeps. `None` when unlimited or already lost. The server
/// keeps the larger of the two settings in whole segments, beyond the segment `restart_lsn`
/// is in, so the slot is safe until the write position reaches the start of the segment
/// after those.
pub fn safe_wal_size(
    status: Option<WalStatus>,
    restart_lsn: u64,
    write_lsn: u64,
    keep: WalKeep,
) -> Option<i64> {
    if status == Some(WalStatus::Lost) || keep.max_slot_wal_keep_mb < 0 || keep.segment_bytes == 0 {
        return None;
    }
    let segment_mb = (keep.segment_bytes / (1024 * 1024)).max(1);
    let segments = |mb: i64| u64::try_from(mb).unwrap_or(0) / segment_mb;
    let kept = segments(keep.max_slot_wal_keep_mb).max(segments(keep.wal_keep_mb));
    let fail_at = (restart_lsn / keep.segment_bytes + kept + 1) * keep.segment_bytes;
    Some((fail_at as i64).wrapping_sub(write_lsn as i64))
}

/// `age(xid)` against the next transaction id; `None` for no xid (0) and the special ones.
pub fn xid_age(next_xid: u32, xid: u32) -> Option<i64> {
    // 1 and 2 are bootstrap and frozen: not a position in the xid space.
    (xid >= 3).then(|| i64::from(next_xid.wrapping_sub(xid) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1024 * 1024;
    const KEEP: WalKeep = WalKeep {
        segment_bytes: 16 * MB,
        max_slot_wal_keep_mb: 128,
        wal_keep_mb: 0,
    };

    #[test]
    fn safe_wal_size_counts_to_the_end_of_the_kept_segments() {
        // restart_lsn in segment 1 (0/151A750): 8 segments kept beyond it, lost once the
        // write position reaches the start of segment 10.
        let restart = 0x151_A750;
        assert_eq!(
            safe_wal_size(Some(WalStatus::Reserved), restart, 0x200_0000, KEEP),
            Some((10 * 16 * MB) as i64 - 0x200_0000)
        );
        // Past it: negative, as the server reports for an unreserved slot.
        assert_eq!(
            safe_wal_size(Some(WalStatus::Unreserved), restart, 0xA00_0100, KEEP),
            Some(-0x100)
        );
        // wal_keep_size larger than the slot budget wins.
        let keep = WalKeep {
            wal_keep_mb: 256,
            ..KEEP
        };
        assert_eq!(
            safe_wal_size(Some(WalStatus::Reserved), 0, 0, keep),
            Some((17 * 16 * MB) as i64)
        );
    }

    #[test]
    fn no_safe_wal_size_when_unlimited_or_lost() {
        let unlimited = WalKeep {
            max_slot_wal_keep_mb: -1,
            ..KEEP
        };
        assert_eq!(
            safe_wal_size(Some(WalStatus::Reserved), 0, 0, unlimited),
            None
        );
        assert_eq!(safe_wal_size(Some(WalStatus::Lost), 0, 0, KEEP), None);
    }

    #[test]
    fn wal_status_from_the_invalidation_and_availability() {
        use Availability::*;
        assert_eq!(wal_status(true, Reserved, true), Some(WalStatus::Lost));
        assert_eq!(wal_status(false, InvalidLsn, false), None);
        assert_eq!(
            wal_status(false, Extended, false),
            Some(WalStatus::Extended)
        );
        assert_eq!(
            wal_status(false, Removed, true),
            Some(WalStatus::Unreserved)
        );
        assert_eq!(wal_status(false, Removed, false), Some(WalStatus::Lost));
    }

    #[test]
    fn xid_age_wraps_and_skips_special_xids() {
        assert_eq!(xid_age(1000, 900), Some(100));
        assert_eq!(xid_age(5, u32::MAX - 4), Some(10), "across the wraparound");
        assert_eq!(xid_age(1000, 0), None);
        assert_eq!(xid_age(1000, 2), None);
    }
}
