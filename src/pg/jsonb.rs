//! jsonb written directly in its binary format, from a `Json` tree or a `serde_json::Value`.
//!
//! pgrx's `JsonB` prints the value and hands the text to `jsonb_in`, which parses it again
//! and sorts every object's keys: at 100 slots that round trip was 40% of `cdc_health()`.
//! Pushing the value into the server's builder (`pushJsonbValue`) still built a second tree
//! of palloc'd nodes and then serialised it. Here the bytes are laid out as the server's
//! `convertToJsonb` lays them out (containers, JEntries with an offset every 32nd entry,
//! numerics int-aligned), so the result is byte for byte what `jsonb_in` makes of the same
//! document (tested in `pg_tests`).

use cdc_health_rules::json::Json;
use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::Value;

/// A jsonb datum; a `jsonb` column or result.
pub struct Jsonb(pub Json);

impl From<Value> for Jsonb {
    fn from(value: Value) -> Self {
        Jsonb(Json::Value(value))
    }
}

pgrx::impl_sql_translatable!(Jsonb, "jsonb");

// SAFETY: the datum comes from `into_datum`, a valid jsonb in the current memory context.
unsafe impl pgrx::callconv::BoxRet for Jsonb {
    unsafe fn box_into<'fcx>(
        self,
        fcinfo: &mut pgrx::callconv::FcInfo<'fcx>,
    ) -> pgrx::datum::Datum<'fcx> {
        match self.into_datum() {
            // SAFETY: the datum is a jsonb varlena palloc'd in the call's memory context,
            // which is what this function returns.
            Some(datum) => unsafe { fcinfo.return_raw_datum(datum) },
            None => fcinfo.return_null(),
        }
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(encode(Node::Tree(&self.0)))
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// jsonb's layout constants (utils/jsonb.h), stable since 9.4: jsonb is stored on disk.
const JB_CMASK: u32 = 0x0FFF_FFFF;
const JB_FSCALAR: u32 = 0x1000_0000;
const JB_FOBJECT: u32 = 0x2000_0000;
const JB_FARRAY: u32 = 0x4000_0000;
const JENTRY_OFFLENMASK: u32 = 0x0FFF_FFFF;
const JENTRY_TYPEMASK: u32 = 0x7000_0000;
const JENTRY_HAS_OFF: u32 = 0x8000_0000;
const JENTRY_ISSTRING: u32 = 0x0000_0000;
const JENTRY_ISNUMERIC: u32 = 0x1000_0000;
const JENTRY_ISBOOL_FALSE: u32 = 0x2000_0000;
const JENTRY_ISBOOL_TRUE: u32 = 0x3000_0000;
const JENTRY_ISNULL: u32 = 0x4000_0000;
const JENTRY_ISCONTAINER: u32 = 0x5000_0000;
/// Every 32nd JEntry holds the end offset of its child instead of its length.
const JB_OFFSET_STRIDE: usize = 32;
const VARHDRSZ: usize = 4;

/// A node of either tree.
#[derive(Clone, Copy)]
enum Node<'a> {
    Tree(&'a Json),
    Value(&'a Value),
}

/// jsonb's key order: length first, then bytes.
fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.len()
        .cmp(&b.len())
        .then_with(|| a.as_bytes().cmp(b.as_bytes()))
}

/// A container's children: an array's elements, or an object's pairs in jsonb's order
/// (sorted keys; a repeated key keeps its last value, as jsonb_in does).
enum Children<'a> {
    Elements(Vec<Node<'a>>),
    Pairs(Vec<(&'a str, Node<'a>)>),
}

impl<'a> Children<'a> {
    fn pairs(mut pairs: Vec<(&'a str, Node<'a>)>) -> Self {
        pairs.sort_by(|a, b| key_order(a.0, b.0));
        // Stable sort: of equal keys the last given is the last in the run.
        let mut kept = 0;
        for i in 0..pairs.len() {
            if kept > 0 && pairs[kept - 1].0 == pairs[i].0 {
                kept -= 1;
            }
            pairs.swap(kept, i);
            kept += 1;
        }
        pairs.truncate(kept);
        Children::Pairs(pairs)
    }

