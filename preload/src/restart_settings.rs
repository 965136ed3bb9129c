//! What dmtcp_restart asks of the process it restarts, read once after each restart from the fd
//! the loader reports in `RestartInfo::settings_fd`: "key=value" lines, then a line `environ`
//! followed by dmtcp_restart's environment (NUL-separated NAME=VALUE, DMTCP_RESTART_CWD=<its
//! working directory> among them), which the API and plugins read (dmtcp_get_restart_env).
//! The keys:
//! - `ckptdir=DIR`: `dmtcp_restart --ckptdir`: where the next checkpoints go;
//! - `pause=1`: `--debug-restart-pause N`, DMTCP_GDB_ATTACH_ON_RESTART or DMTCP_RESTART_PAUSE:
//!   wait until a debugger attaches. DMTCP_RESTART_PAUSE2 in the program's own (launch-time)
//!   environment asks the same, as in DMTCP;
//! - `cloexec=3,7`: the program's fds that were close-on-exec: dmtcp_restart could not set the
//!   flag before it executed the loader (the exec would have closed them);
//! - `pidmap=FD`: the restart's pid map (dmtcp_engine::pidmap): old and new pid of every process
//!   restarted with this one.
//!
//! Runs on the checkpoint thread after a restart, while the application's threads still wait.

use core::sync::atomic::Ordering::Release;
use std::io::{Read, Seek};
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

