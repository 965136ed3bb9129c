//! The checkpoint thread: talks to the coordinator, and on its request stops the other threads,
//! writes the image and resumes them. After a restart it is also the one that reconnects and
//! then lets the restored threads go.

use crate::{capture, config, threads};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering::*};
use dmtcp_engine::protocol::{self, FromCoord, ToCoord};
use dmtcp_layout::RestartInfo;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

/// The coordinator socket lives at or above this fd number, out of the application's way
/// (DMTCP keeps its own fds in the same high range).
pub const PROTECTED_FD_BASE: i32 = 821;

pub static COORD_FD: AtomicI32 = AtomicI32::new(-1);
/// This thread's tid as the thread registry knows it (it changes with every restart).
static CKPT_TID: AtomicU32 = AtomicU32::new(0);
/// The checkpoint thread's own saved context (from `save_and_run`).
pub static CKPT_SP: AtomicUsize = AtomicUsize::new(0);
static NUM_PARKED: AtomicUsize = AtomicUsize::new(0);
/// glibc's `__curbrk` (its idea of the program break), resolved at start-up.
pub static GLIBC_CURBRK: AtomicUsize = AtomicUsize::new(0);

/// Filled in by the restart loader (its address is recorded in every image).
pub struct RestartInfoCell(pub UnsafeCell<RestartInfo>);
// SAFETY: written only by the loader before any thread runs, read by the checkpoint thread.
unsafe impl Sync for RestartInfoCell {}
pub static RESTART_INFO: RestartInfoCell =
    RestartInfoCell(UnsafeCell::new(RestartInfo { generation: 0, loader_start: 0, loader_len: 0, mm_not_restored: 0 }));

fn warn(msg: &str) {
    if !config::get().quiet {
        eprintln!("[dmtcp] {msg}");
    }
}

/// Connect to the coordinator now, on the main thread before the application's main() runs:
/// name resolution opens files, and must not take fd numbers the application is about to get.
pub fn start() {
    let cfg = config::get();
    if cfg.coord_port == 0 {
        return; // dmtcp_launch --no-coordinator
    }
    let stream = match connect() {
        Ok(s) => s,
        Err(e) => {
            warn(&format!("coordinator not reachable at {}:{} ({e}); this process will not be checkpointed", cfg.coord_host, cfg.coord_port));
            return;
        }
    };
    COORD_FD.store(stream.as_raw_fd(), Release);
    let spawned = std::thread::Builder::new().name("dmtcp_ckpt".into()).stack_size(1 << 20).spawn(move || run(stream));
    if let Err(e) = spawned {
        warn(&format!("cannot start the checkpoint thread: {e}; this process will not be checkpointed"));
    }
}

fn connect() -> std::io::Result<TcpStream> {
    let cfg = config::get();
    let s = TcpStream::connect((cfg.coord_host.as_str(), cfg.coord_port))?;
    let _ = s.set_nodelay(true);
    // SAFETY: F_DUPFD_CLOEXEC on an fd we own; the result is a new fd we then own.
    let high = unsafe { libc::fcntl(s.as_raw_fd(), libc::F_DUPFD_CLOEXEC, PROTECTED_FD_BASE) };
    if high < 0 {
        return Ok(s);
    }
    drop(s);
    // SAFETY: `high` is a freshly duplicated socket fd owned by nobody else.
    Ok(unsafe { TcpStream::from_raw_fd(high) })
}

fn hello(stream: &mut TcpStream, restarted: bool) -> Result<(), protocol::ProtocolError> {
    let cfg = config::get();
    protocol::send(
        stream,
        &ToCoord::Hello {
            unique_pid: cfg.unique_pid.clone(),
            pid: std::process::id(),
            prog: cfg.prog.clone(),
            hostname: config::nix_hostname(),
            restarted,
            interval: cfg.interval,
        },
    )?;
    match protocol::recv::<_, FromCoord>(stream)? {
        FromCoord::Welcome { .. } => Ok(()),
        other => Err(protocol::ProtocolError::Io(std::io::Error::other(format!("unexpected {other:?}")))),
    }
}

