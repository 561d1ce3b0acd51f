//! When each open alert was last announced, for its reminders.
//!
//! A reminder used to rewrite its alert row (`last_notified_at`, `notifications`): on an idle
//! server with hundreds of open alerts that was almost all the WAL the monitor wrote, a row
//! and often a full page image per alert every reminder interval. The clock of reminders is
//! kept in shared memory instead (`Clock`, fixed capacity); the row keeps the last raise,
//! reopening or escalation. After a restart shared memory is empty: an alert's clock is then
//! the later of its row and the server start, so reminders resume one interval after the
//! start, never as a burst of every overdue alert at once.

/// The alerts reminded since the server started, with when; at most `N` of them, sorted by
/// alert id (looked up once per open alert per pass, under a lock: a search, not a scan).
#[derive(Debug, Clone, Default)]
pub struct Clock<const N: usize> {
    entries: heapless::Vec<(i64, f64), N>,
}

impl<const N: usize> Clock<N> {
    pub const fn new() -> Self {
        Self {
            entries: heapless::Vec::new(),
        }
    }

    /// The time the reminder clock of alert `id` starts from: its row's `last_notified_at`,
    /// its last reminder since the start, or the start itself, whichever is latest.
    pub fn last_notified(&self, id: i64, row: f64, started_at: f64) -> f64 {
        let reminded = self
            .position(id)
            .map_or(started_at, |at| self.entries[at].1);
        row.max(reminded)
    }

    /// Notes a reminder of `id` at `now`. When full, first forgets entries older than
    /// `stale_before` (alerts no longer open: an open one is reminded every interval).
    /// `false` when there is still no room: the caller must write the reminder to the row,
    /// or the alert would be reminded again at every pass.
    pub fn remember(&mut self, id: i64, now: f64, stale_before: f64) -> bool {
        if let Ok(at) = self.position(id) {
            self.entries[at].1 = now;
            return true;
        }
        if self.entries.is_full() {
            self.entries.retain(|(_, at)| *at >= stale_before);
        }
        let at = self.position(id).unwrap_or_else(|at| at);
        self.entries.insert(at, (id, now)).is_ok()
    }

    /// Where `id` is (`Ok`) or would go (`Err`).
    fn position(&self, id: i64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&id, |(i, _)| *i)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_of_row_reminder_and_start() {
        let mut c = Clock::<4>::new();
        // Never reminded since the start (a restart): the start, unless the row is later.
        assert_eq!(c.last_notified(1, 100.0, 500.0), 500.0);
        assert_eq!(c.last_notified(1, 900.0, 500.0), 900.0);
        assert!(c.remember(1, 1400.0, 0.0));
        assert_eq!(c.last_notified(1, 100.0, 500.0), 1400.0);
        // An escalation rewrites the row later than the last reminder: the row wins.
        assert_eq!(c.last_notified(1, 1500.0, 500.0), 1500.0);
        assert!(c.remember(1, 2300.0, 0.0));
        assert_eq!(c.len(), 1, "one entry per alert");
    }

    #[test]
    fn full_forgets_the_stale_or_says_no_room() {
        let mut c = Clock::<2>::new();
        assert!(c.remember(1, 100.0, 0.0));
        assert!(c.remember(2, 1000.0, 0.0));
        // Both recent: no room, the caller writes the row.
        assert!(!c.remember(3, 1100.0, 50.0));
        assert_eq!(c.last_notified(3, 10.0, 0.0), 10.0);
        // Alert 1 was not reminded for two intervals: it is resolved, its entry goes.
        assert!(c.remember(3, 1100.0, 200.0));
        assert_eq!(c.last_notified(3, 10.0, 0.0), 1100.0);
        assert_eq!(c.last_notified(1, 10.0, 0.0), 10.0);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn found_whatever_order_alerts_are_reminded_in() {
        let mut c = Clock::<8>::new();
        for id in [5, 1, 7, 3] {
            assert!(c.remember(id, id as f64 * 100.0, 0.0));
        }
        for id in [1, 3, 5, 7] {
            assert_eq!(c.last_notified(id, 0.0, 0.0), id as f64 * 100.0);
        }
        assert_eq!(c.last_notified(4, 0.0, 0.0), 0.0);
    }
}