    /// JEntries in the container: two per pair (keys, then values), one per element.
    fn entries(&self) -> usize {
        match self {
            Children::Elements(items) => items.len(),
            Children::Pairs(pairs) => 2 * pairs.len(),
        }
    }
}

/// A length or count as a JEntry or header field, or an error naming the limit.
fn field(n: usize, what: &str) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= JENTRY_OFFLENMASK)
        .unwrap_or_else(|| {
            super::errors::limit_exceeded(format!(
                "jsonb {what} exceeds the maximum of {JENTRY_OFFLENMASK} bytes"
            ))
        })
}

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Zero padding up to the next 4-byte boundary of the whole datum.
    fn pad(&mut self) {
        let len = self.buf.len().next_multiple_of(4);
        self.buf.resize(len, 0);
    }

    fn string(&mut self, s: &str) -> u32 {
        self.buf.extend_from_slice(s.as_bytes());
        JENTRY_ISSTRING | field(s.len(), "string")
    }

    /// Copies a palloc'd numeric in (int-aligned, the padding counted in its length).
    fn numeric(&mut self, numeric: pg_sys::Numeric) -> u32 {
        let start = self.buf.len();
        self.pad();
        // SAFETY: `numeric` is a valid varlena just made by the server; freed after copying.
        unsafe {
            let ptr = numeric.cast::<pg_sys::varlena>();
            let len = pgrx::varlena::varsize_any(ptr);
            self.buf
                .extend_from_slice(std::slice::from_raw_parts(ptr.cast::<u8>(), len));
            pg_sys::pfree(numeric.cast());
        }
        JENTRY_ISNUMERIC | field(self.buf.len() - start, "numeric")
    }

    /// An integer as the numeric `int64_to_numeric` makes: the short format (dscale 0,
    /// weight 0-4), base-10000 digits with trailing zero digits dropped.
    fn int(&mut self, i: i64) -> u32 {
        const NUMERIC_SHORT: u16 = 0x8000;
        const NUMERIC_SHORT_SIGN_MASK: u16 = 0x2000;
        let start = self.buf.len();
        self.pad();
        // Least significant first; the most significant one's place is the weight.
        let mut digits = [0u16; 5];
        let mut n = i.unsigned_abs();
        let mut count = 0;
        while n > 0 {
            digits[count] = (n % 10_000) as u16;
            n /= 10_000;
            count += 1;
        }
        let weight = count.saturating_sub(1) as u16;
        let trailing = digits[..count].iter().take_while(|d| **d == 0).count();
        let sign = if i < 0 { NUMERIC_SHORT_SIGN_MASK } else { 0 };
        let header = NUMERIC_SHORT | sign | weight;
        let len = VARHDRSZ + 2 + 2 * (count - trailing);
        let at = self.buf.len();
        self.buf.resize(at + len, 0);
        // SAFETY: writes a 4-byte varlena header into the `len` bytes just reserved.
        unsafe { pgrx::varlena::set_varsize_4b(self.buf[at..].as_mut_ptr().cast(), len as i32) };
        let mut put = at + VARHDRSZ;
        for half in std::iter::once(header).chain(digits[trailing..count].iter().rev().copied()) {
            self.buf[put..][..2].copy_from_slice(&half.to_ne_bytes());
            put += 2;
        }
        JENTRY_ISNUMERIC | field(self.buf.len() - start, "numeric")
    }

    /// Beyond i64, and fractions: from serde_json's text, exactly as jsonb_in reads it.
    fn number(&mut self, n: &serde_json::Number) -> u32 {
        if let Some(i) = n.as_i64() {
            return self.int(i);
        }
        let text = std::ffi::CString::new(n.to_string()).expect("a number has no NUL");
        // SAFETY: numeric_in with a valid C string, no type modifier.
        let numeric = unsafe {
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
        };
        self.numeric(numeric)
    }

    /// Writes one value and returns its JEntry (type and length).
    fn node(&mut self, node: Node<'_>) -> u32 {
        match node {
            Node::Tree(json) => match json {
                Json::Null => JENTRY_ISNULL,
                Json::Bool(b) => bool_entry(*b),
                Json::Int(i) => self.int(*i),
                Json::Str(s) => self.string(s),
                Json::Array(items) => self.array(items.iter().map(Node::Tree).collect(), 0),
                Json::Object(entries) => {
                    self.object(entries.iter().map(|(k, v)| (*k, Node::Tree(v))).collect())
                }
                Json::Value(value) => self.node(Node::Value(value)),
            },
            Node::Value(value) => match value {
                Value::Null => JENTRY_ISNULL,
                Value::Bool(b) => bool_entry(*b),
                Value::Number(n) => self.number(n),
                Value::String(s) => self.string(s),
                Value::Array(items) => self.array(items.iter().map(Node::Value).collect(), 0),
                Value::Object(map) => self.object(
                    map.iter()
                        .map(|(k, v)| (k.as_str(), Node::Value(v)))
                        .collect(),
                ),
            },
        }
    }

    fn array(&mut self, items: Vec<Node<'_>>, flags: u32) -> u32 {
        let header = JB_FARRAY | flags | count(items.len());
        self.container(header, Children::Elements(items))
    }

    fn object(&mut self, pairs: Vec<(&str, Node<'_>)>) -> u32 {
        let children = Children::pairs(pairs);
        self.container(JB_FOBJECT | count(children.entries() / 2), children)
    }

    /// A container: header, a JEntry per child, then the children's data.
    fn container(&mut self, header: u32, children: Children<'_>) -> u32 {
        let start = self.buf.len();
        self.pad();
        self.buf.extend_from_slice(&header.to_ne_bytes());
        let entries_at = self.buf.len();
        let entries = children.entries();
        self.buf.resize(entries_at + 4 * entries, 0);
        let mut end = 0usize;
        for i in 0..entries {
            let entry = match &children {
                Children::Elements(items) => self.node(items[i]),
                Children::Pairs(pairs) if i < pairs.len() => self.string(pairs[i].0),
                Children::Pairs(pairs) => self.node(pairs[i - pairs.len()].1),
            };
            end += (entry & JENTRY_OFFLENMASK) as usize;
            let entry = if i % JB_OFFSET_STRIDE == 0 {
                (entry & JENTRY_TYPEMASK) | field(end, "container") | JENTRY_HAS_OFF
            } else {
                entry
            };
            self.buf[entries_at + 4 * i..][..4].copy_from_slice(&entry.to_ne_bytes());
        }
        JENTRY_ISCONTAINER | field(self.buf.len() - start, "container")
    }
}