fn run(mut stream: TcpStream) {
    // Process-directed signals (SIGCHLD, SIGINT, ...) and their application handlers belong on
    // the application's threads; after a restart this thread runs with all blocked too.
    let all: u64 = !0;
    let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&all), None);
    CKPT_TID.store(dmtcp_arch::sys::gettid(), Release);
    if let Err(e) = hello(&mut stream, false) {
        warn(&format!("coordinator handshake failed: {e}"));
        return;
    }
    loop {
        match protocol::recv::<_, FromCoord>(&mut stream) {
            Ok(FromCoord::DoCheckpoint { generation, ckpt_dir }) => checkpoint_round(&mut stream, generation, ckpt_dir),
            Ok(FromCoord::Kill) => kill_process(),
            Ok(_) => {}
            Err(_) => {
                // The coordinator went away: the application runs on, without checkpoints.
                let fd = stream.into_raw_fd();
                // SAFETY: closing the socket we owned.
                unsafe { libc::close(fd) };
                COORD_FD.store(-1, Release);
                return;
            }
        }
    }
}

fn kill_process() -> ! {
    // SAFETY: kill(getpid(), SIGKILL) has no memory effects.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    dmtcp_arch::sys::exit_group(137)
}

/// What the writer gets and gives back across `save_and_run`.
struct WriteJob {
    generation: u64,
    ckpt_dir: Option<String>,
    result: Result<String, String>,
}

extern "C" fn write_trampoline(arg: *mut u8) {
    // SAFETY: `arg` is the &mut WriteJob passed by checkpoint_round, alive for this call.
    let job = unsafe { &mut *(arg as *mut WriteJob) };
    job.result = capture::write_checkpoint(job.generation, job.ckpt_dir.as_deref());
}

fn checkpoint_round(stream: &mut TcpStream, generation: u64, ckpt_dir: Option<String>) {
    let cfg = config::get();
    let n = threads::suspend_all(cfg.ckpt_signal);
    NUM_PARKED.store(n, Release);
    let mut job = WriteJob { generation, ckpt_dir, result: Err(String::new()) };
    // SAFETY: CKPT_SP is a static; write_trampoline does not unwind (panic = abort).
    let restored = unsafe { dmtcp_arch::save_and_run(CKPT_SP.as_ptr(), write_trampoline, &mut job as *mut WriteJob as *mut u8) };
    if restored == 1 {
        after_restart(stream);
        return;
    }
    let (image, error) = match job.result {
        Ok(path) => (path, None),
        Err(e) => (String::new(), Some(e)),
    };
    if let Some(e) = &error {
        warn(&format!("checkpoint failed: {e}"));
    }
    let done = ToCoord::CheckpointDone { generation, image, error };
    if protocol::send(stream, &done).is_ok() {
        // Barrier: every process of the computation has written its image before any resumes.
        loop {
            match protocol::recv::<_, FromCoord>(stream) {
                Ok(FromCoord::Resume) | Err(_) => break,
                Ok(FromCoord::Kill) => kill_process(),
                Ok(_) => {}
            }
        }
    }
    threads::resume_all();
}

/// In the restored process, on the checkpoint thread: dmtcp_restart put a fresh coordinator
/// connection at our fd; the loader's copy is still mapped and the other threads wait.
fn after_restart(stream: &mut TcpStream) {
    // Before anything allocates (see alloc.rs).
    crate::ALLOC.forget_unsaved_chunks();
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dmtcp_ckpt".as_ptr()) };
    let me = dmtcp_arch::sys::gettid();
    threads::replace_thread(CKPT_TID.swap(me, AcqRel), me);
    threads::wait_restored_checkins(NUM_PARKED.load(Acquire));
    // SAFETY: the loader wrote RESTART_INFO before any thread ran.
    let info = unsafe { *RESTART_INFO.0.get() };
    if info.mm_not_restored != 0 {
        // The kernel's program break is still the loader's (PR_SET_MM_MAP was refused: qemu-user,
        // or no privilege). glibc must not believe its old heap end: it would take the kernel's
        // answer to its next brk() as success and use memory that is not there. Telling it the
        // kernel's break makes the next sbrk() a non-contiguous extension, which malloc handles.
        let curbrk = GLIBC_CURBRK.load(Acquire) as *mut usize;
        // SAFETY: brk(0) only reports the current break.
        let now = unsafe { syscalls::syscall1(syscalls::Sysno::brk, 0) }.unwrap_or(0);
        if !curbrk.is_null() && now != 0 {
            // SAFETY: glibc's exported __curbrk; the application's threads are all still parked.
            unsafe { curbrk.write_volatile(now) };
        }
    }
    if info.loader_len != 0 {
        // SAFETY: no thread runs loader code any more: all checked in.
        let _ = unsafe { dmtcp_arch::sys::munmap(info.loader_start as usize, info.loader_len as usize) };
    }
    let fd = stream.as_raw_fd();
    // SAFETY: setting FD_CLOEXEC on our own socket.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    if let Err(e) = hello(stream, true) {
        warn(&format!("coordinator handshake after restart failed: {e}"));
    }
    threads::release_restored();
}
