//! What `cdc_health.budget_advice()` is computed from: the history's peak WAL write rate and
//! longest consumer outage, the volume holding `pg_wal`, the settings.

use cdc_health_rules::budget::BudgetFacts;
use pgrx::spi::SpiResult;

use super::wal::{mb_setting, pg_wal_bytes};
use crate::pg::spi::read_one;

/// The most WAL written between the last samples of two consecutive hours of history (or
/// across a gap, averaged over it), per second. Any resolution has a last sample per hour.
const PEAK_RATE: &str = "SELECT pg_catalog.max(written OPERATOR(pg_catalog./) secs)
    FROM (SELECT (m OPERATOR(pg_catalog.-) pg_catalog.lag(m) OVER w)::pg_catalog.float8 AS written,
                 pg_catalog.date_part('epoch',
                     h OPERATOR(pg_catalog.-) pg_catalog.lag(h) OVER w) AS secs
          FROM (SELECT pg_catalog.date_trunc('hour', sampled_at) AS h,
                       pg_catalog.max(current_lsn) AS m
                FROM cdc_health.history_samples
                WHERE current_lsn IS NOT NULL GROUP BY 1) per_hour
          WINDOW w AS (ORDER BY h)) steps
    WHERE secs OPERATOR(pg_catalog.>) 0 AND written OPERATOR(pg_catalog.>=) 0";

/// The longest time from a slot's consumer going away (a row inactive after an active one)
/// to its coming back (the next active row of that slot). Outages not yet over, or begun
/// before the history, do not count.
const LONGEST_OUTAGE: &str = "SELECT pg_catalog.max(pg_catalog.date_part('epoch',
        (SELECT pg_catalog.min(b.sampled_at) FROM cdc_health.history_samples b
         WHERE b.slot_id OPERATOR(pg_catalog.=) o.slot_id
           AND b.sampled_at OPERATOR(pg_catalog.>) o.sampled_at AND b.active)
        OPERATOR(pg_catalog.-) o.sampled_at))
    FROM (SELECT slot_id, sampled_at, active,
                 pg_catalog.lag(active) OVER (PARTITION BY slot_id ORDER BY sampled_at) AS was
          FROM cdc_health.history_samples) o
    WHERE NOT o.active AND o.was";

/// Reads the facts. The caller forces a safe `search_path`.
pub fn facts(budget_bytes: Option<i64>) -> SpiResult<BudgetFacts> {
    let volume = super::volume::wal_volume();
    Ok(BudgetFacts {
        peak_rate_bytes_per_sec: read_one::<f64>(PEAK_RATE, &[])?,
        longest_outage_secs: read_one::<f64>(LONGEST_OUTAGE, &[])?,
        budget_bytes,
        disk_free_bytes: volume.map(|v| v.free_bytes),
        disk_total_bytes: volume.map(|v| v.total_bytes),
        wal_bytes: pg_wal_bytes(super::volume::wal_dir().as_deref()),
        max_wal_bytes: mb_setting(c"max_wal_size"),
        wal_keep_bytes: mb_setting(c"wal_keep_size"),
    })
}
