//! The planner's and executor's side of the wrapper: a plain foreign scan whose rows stream
//! from ClickHouse. Filters and aggregates run in PostgreSQL; to run them in ClickHouse,
//! declare the table with the `query` option.

use std::ffi::{CStr, CString};

use cdc_health_rules::clickhouse::{pg_text, RowReader, Target};
use pgrx::pg_sys;
use pgrx::prelude::*;
#[cfg(not(any(feature = "pg16", feature = "pg17", feature = "pg18")))]
use pgrx::PgList;
use pgrx::{PgMemoryContexts, PgTryBuilder};

use super::{fail, http, options_of, Remote};

/// Planner row estimates: a query is usually an aggregate, a table is "many".
const QUERY_ROWS: f64 = 1.0;
const TABLE_ROWS: f64 = 1000.0;
/// A round trip to ClickHouse is expensive next to a local page.
const STARTUP_COST: f64 = 100.0;
const ROW_COST: f64 = 0.01;

#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_cdc_health_clickhouse_handler() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn cdc_health_clickhouse_handler(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: allocates a zeroed node of the FdwRoutine tag in the current memory context,
    // as a wrapper's handler must; it is filled in and returned to the planner.
    let mut routine =
        unsafe { PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine) };
    routine.GetForeignRelSize = Some(get_rel_size);
    routine.GetForeignPaths = Some(get_paths);
    routine.GetForeignPlan = Some(get_plan);
    routine.BeginForeignScan = Some(begin_scan);
    routine.IterateForeignScan = Some(iterate_scan);
    routine.ReScanForeignScan = Some(rescan);
    routine.EndForeignScan = Some(end_scan);
    routine.ExplainForeignScan = Some(explain_scan);
    pg_sys::Datum::from(routine.into_pg())
}

#[pg_guard]
unsafe extern "C-unwind" fn get_rel_size(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    relid: pg_sys::Oid,
) {
    let options = options_of((*pg_sys::GetForeignTable(relid)).options);
    let given = options
        .iter()
        .find(|(n, _)| n == "rows")
        .and_then(|(_, v)| v.trim().parse::<f64>().ok());
    let query = options.iter().any(|(n, _)| n == "query");
    (*baserel).rows = given.unwrap_or(if query { QUERY_ROWS } else { TABLE_ROWS });
}

