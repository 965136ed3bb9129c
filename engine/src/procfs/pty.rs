//! The input side of a pseudo-terminal: bytes written to the master that the programs on the
//! slave side have not read yet (keys typed ahead). A terminal cannot be peeked: [`save_input`]
//! reads them from the slave and writes them back through the master, and dmtcp_restart writes
//! them into the new terminal with [`put_back_input`].
//!
//! save_input runs on the checkpoint thread while every process of the computation is suspended:
//! it allocates (our own allocator) but takes no glibc lock; put_back_input also runs in
//! dmtcp_restart before the restored programs do.
//!
//! Both rely on Linux's n_tty line discipline: a canonical-mode read returns complete lines
//! only, so the slave is read in non-canonical mode (switching ICANON off makes every queued byte
//! readable); bytes written to the master reach the line discipline asynchronously (a kernel
//! worker), and TIOCINQ counts complete lines only in canonical mode, so the wait for them is
//! on the count that must come out. Not kept: an end-of-file key (^D) typed ahead comes back as
//! a NUL byte, a line ended by VEOL/VEOL2 is no longer complete, and beyond the 4 KiB the line
//! discipline holds the rest may be echoed when it arrives.

use crate::meta::{FdEntry, PtyInput};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// n_tty's input buffer (N_TTY_BUF_SIZE); it holds one byte less.
const N_TTY_BUF_SIZE: usize = 4096;
/// How long the line discipline gets to take bytes written to the master.
const TAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The unread input of every pty whose master is in `entries` (this process's table), read by
/// the first holder of each master's open file description only, and left in place.
pub fn save_input(entries: &[FdEntry]) -> Vec<PtyInput> {
    entries
        .iter()
        .filter(|e| e.shares.is_none())
        .filter_map(|e| e.pty.as_ref().filter(|p| p.master).map(|p| (e.fd, p.index)))
        .filter_map(|(fd, index)| {
            let bytes = drain_input(fd, index);
            (!bytes.is_empty()).then_some(PtyInput { index, bytes })
        })
        .collect()
}

/// The slave's queued input, read and written back. Every process of the computation is
/// suspended meanwhile, so nothing else reads or types.
fn drain_input(master: RawFd, index: u32) -> Vec<u8> {
    let mut p = libc::pollfd { fd: master, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one valid pollfd, no waiting.
    if unsafe { libc::poll(&mut p, 1, 0) } < 0 || p.revents & libc::POLLHUP != 0 {
        return Vec::new(); // no slave open: nobody would read it, and opening one would change that
    }
    let Ok(path) = std::ffi::CString::new(format!("/dev/pts/{index}")) else { return Vec::new() };
    // SAFETY: opening the slave by path, without making it a controlling terminal.
    let slave = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if slave < 0 {
        return Vec::new();
    }
    let mut data = Vec::new();
    // SAFETY: termios is plain data that tcgetattr fills; tcsetattr, read and close on our own fd
    // and buffer. The checkpoint thread blocks every signal, so SIGTTOU/SIGTTIN cannot stop it.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(slave, &mut t) == 0 {
            let mut raw = t;
            raw.c_lflag &= !libc::ICANON;
            raw.c_cc[libc::VMIN] = 0;
            raw.c_cc[libc::VTIME] = 0;
            libc::tcsetattr(slave, libc::TCSANOW, &raw);
            let mut buf = [0u8; N_TTY_BUF_SIZE];
            while data.len() < super::fd_state::MAX_QUEUED {
                let n = libc::read(slave, buf.as_mut_ptr().cast(), buf.len());
                let Ok(n @ 1..) = usize::try_from(n) else { break };
                data.extend_from_slice(&buf[..n]);
            }
            if data.is_empty() {
                libc::tcsetattr(slave, libc::TCSANOW, &t);
            } else {
                put_back_input(master, slave, &t, &data);
            }
        }
        libc::close(slave);
    }
    data
}

