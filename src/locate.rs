//! Finding our own installed pieces: libdmtcp.so, the restart loader and the sibling commands.
//!
//! Layout: the commands in `<prefix>/bin`, libraries in `<prefix>/lib/dmtcp` (and `lib/dmtcp/32`
//! for 32-bit). A cargo build keeps them all in `target/<profile>`; both layouts are searched.

use std::path::{Path, PathBuf};

/// Directory holding the running command.
pub fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Find `name` beside the running command, then in ../lib/dmtcp.
pub fn find_sibling(name: &str) -> Option<PathBuf> {
    let dir = exe_dir();
    let candidates = [dir.join(name), dir.join("../lib/dmtcp").join(name)];
    candidates.into_iter().find(|p| p.exists())
}
