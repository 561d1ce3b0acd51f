//! The `cdc_health_clickhouse` foreign data wrapper: read-only ClickHouse tables and queries
//! over HTTP(S).
//!
//! `http` moves bytes and `fdw` is the planner's and executor's side; options, SQL text and
//! the wire format are decided in `cdc_health_rules::clickhouse`.

mod error;
mod fdw;
mod http;

use std::ffi::CStr;

use cdc_health_rules::clickhouse::{validate, OptionPlace, RowReader, Server, Source};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgList;

use crate::pg::errors::{OrRaise, SqlError};
pub use error::Error;

pub use http::Credentials;

/// An option list (`DefElem`s) as name/value pairs.
unsafe fn options_of(list: *mut pg_sys::List) -> Vec<(String, String)> {
    let list = PgList::<pg_sys::DefElem>::from_pg(list);
    list.iter_ptr()
        .map(|def| {
            let name = CStr::from_ptr((*def).defname)
                .to_string_lossy()
                .into_owned();
            let value = CStr::from_ptr(pg_sys::defGetString(def))
                .to_string_lossy()
                .into_owned();
            (name, value)
        })
        .collect()
}

/// Everything needed to query one foreign table, for one user.
pub struct Remote {
    pub server: Server,
    pub credentials: Credentials,
    pub source: Source,
    /// Per attribute (index = attnum - 1): the ClickHouse column name, `None` if dropped.
    pub columns: Vec<Option<String>>,
}

/// A relation's name for messages.
pub fn relation_name(relid: pg_sys::Oid) -> String {
    // SAFETY: a syscache lookup that returns NULL for an unknown relation, checked.
    unsafe {
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            relid.to_u32().to_string()
        } else {
            format!("\"{}\"", CStr::from_ptr(name).to_string_lossy())
        }
    }
}

/// Attribute `i` of a tuple descriptor (18 keeps them behind `TupleDescAttr()`).
///
/// # Safety
/// `desc` is a valid tuple descriptor with more than `i` attributes.
pub unsafe fn attribute(desc: pg_sys::TupleDesc, i: usize) -> *const pg_sys::FormData_pg_attribute {
    #[cfg(feature = "pg18")]
    {
        pg_sys::TupleDescAttr(desc, i as i32)
    }
    #[cfg(not(feature = "pg18"))]
    {
        (*desc).attrs.as_ptr().add(i)
    }
}

/// A reader of ClickHouse's answer, its lines capped by `cdc_health.clickhouse_max_line`.
pub fn new_reader() -> RowReader {
    RowReader::new(crate::settings::clickhouse_max_line_bytes())
}

fn fail(relid: pg_sys::Oid, why: String) -> ! {
    Error::Remote {
        table: relation_name(relid),
        why,
    }
    .raise()
}

/// PostgreSQL's text cannot hold a NUL byte (its input refuses one with 22021); ClickHouse's
/// String can. Such a value is refused by name rather than cut or passed on with it inside.
fn refuse_nul(relid: pg_sys::Oid, what: &str, value: &str) {
    if value.contains('\0') {
        Error::NulByte {
            table: relation_name(relid),
            what: what.into(),
        }
        .raise()
    }
}

impl Remote {
    /// Reads the table's, server's and `user`'s mapping options. Errors name the object.
    pub fn of(relid: pg_sys::Oid, user: pg_sys::Oid) -> Self {
        // SAFETY: catalog lookups that raise an error (never return NULL) for a relation that
        // is not a foreign table, a missing server or a missing user mapping.
        unsafe {
            let table = pg_sys::GetForeignTable(relid);
            let server = pg_sys::GetForeignServer((*table).serverid);
            let mapping = pg_sys::GetUserMapping(user, (*table).serverid);
            let server_name = CStr::from_ptr((*server).servername).to_string_lossy();
            let server_options = Server::from_options(&options_of((*server).options))
                .unwrap_or_else(|e| {
                    Error::BadOption(format!("server \"{server_name}\": {e}")).raise()
                });
            let mut credentials = Credentials::default();
            for (name, value) in options_of((*mapping).options) {
                match name.as_str() {
                    "user" => credentials.user = Some(value),
                    "password" => credentials.password = Some(value),
                    _ => {}
                }
            }
            let source = Source::from_options(&options_of((*table).options))
                .unwrap_or_else(|e| fail(relid, e));
            let rel = pg_sys::RelationIdGetRelation(relid);
            let desc = (*rel).rd_att;
            let mut columns = Vec::new();
            for i in 0..(*desc).natts as usize {
                let attr = attribute(desc, i);
                if (*attr).attisdropped {
                    columns.push(None);
                    continue;
                }
                let renamed = options_of(pg_sys::GetForeignColumnOptions(relid, (*attr).attnum))
                    .into_iter()
                    .find(|(n, _)| n == "column_name")
                    .map(|(_, v)| v);
                columns.push(Some(renamed.unwrap_or_else(|| {
                    CStr::from_ptr((*attr).attname.data.as_ptr())
                        .to_string_lossy()
                        .into_owned()
                })));
            }
            pg_sys::RelationClose(rel);
            Self {
                server: server_options,
                credentials,
                source,
                columns,
            }
        }
    }

