//! The file system `pg_wal` lives on, read with one `statvfs` (a symlinked `pg_wal` is
//! followed: the call resolves the path).

use std::ffi::CString;
use std::path::PathBuf;

use cdc_health_rules::audit::Volume;
use pgrx::pg_sys;

/// The path of the data directory's `pg_wal`, as configured (it may be a symlink).
pub fn wal_dir() -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: `DataDir` is set at postmaster start and never changed afterwards.
    let data = unsafe { pg_sys::DataDir };
    if data.is_null() {
        return None;
    }
    // SAFETY: checked for NULL; a NUL-terminated path in the process's own memory. Its bytes
    // are taken as they are: a path need not be text in any encoding.
    let bytes = unsafe { std::ffi::CStr::from_ptr(data) }.to_bytes();
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(bytes)).join("pg_wal"))
}

/// Size and free space of the volume holding `pg_wal`; `None` when it cannot be read.
pub fn wal_volume() -> Option<Volume> {
    let path = CString::new(wal_dir()?.into_os_string().into_encoded_bytes()).ok()?;
    // SAFETY: `statvfs` is plain C data; zeroed is a valid (if meaningless) value of it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and lives across the call; `st` is ours to fill.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let unit = st.f_frsize as i64;
    // As df counts: what is used plus what the server (not root) may still use. Blocks kept
    // for root are neither (on ext4 5 % by default; on this project's CI machine 64 % of
    // the disk), and counting them in the size made a disk with two thirds of the server's
    // space free look three quarters full.
    let used = (st.f_blocks as i64).saturating_sub(st.f_bfree as i64);
    let free = st.f_bavail as i64;
    Some(Volume {
        total_bytes: used.saturating_add(free).saturating_mul(unit),
        free_bytes: free.saturating_mul(unit),
    })
}
