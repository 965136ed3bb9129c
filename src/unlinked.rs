//! Files no name reaches, made again from the contents the checkpoint saved beside the image
//! (preload/src/open_files.rs): a memfd becomes a new memfd of the same name; a deleted file is
//! created again in its old directory under its old name when that name is free (so that
//! /proc/PID/fd shows the same "<path> (deleted)"), filled, and unlinked at once. Where its
//! directory is gone or not writable it becomes an unnamed O_TMPFILE in the temporary directory.

use dmtcp_engine::meta::{unlinked_name, FdEntry};
use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::path::Path;

/// A new file with the saved contents of `e`'s inode (close-on-exec, read-write, offset 0), or
/// None when the image directory holds no copy of it.
pub fn remake(e: &FdEntry, saved_files: &Path) -> io::Result<Option<RawFd>> {
    let saved = saved_files.join(unlinked_name(e.inode));
    let mut from = match File::open(&saved) {
        Ok(f) => f,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let name = e.path.strip_suffix(" (deleted)").unwrap_or(&e.path);
    let mut to = match name.strip_prefix("/memfd:") {
        Some(memfd_name) => new_memfd(memfd_name)?,
        None => deleted_file(Path::new(name))?,
    };
    io::copy(&mut from, &mut to)?;
    Ok(Some(to.into_raw_fd()))
}

fn new_memfd(name: &str) -> io::Result<File> {
    let name = std::ffi::CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fd = nix::sys::memfd::memfd_create(name.as_c_str(), nix::sys::memfd::MFdFlags::MFD_CLOEXEC).map_err(io::Error::from)?;
    Ok(File::from(fd))
}

fn deleted_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // Under its old name if that is free (O_EXCL: never over a file that exists now).
    if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).custom_flags(libc::O_CLOEXEC).open(path) {
        std::fs::remove_file(path)?;
        return Ok(f);
    }
    let dir = path.parent().filter(|d| d.is_dir()).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    match tmpfile_in(&dir) {
        Ok(f) => Ok(f),
        Err(_) => tmpfile_in(&std::env::temp_dir()),
    }
}

fn tmpfile_in(dir: &Path) -> io::Result<File> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open with a NUL-terminated path; the fd is ours.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC, 0o600) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmtcp_engine::meta::FdKind;
    use std::io::{Read, Seek};

    fn entry(path: &str, inode: u64) -> FdEntry {
        FdEntry { inode, ..FdEntry::basic(5, FdKind::File, path.into(), libc::O_RDWR, 0, false) }
    }

    fn dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("dmtcp-unlinked-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn contents(fd: RawFd) -> (String, String) {
        let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().to_string_lossy().into_owned();
        // SAFETY: the fd remake returned, ours.
        let mut f = unsafe { File::from_raw_fd(fd) };
        f.rewind().unwrap();
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        (link, s)
    }

    #[test]
    fn deleted_file_comes_back_deleted_under_its_name() {
        let d = dir("deleted");
        std::fs::write(d.join(unlinked_name(7)), "scratch data").unwrap();
        let old = d.join("work.tmp");
        let fd = remake(&entry(&format!("{} (deleted)", old.display()), 7), &d).unwrap().unwrap();
        assert_eq!(contents(fd), (format!("{} (deleted)", old.display()), "scratch data".to_string()));
        assert!(!old.exists(), "the remade file must be unlinked again");
        // Its name taken now: an unnamed file instead, the other file untouched.
        std::fs::write(&old, "someone else's").unwrap();
        let fd = remake(&entry(&format!("{} (deleted)", old.display()), 7), &d).unwrap().unwrap();
        assert_eq!(contents(fd).1, "scratch data");
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "someone else's");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn memfd_comes_back_with_its_name_and_gone_directory_falls_back() {
        let d = dir("memfd");
        std::fs::write(d.join(unlinked_name(9)), "in memory").unwrap();
        let fd = remake(&entry("/memfd:journal (deleted)", 9), &d).unwrap().unwrap();
        assert_eq!(contents(fd), ("/memfd:journal (deleted)".to_string(), "in memory".to_string()));
        let fd = remake(&entry("/no/such/dir/x (deleted)", 9), &d).unwrap().unwrap();
        assert_eq!(contents(fd).1, "in memory");
        assert_eq!(remake(&entry("/memfd:other (deleted)", 10), &d).unwrap(), None, "no saved copy: nothing to remake");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