/// Queue `data` as input of the terminal (master `master`, slave `slave`) as if it was typed,
/// with its line boundaries but without echo or input processing (it was processed on its way
/// in the first time), then give the terminal the settings `t`.
pub fn put_back_input(master: RawFd, slave: RawFd, t: &libc::termios, data: &[u8]) {
    let mut quiet = *t;
    quiet.c_iflag = 0;
    // EXTPROC kept: switching it (like ICANON) makes n_tty forget the line boundaries.
    quiet.c_lflag &= libc::ICANON | libc::EXTPROC;
    for c in [libc::VEOF, libc::VEOL, libc::VEOL2, libc::VERASE, libc::VKILL] {
        quiet.c_cc[c] = 0; // _POSIX_VDISABLE: newline is the only special character left
    }
    let canonical = quiet.c_lflag & libc::ICANON != 0 && quiet.c_lflag & libc::EXTPROC == 0;
    // What TIOCINQ reports once every byte is in: complete lines only, in canonical mode.
    let lines = if canonical { data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) } else { data.len() };
    let want = lines.min(N_TTY_BUF_SIZE - 1);
    // SAFETY: fcntl, tcsetattr, write, poll and ioctl(TIOCINQ) on the caller's fds and our own
    // buffers and plain structs.
    unsafe {
        libc::tcsetattr(slave, libc::TCSANOW, &quiet);
        let fl = libc::fcntl(master, libc::F_GETFL);
        libc::fcntl(master, libc::F_SETFL, fl | libc::O_NONBLOCK);
        let deadline = Instant::now() + TAKE_TIMEOUT;
        let mut done = 0;
        while done < data.len() && Instant::now() < deadline {
            let n = libc::write(master, data[done..].as_ptr().cast(), data.len() - done);
            match usize::try_from(n) {
                Ok(n) => done += n,
                Err(_) if matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(_) => break,
            }
        }
        libc::fcntl(master, libc::F_SETFL, fl);
        loop {
            // With no complete line queued, poll on the slave waits for the kernel worker that
            // moves written bytes into the line discipline; after the last newline, the rest of
            // that write is taken before tcsetattr below can change the settings.
            let mut p = libc::pollfd { fd: slave, events: libc::POLLIN, revents: 0 };
            libc::poll(&mut p, 1, 0);
            let mut queued: libc::c_int = 0;
            libc::ioctl(slave, libc::TIOCINQ, &mut queued);
            if usize::try_from(queued).unwrap_or(0) >= want || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        libc::tcsetattr(slave, libc::TCSANOW, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{FdKind, PtyInfo};

    fn openpty() -> (RawFd, RawFd) {
        // SAFETY: posix_openpt and friends on new fds of our own; ptsname_r writes into `name`.
        unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
            assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0);
            let mut name = [0 as libc::c_char; 64];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0);
            let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK);
            assert!(s >= 0);
            (m, s)
        }
    }

    fn read_now(fd: RawFd) -> Vec<u8> {
        let mut buf = [0u8; 256];
        // SAFETY: reading into our buffer.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        buf[..usize::try_from(n).unwrap_or(0)].to_vec()
    }

    fn index_of(m: RawFd) -> u32 {
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int.
        assert_eq!(unsafe { libc::ioctl(m, libc::TIOCGPTN, &mut n) }, 0);
        n
    }

    /// Lines and a partial line typed ahead (echo on, canonical mode) are saved, and stay for the
    /// reader line by line, without a second echo.
    #[test]
    fn typed_ahead_lines_are_saved_and_kept() {
        let (m, s) = openpty();
        let typed = b"first\nsecond\npart";
        // SAFETY: writing our buffer to our master.
        assert_eq!(unsafe { libc::write(m, typed.as_ptr().cast(), typed.len()) }, typed.len() as isize);
        let deadline = Instant::now() + TAKE_TIMEOUT;
        let mut echo = Vec::new();
        while echo.len() < b"first\r\nsecond\r\npart".len() && Instant::now() < deadline {
            let mut p = libc::pollfd { fd: m, events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, 100) } > 0 {
                echo.extend(read_now(m));
            }
        }
        let index = index_of(m);
        let mut e = FdEntry::basic(m, FdKind::CharDevice, "/dev/ptmx".into(), libc::O_RDWR, 0, false);
        e.pty = Some(PtyInfo { master: true, index, termios: Vec::new(), winsize: [0; 4] });
        assert_eq!(save_input(&[e]), vec![PtyInput { index, bytes: typed.to_vec() }]);
        assert_eq!(read_now(s), b"first\n", "one line per canonical read");
        assert_eq!(read_now(s), b"second\n");
        assert_eq!(read_now(s), b"", "the partial line waits for its newline");
        // SAFETY: writing a constant to our master.
        unsafe { libc::write(m, b"\n".as_ptr().cast(), 1) };
        let mut p = libc::pollfd { fd: s, events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 2000) };
        assert_eq!(read_now(s), b"part\n");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(read_now_nonblocking(m), b"\r\n", "only the newline typed last is echoed");
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(s);
            libc::close(m);
        }
    }

    fn read_now_nonblocking(fd: RawFd) -> Vec<u8> {
        // SAFETY: F_GETFL/F_SETFL on our own fd.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
        read_now(fd)
    }
}
