//! dmtcp_restart's file descriptors: put the restarted program's descriptors back at their
//! numbers (regular files at their offsets, saved copies of --ckpt-open-files), keep our own out of
//! their way, and close whatever else this process inherited.

use crate::cli::die;
use dmtcp_engine::meta::{FdEntry, FdKind};
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

pub use crate::staging::Staged;

const PROG: &str = "dmtcp_restart";

pub fn dup_at_least(fd: RawFd, min: RawFd, cloexec: bool) -> RawFd {
    let cmd = if cloexec { libc::F_DUPFD_CLOEXEC } else { libc::F_DUPFD };
    // SAFETY: duplicating an fd we own.
    let r = unsafe { libc::fcntl(fd, cmd, min) };
    if r < 0 {
        die(PROG, format!("cannot duplicate a file descriptor: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: closing the original, which we own and no longer need.
    unsafe { libc::close(fd) };
    r
}

pub fn dup_to(from: RawFd, to: RawFd) {
    if from == to {
        // SAFETY: clearing FD_CLOEXEC on our own fd.
        unsafe { libc::fcntl(to, libc::F_SETFD, 0) };
        return;
    }
    // SAFETY: dup2 onto a number the restored process owns; `from` is ours.
    if unsafe { libc::dup2(from, to) } < 0 {
        die(PROG, format!("cannot place file descriptor {to}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `from` is ours.
    unsafe { libc::close(from) };
}

/// Open a regular file or device at the entry's path, access mode, flags and offset (None if it
/// cannot be: deleted, gone, no permission).
pub(crate) fn open_file(e: &FdEntry) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if e.path.ends_with(" (deleted)") {
        return None;
    }
    let keep = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_SYNC | libc::O_DSYNC;
    let acc = e.flags & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
        .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
        .custom_flags(e.flags & keep)
        .open(&e.path)
        .ok()?;
    if e.kind == FdKind::File && e.offset > 0 {
        // SAFETY: lseek on the fd we just opened.
        unsafe { libc::lseek(f.as_raw_fd(), e.offset as libc::off_t, libc::SEEK_SET) };
    }
    Some(f)
}

pub(crate) fn dev_null() -> std::fs::File {
    match std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        Ok(f) => f,
        Err(err) => die(PROG, format!("cannot open /dev/null: {err}")),
    }
}

/// dmtcp_launch --ckpt-open-files saved the file's contents beside the image (see
/// preload/src/open_files.rs): put them back where the file is gone, or over it when the launch
/// also had --allow-file-overwrite.
pub(crate) fn put_back_saved_file(e: &FdEntry, saved_files: &Path, quiet: bool) {
    let saved = saved_files.join(e.fd.to_string());
    if e.path.ends_with(" (deleted)") || !saved.is_file() {
        return;
    }
    let target = Path::new(&e.path);
    let overwrite = saved_files.join("allow-overwrite").exists();
    if target.exists() && !overwrite {
        return;
    }
    if let Some(parent) = target.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    // Next to the target, then renamed: a full disk never leaves a half-written file.
    let tmp = target.with_file_name(format!(".{}.dmtcp-restore", target.file_name().and_then(|n| n.to_str()).unwrap_or("file")));
    let done = std::fs::copy(&saved, &tmp).and_then(|_| std::fs::rename(&tmp, target));
    if let Err(err) = done {
        let _ = std::fs::remove_file(&tmp);
        if !quiet {
            eprintln!("{PROG}: cannot put back the saved copy of {} (fd {}): {err}", e.path, e.fd);
        }
    }
}

/// Close every fd this process inherited that the restored program did not have.
pub fn close_others(keep: &[RawFd]) {
    let fds: Vec<RawFd> =
        std::fs::read_dir("/proc/self/fd").map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing inherited fds the restored program does not know; ours are CLOEXEC
            // or in `keep`.
            unsafe { libc::close(fd) };
        }
    }
}
