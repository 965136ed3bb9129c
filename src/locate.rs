//! Finding our own installed pieces: libdmtcp.so, the restart loader and the sibling commands.
//!
//! Layout: the commands in `<prefix>/bin`, libraries in `<prefix>/lib/dmtcp` (and `lib/dmtcp/32`
//! for 32-bit). A cargo build keeps them all in `target/<profile>`; both layouts are searched.

use std::path::{Path, PathBuf};

/// Directory holding the running command.
pub fn exe_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("."))
}

/// Find `name` beside the running command, then in ../lib/dmtcp.
pub fn find_sibling(name: &str) -> Option<PathBuf> {
    let dir = exe_dir();
    let candidates = [dir.join(name), dir.join("../lib/dmtcp").join(name)];
    candidates.into_iter().find(|p| p.exists())
}

/// libdmtcp.so for the program about to run. (32-bit programs get lib/dmtcp/32 once the
/// multi-arch layout lands; today the library of this build's own CPU.)
pub fn preload_library_for(_program: &str) -> Result<PathBuf, String> {
    find_sibling("libdmtcp.so").ok_or_else(|| format!("libdmtcp.so not found beside {} or in ../lib/dmtcp", exe_dir().display()))
}

/// The static restart loader.
pub fn restart_loader() -> Result<PathBuf, String> {
    find_sibling("mtcp_restart").ok_or_else(|| format!("mtcp_restart not found beside {} or in ../lib/dmtcp", exe_dir().display()))
}
