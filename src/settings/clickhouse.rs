//! The ClickHouse foreign-data wrapper.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

static CLICKHOUSE_MAX_LINE_KB: GucSetting<i32> =
    GucSetting::<i32>::new((cdc_health_rules::clickhouse::DEFAULT_MAX_LINE_BYTES >> 10) as i32);

/// The wrapper's bound on one answer line.
pub fn register() {
    GucRegistry::define_int_guc(
        c"cdc_health.clickhouse_max_line",
        c"Longest line (one row) of a ClickHouse answer the wrapper reads; a longer one is an error.",
        c"Bounds the memory one scan can take.",
        &CLICKHOUSE_MAX_LINE_KB,
        1,
        1 << 20,
        GucContext::Userset,
        GucFlags::UNIT_KB,
    );
}

/// `cdc_health.clickhouse_max_line` in bytes.
pub fn clickhouse_max_line_bytes() -> usize {
    usize::try_from(CLICKHOUSE_MAX_LINE_KB.get())
        .unwrap_or(1)
        .max(1)
        << 10
}
