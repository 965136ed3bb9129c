//! The calling process's file descriptors, from /proc/self/fd and /proc/self/fdinfo.
//!
//! Runs in the checkpoint thread while the other threads are stopped: the directory is listed
//! with raw getdents64 (opendir would call glibc malloc, whose lock a stopped thread may hold).

use crate::meta::{FdEntry, FdKind};
use std::io;

/// Numeric names in a /proc directory, via getdents64.
pub fn list_numeric_dir(path: &str) -> io::Result<Vec<i32>> {
    let c = std::ffi::CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16384];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len()) };
        if n <= 0 {
            break;
        }
        let n = n as usize;
        let mut off = 0;
        // struct linux_dirent64: u64 ino, i64 off, u16 reclen, u8 type, NUL-terminated name.
        while off + 19 <= n {
            let reclen = u16::from_ne_bytes([buf[off + 16], buf[off + 17]]) as usize;
            if reclen == 0 || off + reclen > n {
                break;
            }
            let name = &buf[off + 19..off + reclen];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if let Some(v) = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()) {
                out.push(v);
            }
            off += reclen;
        }
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    out.sort_unstable();
    Ok(out)
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
    for fd in list_numeric_dir("/proc/self/fd")? {
        if skip.contains(&fd) {
            continue;
        }
        let Ok(target) = std::fs::read_link(format!("/proc/self/fd/{fd}")) else {
            continue; // closed meanwhile, or the directory fd itself
        };
        let path = target.to_string_lossy().into_owned();
        let kind = kind_of(fd, &path);
        let (offset, flags) = fdinfo(fd);
        out.push(FdEntry { fd, kind, path, flags: flags & !libc::O_CLOEXEC, offset, cloexec: flags & libc::O_CLOEXEC != 0 });
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
}