fn bool_entry(b: bool) -> u32 {
    if b {
        JENTRY_ISBOOL_TRUE
    } else {
        JENTRY_ISBOOL_FALSE
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= JB_CMASK)
        .unwrap_or_else(|| {
            super::errors::limit_exceeded(format!(
                "jsonb container has more than {JB_CMASK} elements"
            ))
        })
}

fn is_container(node: Node<'_>) -> bool {
    match node {
        Node::Tree(Json::Array(_) | Json::Object(_)) => true,
        Node::Tree(Json::Value(v)) | Node::Value(v) => {
            matches!(v, Value::Array(_) | Value::Object(_))
        }
        Node::Tree(_) => false,
    }
}

/// The whole datum, palloc'd in the current memory context.
fn encode(root: Node<'_>) -> pg_sys::Datum {
    let mut w = Writer {
        buf: Vec::with_capacity(512),
    };
    w.buf.resize(VARHDRSZ, 0);
    if is_container(root) {
        w.node(root);
    } else {
        // A bare scalar is a one-element array marked as a scalar.
        w.array(vec![root], JB_FSCALAR);
    }
    let len = i32::try_from(w.buf.len())
        .ok()
        .filter(|l| *l <= 0x3FFF_FFFF)
        .unwrap_or_else(|| super::errors::limit_exceeded("jsonb document too large".into()));
    // SAFETY: a palloc'd buffer of exactly the datum's size, filled and given its header.
    unsafe {
        let out = pg_sys::palloc(w.buf.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(w.buf.as_ptr(), out, w.buf.len());
        pgrx::varlena::set_varsize_4b(out.cast(), len);
        pg_sys::Datum::from(out)
    }
}
