//! The calling process's file descriptors, from /proc/self/fd and /proc/self/fdinfo.
//!
//! Runs in the checkpoint thread while the other threads are stopped: the directory is listed
//! with raw getdents64 (opendir would call glibc malloc, whose lock a stopped thread may hold).

use crate::meta::{FdEntry, FdKind};
use std::io;

/// Numeric names in a /proc directory (/proc/self/fd, /proc/self/task), via getdents64, sorted.
pub fn list_numeric_dir(path: &str) -> io::Result<Vec<i32>> {
    list_numeric_dir_with_fd(path).map(|(names, _)| names)
}

/// [`list_numeric_dir`], also returning the number of the fd it read the directory through
/// (already closed), which in /proc/self/fd lists itself.
fn list_numeric_dir_with_fd(path: &str) -> io::Result<(Vec<i32>, i32)> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    let result = loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n < 0 {
            break Err(io::Error::last_os_error());
        }
        if n == 0 {
            break Ok(());
        }
        let n = (n as usize).min(buf.len());
        let mut off = 0;
        // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, NUL-terminated name.
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen < 19 || off + reclen > n {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(v) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                out.push(v);
            }
            off += reclen;
        }
    };
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    result?;
    out.sort_unstable();
    Ok((out, fd))
}

fn kind_of(fd: i32, path: &str) -> FdKind {
    // SAFETY: stat is plain data filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || path.starts_with("anon_inode:") {
        return FdKind::Other;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG | libc::S_IFDIR => FdKind::File,
        libc::S_IFCHR => FdKind::CharDevice,
        libc::S_IFIFO => FdKind::Pipe,
        libc::S_IFSOCK => FdKind::Socket,
        _ => FdKind::Other,
    }
}

/// `pos:` and `flags:` (octal) of /proc/self/fdinfo/N.
fn fdinfo(fd: i32) -> (u64, i32) {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    let mut pos = 0;
    let mut flags = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pos:") {
            pos = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = line.strip_prefix("flags:") {
            flags = i32::from_str_radix(v.trim(), 8).unwrap_or(0);
        }
    }
    (pos, flags)
}

/// Every open fd except those in `skip`.
pub fn read_self_fds(skip: &[i32]) -> io::Result<Vec<FdEntry>> {
    let mut out = Vec::new();
    let (fds, dir_fd) = list_numeric_dir_with_fd("/proc/self/fd")?;
    for fd in fds {
        if fd == dir_fd || skip.contains(&fd) {
            continue;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue; // closed meanwhile
        };
        let path = target.to_string_lossy().into_owned();
        let kind = kind_of(fd, &path);
        let (offset, flags) = fdinfo(fd);
        out.push(FdEntry::basic(fd, kind, path, flags & !libc::O_CLOEXEC, offset, flags & libc::O_CLOEXEC != 0));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    #[test]
    fn sees_an_open_file_with_offset_and_flags() {
        let path = std::env::temp_dir().join(format!("dmtcp-fds-test-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).unwrap();
        f.write_all(b"hello").unwrap();
        f.seek(SeekFrom::End(0)).unwrap();
        let fds = read_self_fds(&[]).unwrap();
        let e = fds.iter().find(|e| e.fd == f.as_raw_fd()).unwrap();
        assert_eq!(e.kind, FdKind::File);
        assert_eq!(e.offset, 5);
        assert!(e.flags & libc::O_APPEND != 0);
        assert!(e.cloexec);
        assert_eq!(e.path, path.display().to_string());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn kinds_and_skip_list() {
        let mut p = [0i32; 2];
        // SAFETY: p has room for the two fds; closed below.
        assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
        let null = std::fs::File::open("/dev/null").unwrap();
        let dir = std::fs::File::open("/").unwrap();
        let sock = std::os::unix::net::UnixDatagram::unbound().unwrap();
        let fds = read_self_fds(&[p[1]]).unwrap();
        let kind = |fd: i32| fds.iter().find(|e| e.fd == fd).map(|e| e.kind.clone());
        assert_eq!(kind(p[0]), Some(FdKind::Pipe));
        assert_eq!(kind(p[1]), None, "skipped fd listed");
        assert_eq!(kind(null.as_raw_fd()), Some(FdKind::CharDevice));
        assert_eq!(kind(dir.as_raw_fd()), Some(FdKind::File));
        assert_eq!(kind(sock.as_raw_fd()), Some(FdKind::Socket));
        let pipe = fds.iter().find(|e| e.fd == p[0]).unwrap();
        assert!(pipe.path.starts_with("pipe:["), "{}", pipe.path);
        assert!(!pipe.cloexec);
        // SAFETY: closing the pipe made above.
        unsafe {
            libc::close(p[0]);
            libc::close(p[1]);
        }
    }

    #[test]
    fn lists_numeric_names_only() {
        let tasks = list_numeric_dir("/proc/self/task").unwrap();
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        assert!(tasks.contains(&tid), "{tasks:?}");
        assert!(list_numeric_dir("/nonexistent-dir").is_err());
    }
}