#[pg_guard]
unsafe extern "C-unwind" fn get_paths(
    root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
) {
    let rows = (*baserel).rows;
    let total = STARTUP_COST + rows * ROW_COST;
    #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15", feature = "pg16"))]
    let path = pg_sys::create_foreignscan_path(
        root,
        baserel,
        std::ptr::null_mut(),
        rows,
        STARTUP_COST,
        total,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    #[cfg(feature = "pg17")]
    let path = pg_sys::create_foreignscan_path(
        root,
        baserel,
        std::ptr::null_mut(),
        rows,
        STARTUP_COST,
        total,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    #[cfg(feature = "pg18")]
    let path = pg_sys::create_foreignscan_path(
        root,
        baserel,
        std::ptr::null_mut(),
        rows,
        0,
        STARTUP_COST,
        total,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
    );
    pg_sys::add_path(baserel, path as *mut pg_sys::Path);
}

#[pg_guard]
unsafe extern "C-unwind" fn get_plan(
    _root: *mut pg_sys::PlannerInfo,
    baserel: *mut pg_sys::RelOptInfo,
    _relid: pg_sys::Oid,
    _best_path: *mut pg_sys::ForeignPath,
    tlist: *mut pg_sys::List,
    scan_clauses: *mut pg_sys::List,
    outer_plan: *mut pg_sys::Plan,
) -> *mut pg_sys::ForeignScan {
    // Every condition is checked locally.
    let quals = pg_sys::extract_actual_clauses(scan_clauses, false);
    pg_sys::make_foreignscan(
        tlist,
        quals,
        (*baserel).relid,
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        std::ptr::null_mut(),
        outer_plan,
    )
}

/// How one attribute's text becomes a Datum.
struct Input {
    function: pg_sys::FmgrInfo,
    ioparam: pg_sys::Oid,
    typmod: i32,
    target: Target,
    column: String,
    type_name: String,
}

/// A running scan; owned by the executor's memory context, so an error that ends the query
/// still drops it (and with it the HTTP request).
struct Scan {
    relid: pg_sys::Oid,
    remote: Remote,
    sql: String,
    /// Attribute indexes (attnum - 1) the plan reads.
    needed: Vec<usize>,
    inputs: Vec<Option<Input>>,
    stream: Option<http::Stream>,
    reader: RowReader,
    ended: bool,
    /// Per needed attribute: its position in ClickHouse's answer and ClickHouse type.
    mapping: Option<Vec<(usize, String)>>,
}

/// Attribute indexes (attnum - 1) the plan reads; all of them for a whole-row reference.
unsafe fn needed_attributes(plan: *mut pg_sys::Plan, scanrelid: u32, natts: usize) -> Vec<usize> {
    match crate::pg::projection::plan_attributes(plan, scanrelid) {
        Some(attnos) => attnos.into_iter().map(|attno| attno - 1).collect(),
        None => (0..natts).collect(),
    }
}

/// The role whose user mapping the scan uses: the view owner's for a view, else ours.
unsafe fn scan_user(node: *mut pg_sys::ForeignScanState, scanrelid: u32) -> pg_sys::Oid {
    #[cfg(any(feature = "pg16", feature = "pg17", feature = "pg18"))]
    let user = {
        let _ = scanrelid;
        (*((*node).ss.ps.plan as *mut pg_sys::ForeignScan)).checkAsUser
    };
    #[cfg(not(any(feature = "pg16", feature = "pg17", feature = "pg18")))]
    let user = {
        let estate = (*node).ss.ps.state;
        let table = PgList::<pg_sys::RangeTblEntry>::from_pg((*estate).es_range_table);
        table
            .get_ptr(scanrelid as usize - 1)
            .map_or(pg_sys::InvalidOid, |rte| (*rte).checkAsUser)
    };
    if user == pg_sys::InvalidOid {
        pg_sys::GetUserId()
    } else {
        user
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn begin_scan(node: *mut pg_sys::ForeignScanState, eflags: i32) {
    let rel = (*node).ss.ss_currentRelation;
    let relid = (*rel).rd_id;
    let desc = (*rel).rd_att;
    let natts = (*desc).natts as usize;
    let plan = (*node).ss.ps.plan;
    let scanrelid = (*(plan as *mut pg_sys::ForeignScan)).scan.scanrelid;
    let remote = Remote::of(relid, scan_user(node, scanrelid));
    let needed = needed_attributes(plan, scanrelid, natts);
    let names: Vec<&str> = needed
        .iter()
        .filter_map(|&i| remote.columns[i].as_deref())
        .collect();
    let sql = remote.source.scan_sql(&names);
    let mut inputs: Vec<Option<Input>> = (0..natts).map(|_| None).collect();
    for &i in &needed {
        let attr = super::attribute(desc, i);
        let (mut function_oid, mut ioparam) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
        pg_sys::getTypeInputInfo((*attr).atttypid, &mut function_oid, &mut ioparam);
        let mut function = pg_sys::FmgrInfo::default();
        pg_sys::fmgr_info(function_oid, &mut function);
        inputs[i] = Some(Input {
            function,
            ioparam,
            typmod: (*attr).atttypmod,
            target: if (*attr).atttypid == pg_sys::TIMESTAMPTZOID {
                Target::TimestampTz
            } else {
                Target::Other
            },
            column: CStr::from_ptr((*attr).attname.data.as_ptr())
                .to_string_lossy()
                .into_owned(),
            type_name: CStr::from_ptr(pg_sys::format_type_be((*attr).atttypid))
                .to_string_lossy()
                .into_owned(),
        });
    }
    let explain_only = eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0;
    let stream =
        (!explain_only).then(|| http::start(&remote.server, &remote.credentials, sql.clone()));
    let scan = Scan {
        relid,
        remote,
        sql,
        needed,
        inputs,
        stream,
        reader: super::new_reader(),
        ended: false,
        mapping: None,
    };
    (*node).fdw_state =
        PgMemoryContexts::CurrentMemoryContext.leak_and_drop_on_delete(scan) as *mut _;
}

impl Scan {
    /// Where each needed column is in the answer; an error names a missing one.
    fn map_columns(&mut self) {
        let names = self.reader.names().unwrap_or_default();
        let types = self.reader.types().unwrap_or_default();
        let mut mapping = Vec::with_capacity(self.needed.len());
        for &i in &self.needed {
            let want = self.remote.columns[i].as_deref().unwrap_or_default();
            match names.iter().position(|n| n == want) {
                Some(p) => mapping.push((p, types.get(p).cloned().unwrap_or_default())),
                None => fail(
                    self.relid,
                    format!(
                        "ClickHouse's answer has no column \"{want}\" (it has: {}); \
                         rename the column or set its column_name option",
                        names.join(", ")
                    ),
                ),
            }
        }
        self.mapping = Some(mapping);
    }

    /// Reads until a row is ready; false at the end.
    fn advance(&mut self) -> bool {
        loop {
            match self.reader.read_header() {
                Err(e) => fail(self.relid, e),
                Ok(true) if self.mapping.is_none() => self.map_columns(),
                _ => {}
            }
            if self.mapping.is_some() {
                // Peek: a complete line is buffered iff next_row yields it.
                match self.reader.next_row() {
                    Err(e) => fail(self.relid, e),
                    Ok(Some(_)) => return true,
                    Ok(None) if self.ended => return false,
                    Ok(None) => {}
                }
            } else if self.ended {
                return false;
            }
            let stream = self.stream.as_mut().expect("a started scan");
            match stream.feed(&mut self.reader) {
                Ok(true) => {}
                Ok(false) => self.ended = true,
                Err(e) => fail(self.relid, e),
            }
        }
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn iterate_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    let scan = &mut *((*node).fdw_state as *mut Scan);
    let slot = (*node).ss.ss_ScanTupleSlot;
    pg_sys::ExecClearTuple(slot);
    if !scan.advance() {
        return slot;
    }
    let natts = scan.inputs.len();
    let values = std::slice::from_raw_parts_mut((*slot).tts_values, natts);
    let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, natts);
    nulls.fill(true);
    let row = scan.reader.current_row();
    let mapping = scan.mapping.as_ref().expect("mapped");
    for (k, &i) in scan.needed.iter().enumerate() {
        let (position, ch_type) = &mapping[k];
        let input = scan.inputs[i].as_mut().expect("an input per needed column");
        let Some(text) = row[*position]
            .clone()
            .and_then(|v| pg_text(ch_type, v, input.target, &scan.remote.server.timezone))
        else {
            continue;
        };
        values[i] = convert(scan.relid, input, text);
        nulls[i] = false;
    }
    pg_sys::ExecStoreVirtualTuple(slot);
    slot
}

/// Runs the column type's input function; an error names the column and the value.
unsafe fn convert(relid: pg_sys::Oid, input: &mut Input, text: String) -> pg_sys::Datum {
    let shown: String = text.chars().take(100).collect();
    super::refuse_nul(relid, &format!("column \"{}\"", input.column), &text);
    let Ok(cstring) = CString::new(text) else {
        unreachable!("refuse_nul returned for a value with a NUL byte")
    };
    let function = &mut input.function as *mut pg_sys::FmgrInfo;
    let (ioparam, typmod) = (input.ioparam, input.typmod);
    let converted = PgTryBuilder::new(|| {
        Ok(pg_sys::InputFunctionCall(
            function,
            cstring.as_ptr() as *mut _,
            ioparam,
            typmod,
        ))
    })
    .catch_others(|e| Err(crate::pg::transaction::caught_message(e)))
    .execute();
    converted.unwrap_or_else(|why| {
        fail(
            relid,
            format!(
                "column \"{}\": ClickHouse value '{shown}' does not fit type {}: {why}",
                input.column, input.type_name
            ),
        )
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn rescan(node: *mut pg_sys::ForeignScanState) {
    let scan = &mut *((*node).fdw_state as *mut Scan);
    scan.stream = Some(http::start(
        &scan.remote.server,
        &scan.remote.credentials,
        scan.sql.clone(),
    ));
    scan.reader = super::new_reader();
    scan.ended = false;
    scan.mapping = None;
}

#[pg_guard]
unsafe extern "C-unwind" fn end_scan(node: *mut pg_sys::ForeignScanState) {
    let scan = (*node).fdw_state as *mut Scan;
    if !scan.is_null() {
        // Ends the request now; the Scan itself goes with the executor's memory.
        (*scan).stream = None;
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn explain_scan(
    node: *mut pg_sys::ForeignScanState,
    es: *mut pg_sys::ExplainState,
) {
    let scan = &*((*node).fdw_state as *mut Scan);
    let sql = CString::new(scan.sql.replace('\n', " ")).unwrap_or_default();
    pg_sys::ExplainPropertyText(c"ClickHouse query".as_ptr(), sql.as_ptr(), es);
}
