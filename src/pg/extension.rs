//! Whether the extension's objects exist in this database, and at the library's version.

use pgrx::pg_sys;
use pgrx::spi::SpiResult;

/// The extension's objects in this database as the library sees them.
#[derive(Debug, Clone, PartialEq)]
pub enum Installed {
    /// Not created here: the workers idle.
    Missing,
    /// Created at the library's own version; the extension's OID (its lock is the passes').
    Current(pg_sys::Oid),
    /// Created at another version (a new library before `ALTER EXTENSION cdc_health UPDATE`):
    /// the workers idle rather than run statements against objects they were not built for.
    OtherVersion(String),
}

/// The version of the library, which is the version of the SQL objects it expects.
pub const LIBRARY_VERSION: &str = env!("CARGO_PKG_VERSION");

impl Installed {
    pub fn is_current(&self) -> bool {
        matches!(self, Installed::Current(_))
    }
}

/// Is the extension created in this database, and at which version?
pub fn installed() -> SpiResult<Installed> {
    // Asked before every pass of both workers: planned once per process.
    // The OID too, so that the pass's lock needs no second catalog scan.
    let found = pgrx::spi::Spi::connect(|client| {
        let rows = crate::pg::plans::select(
            client,
            "SELECT oid, extversion FROM pg_catalog.pg_extension WHERE extname = 'cdc_health'",
            &[],
        )?;
        if rows.is_empty() {
            return Ok((None, None));
        }
        rows.first().get_two::<pg_sys::Oid, String>()
    })?;
    Ok(match found {
        (Some(oid), Some(v)) if v == LIBRARY_VERSION => Installed::Current(oid),
        (_, Some(v)) => Installed::OtherVersion(v),
        _ => Installed::Missing,
    })
}
