//! dmtcp_launch --ckpt-open-files: the regular files the process has open are saved beside its
//! image, in `<image name without .dmtcp>_files/<fd>`, as DMTCP does. dmtcp_restart puts a saved
//! copy back where its file is missing, or over it when the launch also had
//! --allow-file-overwrite (the directory then holds an `allow-overwrite` marker).
//!
//! Runs on the checkpoint thread while the application's threads are stopped; the copies go to
//! `<dir>.new` first and replace the previous set only once the image itself is written.

use dmtcp_engine::meta::{FdEntry, FdKind};
use std::path::{Path, PathBuf};

use dmtcp_engine::meta::saved_files_dir as files_dir;

fn staging(dir: &Path) -> PathBuf {
    dir.with_extension("new")
}

/// Copy the contents of every open regular file into the staging directory.
pub fn save(image: &Path, fds: &[FdEntry], allow_overwrite: bool) -> Result<(), String> {
    let stage = staging(&files_dir(image));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage).map_err(|e| format!("cannot create {}: {e}", stage.display()))?;
    for e in fds.iter().filter(|e| e.kind == FdKind::File && !e.path.ends_with(" (deleted)")) {
        let to = stage.join(e.fd.to_string());
        // Through our own fd of the file, so the copy is of what the process has open even if
        // its name now points elsewhere.
        let from = format!("/proc/self/fd/{}", e.fd);
        if let Err(err) = std::fs::copy(&from, &to) {
            return Err(format!("cannot save open file {} (fd {}): {err}", e.path, e.fd));
        }
    }
    if allow_overwrite {
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
