//! Open files whose contents the image needs, saved beside it in `<image name without
//! .dmtcp>_files/`:
//! - always, the files no name reaches any more: deleted files (the tmpfile() idiom) and memfds,
//!   once per inode as `ino-<inode>`; dmtcp_restart makes them again (src/unlinked.rs);
//! - with dmtcp_launch --ckpt-open-files, every other regular file, as `<fd>`, as DMTCP does.
//!   dmtcp_restart puts a saved copy back where its file is missing, or over it when the launch
//!   also had --allow-file-overwrite (the directory then holds an `allow-overwrite` marker).
//!
//! Runs on the checkpoint thread while the application's threads are stopped; the copies go to
//! `<dir>.new` first and replace the previous set only once the image itself is written.

use dmtcp_engine::meta::{FdEntry, FdKind};
use std::path::{Path, PathBuf};

use dmtcp_engine::meta::{is_unlinked, saved_files_dir as files_dir, unlinked_name};

fn staging(dir: &Path) -> PathBuf {
    dir.with_extension("new")
}

/// Copy the contents of the deleted files and memfds among `fds` (but those whose inode is in
/// `shared_mapped`: the image's areas hold them), and with `all_files` of every other open
/// regular file, into the staging directory (made only if something is saved).
pub fn save(image: &Path, fds: &[FdEntry], shared_mapped: &[u64], all_files: bool, allow_overwrite: bool) -> Result<(), String> {
    let stage = staging(&files_dir(image));
    let _ = std::fs::remove_dir_all(&stage);
    let mut unlinked_done = Vec::new();
    let mut wanted = Vec::new();
    for e in fds.iter().filter(|e| e.kind == FdKind::File && e.mqueue.is_none()) {
        if is_unlinked(&e.path) {
            if !unlinked_done.contains(&e.inode) && !shared_mapped.contains(&e.inode) {
                unlinked_done.push(e.inode);
                wanted.push((e, unlinked_name(e.inode)));
            }
        } else if all_files {
            wanted.push((e, e.fd.to_string()));
        }
    }
    if wanted.is_empty() && !all_files {
        return Ok(());
    }
    std::fs::create_dir_all(&stage).map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
    for (e, name) in wanted {
        // Through our own fd of the file, so the copy is of what the process has open even if
        // its name now points elsewhere (or nowhere).
        let from = format!("/proc/self/fd/{}", e.fd);
        if let Err(err) = std::fs::copy(&from, stage.join(name)) {
            return Err(format!("cannot save open file {} (fd {}): {err}", e.path, e.fd));
        }
    }
    if allow_overwrite && all_files {
        std::fs::write(stage.join("allow-overwrite"), b"").map_err(|e| format!("cannot write {}: {e}", stage.display()))?;
    }
    Ok(())
}

/// The image is written: the staged copies become the current ones.
pub fn commit(image: &Path) {
    let dir = files_dir(image);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::rename(staging(&dir), &dir);
}

/// The checkpoint failed: drop the staged copies, keep the previous ones.
pub fn discard(image: &Path) {
    let _ = std::fs::remove_dir_all(staging(&files_dir(image)));
}
