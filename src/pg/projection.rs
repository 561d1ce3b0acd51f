//! Which output columns of a set-returning function the running query reads, so that a
//! function can leave out the costly columns nobody selected (`cdc_health()`'s `detail` is
//! most of its time).
//!
//! A function in FROM runs under a FunctionScan whose target list and quals name the columns
//! the rest of the plan uses. The executor hands the function its plan expression as
//! `flinfo->fn_expr`, the very node in the scan's `functions` list, so the scan is found by
//! pointer. Anything unusual (called in a target list, a whole-row reference, several
//! functions in one ROWS FROM) answers "every column": leaving a column out is only ever an
//! optimisation.

use pgrx::pg_sys;
use pgrx::PgList;

/// The columns a call's plan reads.
#[derive(Clone, Copy, Debug)]
pub struct Columns {
    /// Bit `n` set: 1-based attribute `n` is read. `None`: all are.
    read: Option<u128>,
}

impl Columns {
    pub const ALL: Columns = Columns { read: None };

    /// Whether the 1-based attribute `attno` may be read.
    pub fn reads(&self, attno: usize) -> bool {
        match self.read {
            None => true,
            Some(bits) => attno >= 128 || bits & (1u128 << attno) != 0,
        }
    }

    /// The columns read by the FunctionScan that runs this call.
    ///
    /// # Safety
    /// `fcinfo` is the running call's, during the call.
    pub unsafe fn of_call(fcinfo: pg_sys::FunctionCallInfo) -> Columns {
        // SAFETY: the caller's promise, passed on.
        unsafe { read_columns(fcinfo) }
            .map(|read| Columns { read: Some(read) })
            .unwrap_or(Columns::ALL)
    }
}

/// # Safety
/// As `Columns::of_call`.
unsafe fn read_columns(fcinfo: pg_sys::FunctionCallInfo) -> Option<u128> {
    // SAFETY: every pointer is checked for NULL before it is followed; during the call the
    // executor state, its planned statement and the plan nodes outlive this function, and
    // node tags are checked before a node is read as its subtype.
    unsafe {
        let fcinfo = fcinfo.as_ref()?;
        let expr = fcinfo.flinfo.as_ref()?.fn_expr;
        let rsinfo = (fcinfo.resultinfo as *const pg_sys::ReturnSetInfo).as_ref()?;
        if expr.is_null() || rsinfo.type_ != pg_sys::NodeTag::T_ReturnSetInfo {
            return None;
        }
        let estate = rsinfo.econtext.as_ref()?.ecxt_estate.as_ref()?;
        let stmt = estate.es_plannedstmt.as_ref()?;
        let mut plans = vec![stmt.planTree];
        plans.extend(PgList::<pg_sys::Plan>::from_pg(stmt.subplans).iter_ptr());
        while let Some(plan) = plans.pop() {
            let Some(node) = plan.as_ref() else { continue };
            if node.type_ == pg_sys::NodeTag::T_FunctionScan {
                let scan = &*(plan as *const pg_sys::FunctionScan);
                let functions = PgList::<pg_sys::RangeTblFunction>::from_pg(scan.functions);
                let runs_this_call = functions
                    .iter_ptr()
                    .any(|f| f.as_ref().is_some_and(|f| f.funcexpr == expr));
                if runs_this_call {
                    return (functions.len() == 1).then(|| referenced(scan)).flatten();
                }
            }
            plans.push(node.lefttree);
            plans.push(node.righttree);
            plans.extend(children(plan));
        }
        None
    }
}

/// The plans a node holds besides its left and right trees.
///
/// # Safety
/// `plan` is a valid plan node.
unsafe fn children(plan: *mut pg_sys::Plan) -> Vec<*mut pg_sys::Plan> {
    // SAFETY: the node is read as the subtype its tag names.
    unsafe {
        let list = match (*plan).type_ {
            pg_sys::NodeTag::T_Append => (*(plan as *mut pg_sys::Append)).appendplans,
            pg_sys::NodeTag::T_MergeAppend => (*(plan as *mut pg_sys::MergeAppend)).mergeplans,
            pg_sys::NodeTag::T_BitmapAnd => (*(plan as *mut pg_sys::BitmapAnd)).bitmapplans,
            pg_sys::NodeTag::T_BitmapOr => (*(plan as *mut pg_sys::BitmapOr)).bitmapplans,
            pg_sys::NodeTag::T_CustomScan => (*(plan as *mut pg_sys::CustomScan)).custom_plans,
            pg_sys::NodeTag::T_SubqueryScan => {
                return vec![(*(plan as *mut pg_sys::SubqueryScan)).subplan];
            }
            _ => return Vec::new(),
        };
        PgList::<pg_sys::Plan>::from_pg(list).iter_ptr().collect()
    }
}

/// The attributes of the scan's own relation that its target list and quals use; `None` for a
/// whole-row reference (or too many columns for the bit set).
unsafe fn referenced(scan: &pg_sys::FunctionScan) -> Option<u128> {
    // SAFETY: a FunctionScan's embedded plan node is a valid plan node.
    let attnos = unsafe { plan_attributes(&scan.scan.plan, scan.scan.scanrelid) }?;
    attnos.into_iter().try_fold(0u128, |read, attno| {
        (attno < 128).then(|| read | 1u128 << attno)
    })
}

/// The 1-based attributes of relation `scanrelid` that a plan node's target list and quals
/// use, ascending; `None` when they use the whole row. What a scan must produce: the
/// ClickHouse wrapper asks the server for these columns only.
///
/// # Safety
/// `plan` is a valid plan node.
pub unsafe fn plan_attributes(plan: *const pg_sys::Plan, scanrelid: u32) -> Option<Vec<usize>> {
    // SAFETY: the caller's valid plan; the bitmapset is built and freed here.
    unsafe {
        let mut set: *mut pg_sys::Bitmapset = std::ptr::null_mut();
        pg_sys::pull_varattnos((*plan).targetlist.cast(), scanrelid, &mut set);
        pg_sys::pull_varattnos((*plan).qual.cast(), scanrelid, &mut set);
        let mut attnos = Vec::new();
        let mut whole_row = false;
        let mut member = -1;
        loop {
            member = pg_sys::bms_next_member(set, member);
            if member < 0 {
                break;
            }
            // System columns (negative) are not the function's or the table's own.
            match member + pg_sys::FirstLowInvalidHeapAttributeNumber {
                0 => whole_row = true,
                attno if attno > 0 => attnos.push(attno as usize),
                _ => {}
            }
        }
        pg_sys::bms_free(set);
        (!whole_row).then_some(attnos)
    }
}
