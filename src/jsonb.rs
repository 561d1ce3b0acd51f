//! jsonb built in place from a `serde_json::Value`.
//!
//! pgrx's `JsonB` prints the value and hands the text to `jsonb_in`, which parses it again
//! and sorts every object's keys: at 100 slots that round trip was 40% of `cdc_health()`.
//! Here the value is pushed straight into the server's jsonb builder, keys already in
//! jsonb's order (shorter first, then bytewise) so the builder's sort finds them sorted.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// A jsonb datum built from a `serde_json::Value`; a `jsonb` column or result.
pub struct Jsonb(pub Value);

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

// SAFETY: the datum comes from `into_datum`, a valid jsonb in the current memory context.
unsafe impl pgrx::callconv::BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        let (Value::Object(_) | Value::Array(_)) = &self.0 else {
            // A bare scalar needs jsonb's raw-scalar wrapping; rare enough for the slow path.
            return pgrx::JsonB(self.0).into_datum();
        };
        let mut state: *mut pg_sys::JsonbParseState = std::ptr::null_mut();
        // SAFETY: the builder keeps pointers into `self.0`'s strings; `JsonbValueToJsonb`
        // copies them into the result, and `self.0` lives until after that call.
        unsafe {
            let root = push(&mut state, &self.0);
            Some(pg_sys::Datum::from(pg_sys::JsonbValueToJsonb(root)))
        }
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

/// jsonb's key order: length first, then bytes.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

fn scalar(value: &Value) -> pg_sys::JsonbValue {
    // SAFETY: an all-zero JsonbValue is a valid jbvNull; the union field written matches
    // the type tag set with it.
    let mut out: pg_sys::JsonbValue = unsafe { std::mem::zeroed() };
    match value {
        Value::Null => out.type_ = pg_sys::jbvType::jbvNull,
        Value::Bool(b) => {
            out.type_ = pg_sys::jbvType::jbvBool;
            out.val.boolean = *b;
        }
        Value::Number(n) => {
            out.type_ = pg_sys::jbvType::jbvNumeric;
            out.val.numeric = numeric(n);
        }
        Value::String(s) => string(&mut out, s),
        Value::Array(_) | Value::Object(_) => unreachable!("containers are pushed, not scalars"),
    }
    out
}

fn string(out: &mut pg_sys::JsonbValue, s: &str) {
    out.type_ = pg_sys::jbvType::jbvString;
    out.val.string.len = i32::try_from(s.len()).unwrap_or_else(|_| error!("jsonb string too long"));
    out.val.string.val = s.as_ptr().cast_mut().cast();
}

fn numeric(n: &serde_json::Number) -> pg_sys::Numeric {
    if let Some(i) = n.as_i64() {
        // SAFETY: a plain conversion into a palloc'd numeric.
        return unsafe { pg_sys::int64_to_numeric(i) };
    }
    // Beyond i64, and fractions: from serde_json's text, exactly as jsonb_in reads it.
    let text = std::ffi::CString::new(n.to_string()).expect("a number has no NUL");
    // SAFETY: numeric_in with a valid C string, no type modifier.
    unsafe {
        pgrx::direct_function_call_as_datum(
            pg_sys::numeric_in,
            &[
                text.as_c_str().into_datum(),
                pg_sys::InvalidOid.into_datum(),
                (-1i32).into_datum(),
            ],
        )
        .unwrap_or_else(|| error!("numeric_in returned NULL"))
        .cast_mut_ptr()
    }
}

/// Pushes `value` (a container) and returns the finished container once it is the root.
///
/// # Safety
/// Strings are referenced, not copied: `value` must outlive `JsonbValueToJsonb`.
unsafe fn push(state: &mut *mut pg_sys::JsonbParseState, value: &Value) -> *mut pg_sys::JsonbValue {
    use pg_sys::JsonbIteratorToken::*;
    let null = std::ptr::null_mut();
    match value {
        Value::Object(map) => {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_OBJECT, null);
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| key_order(a.0, b.0));
            for (key, item) in entries {
                let mut k: pg_sys::JsonbValue = std::mem::zeroed();
                string(&mut k, key);
                pg_sys::pushJsonbValue(state, WJB_KEY, &mut k);
                push_item(state, item, WJB_VALUE);
            }
            pg_sys::pushJsonbValue(state, WJB_END_OBJECT, null)
        }
        Value::Array(items) => {
            pg_sys::pushJsonbValue(state, WJB_BEGIN_ARRAY, null);
            for item in items {
                push_item(state, item, WJB_ELEM);
            }
            pg_sys::pushJsonbValue(state, WJB_END_ARRAY, null)
        }
        _ => unreachable!("scalars are pushed by push_item"),
    }
}

/// An object's value or an array's element: nested containers open their own level.
unsafe fn push_item(
    state: &mut *mut pg_sys::JsonbParseState,
    item: &Value,
    token: pg_sys::JsonbIteratorToken::Type,
) {
    match item {
        Value::Object(_) | Value::Array(_) => {
            push(state, item);
        }
        _ => {
            let mut v = scalar(item);
            pg_sys::pushJsonbValue(state, token, &mut v);
        }
    }
}
