//! Text other sessions wrote, read from SPI as bytes and decoded without ever failing
//! (`cdc_health_rules::session_text`). pgrx's `String` insists on UTF-8 and errors out of the
//! whole statement, or the worker's whole pass, when a LATIN1 or SQL_ASCII database, or a
//! query from another database, holds anything else.

use cdc_health_rules::session_text::{decode, Decoded, ServerEncoding};
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum};

/// A `text` value decoded from the server encoding, invalid bytes replaced.
pub struct SessionText(pub Decoded);

fn server_encoding() -> ServerEncoding {
    // SAFETY: reads the database encoding fixed for this backend at connection time.
    let encoding = unsafe { pg_sys::GetDatabaseEncoding() } as u32;
    if encoding == pg_sys::pg_enc::PG_UTF8 {
        ServerEncoding::Utf8
    } else {
        ServerEncoding::NotUtf8
    }
}

/// A C string the server holds (a database name, a setting's value), decoded as
/// `SessionText` is; `None` for NULL.
///
/// # Safety
/// `ptr` is NULL or a NUL-terminated string that stays valid for the call.
pub unsafe fn from_c_string(ptr: *const std::ffi::c_char) -> Option<String> {
    (!ptr.is_null()).then(|| {
        // SAFETY: checked for NULL; NUL-terminated and valid by the caller's promise.
        let bytes = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_bytes();
        decode(bytes, server_encoding()).text
    })
}

/// Bytes another process wrote (a log report's message), decoded as `SessionText` is.
pub fn from_bytes(bytes: &[u8]) -> String {
    decode(bytes, server_encoding()).text
}

impl FromDatum for SessionText {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: the caller (SPI, through pgrx) hands a non-null text datum of its tuple;
        // detoasting gives a varlena that lives in the current memory context, and its bytes
        // are copied out before this returns.
        let bytes = unsafe {
            let varlena = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
            pgrx::varlena::varlena_to_byte_slice(varlena)
        };
        Some(SessionText(decode(bytes, server_encoding())))
    }
}

impl IntoDatum for SessionText {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        self.0.text.into_datum()
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::TEXTOID
    }
}

/// Column `ordinal` of an SPI row as text from another session.
pub fn get(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    ordinal: usize,
) -> pgrx::spi::SpiResult<Option<String>> {
    Ok(get_decoded(row, ordinal)?.map(|d| d.text))
}

/// As `get`, saying whether it came through whole.
pub fn get_decoded(
    row: &pgrx::spi::SpiHeapTupleData<'_>,
    ordinal: usize,
) -> pgrx::spi::SpiResult<Option<Decoded>> {
    Ok(row.get::<SessionText>(ordinal)?.map(|t| t.0))
}