    /// The ClickHouse name of a PostgreSQL column of this table.
    pub fn remote_column(&self, relid: pg_sys::Oid, pg_column: &str) -> String {
        // SAFETY: a syscache lookup by name; an unknown column gives InvalidAttrNumber.
        let attnum = unsafe {
            pg_sys::get_attnum(relid, std::ffi::CString::new(pg_column).unwrap().as_ptr())
        };
        match usize::try_from(attnum)
            .ok()
            .and_then(|a| self.columns.get(a.checked_sub(1)?))
        {
            Some(Some(name)) => name.clone(),
            _ => fail(relid, format!("has no column \"{pg_column}\"")),
        }
    }
}

/// True if `relid` is a foreign table of this wrapper.
pub fn is_clickhouse_table(relid: pg_sys::Oid) -> bool {
    crate::pg::spi::read_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_foreign_table t
             JOIN pg_catalog.pg_foreign_server s ON s.oid = t.ftserver
             JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid = s.srvfdw
         WHERE t.ftrelid = $1 AND w.fdwname = 'cdc_health_clickhouse')",
        &[relid.into()],
    )
    // A failed lookup is an error, not "some other kind of table".
    .or_raise(|e| Error::Internal("looking up a foreign table", e))
    .unwrap_or(false)
}

/// Runs `SELECT <select_list> FROM <the table's source>` inside ClickHouse, as the current
/// user, and returns its single row as text (`None` for NULL). This is how probes aggregate
/// where the data is instead of pulling rows over the network.
pub fn aggregate(relid: pg_sys::Oid, select_list: &str) -> (Vec<Option<String>>, u64) {
    let remote = Remote::of(relid, crate::pg::backend::current_user());
    let sql = format!(
        "SELECT {select_list} FROM {}\nFORMAT {}",
        remote.source.from_item(),
        cdc_health_rules::clickhouse::WIRE_FORMAT
    );
    let mut stream = http::start(&remote.server, &remote.credentials, sql);
    let mut reader = new_reader();
    let mut first = None;
    loop {
        match stream.feed(&mut reader) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => fail(relid, e),
        }
        if first.is_none() {
            first = reader
                .next_row()
                .unwrap_or_else(|e| fail(relid, e))
                .map(|r| r.to_vec());
        }
    }
    if first.is_none() {
        first = reader
            .next_row()
            .unwrap_or_else(|e| fail(relid, e))
            .map(|r| r.to_vec());
    }
    let row = first.unwrap_or_else(|| fail(relid, "the aggregate returned no row".into()));
    for value in row.iter().flatten() {
        refuse_nul(relid, "an aggregate of the mirror check", value);
    }
    (row, stream.bytes_received)
}

#[pg_schema]
mod cdc_health {
    use super::*;

    /// Validates the options of the wrapper, its servers, user mappings, tables and columns.
    #[pg_extern]
    fn clickhouse_validator(options: Vec<Option<String>>, catalog: pg_sys::Oid) {
        let place = match catalog {
            pg_sys::ForeignDataWrapperRelationId => OptionPlace::Wrapper,
            pg_sys::ForeignServerRelationId => OptionPlace::Server,
            pg_sys::UserMappingRelationId => OptionPlace::UserMapping,
            pg_sys::ForeignTableRelationId => OptionPlace::ForeignTable,
            pg_sys::AttributeRelationId => OptionPlace::Column,
            _ => return,
        };
        let pairs: Vec<(String, String)> = options
            .into_iter()
            .flatten()
            .map(|o| match o.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => (o, String::new()),
            })
            .collect();
        if let Err(e) = validate(place, &pairs) {
            Error::BadOption(e).raise();
        }
    }
}
