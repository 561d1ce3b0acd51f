//! SPI helpers.

use pgrx::prelude::*;
use pgrx::spi::SpiResult;
use pgrx::{FromDatum, IntoDatum};

/// First column of the first row of a read-only query.
///
/// pgrx's `Spi::get_one` runs through `update()`, which assigns a transaction id: a monitor
/// reading through it would burn an xid and write a commit record on every pass, hold an xid
/// that slot creation has to wait for, and fail outright on a standby. Reads go through here.
pub fn read_one<T: FromDatum + IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> SpiResult<Option<T>> {
    Spi::connect(|client| {
        let rows = client.select(query, Some(1), args)?;
        if rows.is_empty() {
            return Ok(None);
        }
        rows.first().get_one::<T>()
    })
}