static CKPT_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The checkpoint directory the last restart asked for, if any.
pub fn ckpt_dir() -> Option<PathBuf> {
    CKPT_DIR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Read and close the settings fd (if any), remember the checkpoint directory, and pause for a
/// debugger when asked.
pub fn apply(settings_fd: i64) {
    let mut pause = std::env::var_os("DMTCP_RESTART_PAUSE2").is_some_and(|v| !v.is_empty() && v != "0");
    if settings_fd >= 0 {
        // SAFETY: dmtcp_restart opened this fd for us and nothing else uses it; File closes it.
        let mut f = unsafe { std::fs::File::from_raw_fd(settings_fd as i32) };
        let mut bytes = Vec::new();
        // From the start: dmtcp_restart's writes left the shared offset at the end.
        let _ = f.seek(std::io::SeekFrom::Start(0)).and_then(|_| f.read_to_end(&mut bytes));
        let (settings, environ) = split_environ(&bytes);
        if !environ.is_empty() {
            let leaked = environ.to_vec().leak();
            crate::ckpt::RESTART_ENV_LEN.store(leaked.len(), Release);
            crate::ckpt::RESTART_ENV.store(leaked.as_mut_ptr(), Release);
        }
        for (key, value) in String::from_utf8_lossy(settings).lines().filter_map(|l| l.split_once('=')) {
            match key {
                "ckptdir" => *CKPT_DIR.lock().unwrap_or_else(|e| e.into_inner()) = Some(PathBuf::from(value)),
                "pause" => pause |= value != "0",
                "pidmap" => {
                    if let Some(Err(e)) = value.parse::<i32>().ok().map(crate::pids::adopt_restart_map) {
                        eprintln!("[dmtcp] {e}: pids of the other processes may not translate");
                    }
                }
                "cloexec" => {
                    for fd in value.split(',').filter_map(|v| v.parse::<i32>().ok()) {
                        // SAFETY: setting a flag on one of the program's own fds.
                        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
                    }
                }
                _ => {}
            }
        }
    }
    if pause {
        wait_for_debugger();
    }
}

/// The settings lines, and what follows the `environ` line.
fn split_environ(bytes: &[u8]) -> (&[u8], &[u8]) {
    let marker = b"environ\n";
    let mut at = 0;
    while at + marker.len() <= bytes.len() {
        if bytes[at..].starts_with(marker) {
            return (&bytes[..at], &bytes[at + marker.len()..]);
        }
        match bytes[at..].iter().position(|&c| c == b'\n') {
            Some(nl) => at += nl + 1,
            None => break,
        }
    }
    (bytes, &[])
}

/// Every thread of the program is restored and waits; tell the user how to attach and wait until
/// a debugger has. Attaching stops every thread of this process (this one too, so it cannot watch
/// for the debugger itself: a batch gdb may come and go between two looks). A watcher process
/// does the watching and writes to a pipe once this thread's /proc status shows a tracer; this thread
/// reads that pipe, and so continues as soon as the debugger lets the process run.
fn wait_for_debugger() {
    let pid = std::process::id();
    let exe = std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default();
    eprintln!("[dmtcp] restarted process {pid} is paused for a debugger: gdb {exe} {pid} (it resumes once a debugger is attached)");
    // This thread's own status: a debugger attaches the threads one by one, and the process's
    // (its main thread's) tracer can show before this thread is stopped too, which would let it
    // run on before the debugger has looked at it.
    let status_path = format!("/proc/{pid}/task/{}/status\0", dmtcp_arch::sys::gettid());
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two fds into `fds`.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    let (rd, wr) = (fds[0], fds[1]);
    // A raw clone with no exit signal: glibc's fork would run fork handlers and take locks that a
    // parked application thread may hold, and the application must never see our SIGCHLD.
    // SAFETY: a fork-like clone (no shared memory); the child runs only `watch`, which makes raw
    // system calls on its own copy of the stack and never returns.
    match unsafe { syscalls::syscall5(syscalls::Sysno::clone, 0, 0, 0, 0, 0) } {
        Ok(0) => watch(status_path.as_bytes(), wr),
        Ok(child) => {
            // SAFETY: closing our copy of the write end, then a blocking one-byte read on our pipe.
            unsafe {
                libc::close(wr);
                let mut byte = 0u8;
                while libc::read(rd, (&mut byte as *mut u8).cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
                libc::close(rd);
            }
            // SAFETY: reaping our own exit-signal-less child (hence __WALL).
            let _ = unsafe { syscalls::syscall4(syscalls::Sysno::wait4, child, 0, libc::__WALL as usize, 0) };
        }
        Err(_) => {
            // SAFETY: closing our own pipe.
            unsafe {
                libc::close(rd);
                libc::close(wr);
            }
        }
    }
}

/// In the watcher: poll the parent's status every 5 ms until it has a tracer, then tell it.
/// Raw system calls only (this is a copy of a process whose other threads may hold locks).
fn watch(status_path: &[u8], wr: i32) -> ! {
    use syscalls::{syscall1, syscall2, syscall3, syscall4, Sysno};
    let mut buf = [0u8; 4096];
    let pause = libc::timespec { tv_sec: 0, tv_nsec: 5_000_000 };
    loop {
        // SAFETY: a NUL-terminated path; reads into our stack buffer; closes our own fd.
        let n = unsafe {
            match syscall4(Sysno::openat, libc::AT_FDCWD as usize, status_path.as_ptr() as usize, libc::O_RDONLY as usize, 0) {
                Ok(fd) => {
                    let n = syscall3(Sysno::read, fd, buf.as_mut_ptr() as usize, buf.len()).unwrap_or(0);
                    let _ = syscall1(Sysno::close, fd);
                    n
                }
                Err(_) => 0, // the process is gone
            }
        };
        let traced = buf[..n].split(|&c| c == b'\n').any(|l| l.starts_with(b"TracerPid:") && l[10..].iter().any(|c| (b'1'..=b'9').contains(c)));
        if n == 0 || traced {
            // SAFETY: one byte from our stack to the pipe.
            let _ = unsafe { syscall3(Sysno::write, wr as usize, b"x".as_ptr() as usize, 1) };
            dmtcp_arch::sys::exit_group(0);
        }
        // SAFETY: a valid timespec.
        let _ = unsafe { syscall2(Sysno::nanosleep, &pause as *const libc::timespec as usize, 0) };
    }
}

#[cfg(test)]
mod tests {
    use super::split_environ;

    #[test]
    fn settings_and_environ_split() {
        let (s, e) = split_environ(b"ckptdir=/x\npause=1\nenviron\nA=1\0B=environ\n\0");
        assert_eq!((s, e), (&b"ckptdir=/x\npause=1\n"[..], &b"A=1\0B=environ\n\0"[..]));
        assert_eq!(split_environ(b"ckptdir=/environ\n"), (&b"ckptdir=/environ\n"[..], &b""[..]));
        assert_eq!(split_environ(b"environ\nX=1\0"), (&b""[..], &b"X=1\0"[..]));
    }
}
