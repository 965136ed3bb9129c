//! The checkpoint thread: talks to the coordinator, and on its request stops the other threads,
//! writes the image and resumes them. After a restart it is also the one that reconnects and
//! then lets the restored threads go.

use crate::{capture, config, plugin, threads};
use core::cell::{Cell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, AtomicUsize, Ordering::*};
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

// What the application API (api.rs) reads. The counters are part of the image: a restored
// process sees the values of checkpoint time, then the restart bumps NUM_RESTARTS, which is how
// dmtcp_checkpoint() tells "after checkpoint" from "after restart".
/// Checkpoints this process wrote successfully (excluding restarts).
pub static NUM_CHECKPOINTS: AtomicU32 = AtomicU32::new(0);
pub static NUM_RESTARTS: AtomicU32 = AtomicU32::new(0);
/// Checkpoint rounds that ended without an image of this process.
pub static NUM_FAILED: AtomicU32 = AtomicU32::new(0);
/// Bumped (and futex-woken) after every change of the three counters above, and when the
/// coordinator goes away.
pub static EVENT_SEQ: AtomicU32 = AtomicU32::new(0);
/// The computation's checkpoint generation (0 before the first checkpoint).
pub static GENERATION: AtomicU32 = AtomicU32::new(0);
/// The last image written (a leaked C string; null before the first checkpoint).
pub static LAST_IMAGE: AtomicPtr<libc::c_char> = AtomicPtr::new(core::ptr::null_mut());
/// dmtcp_set_ckpt_dir(): the directory of the next images (a leaked C string, or null).
pub static CKPT_DIR_OVERRIDE: AtomicPtr<libc::c_char> = AtomicPtr::new(core::ptr::null_mut());
/// The restart-time environment (NUL-separated NAME=VALUE, with DMTCP_RESTART_CWD=<dmtcp_restart's
/// working directory>), from dmtcp_restart's settings (restart_settings.rs); a leaked buffer, or null.
pub static RESTART_ENV: AtomicPtr<u8> = AtomicPtr::new(core::ptr::null_mut());
pub static RESTART_ENV_LEN: AtomicUsize = AtomicUsize::new(0);

// ----- Checkpoint-free windows (dmtcp_disable_ckpt / dmtcp_enable_ckpt)
//
// Lock-free, so a window may be opened anywhere, a signal handler included. A thread entering
// counts itself in INSIDE, then checks PENDING; the checkpoint thread sets PENDING, then waits
// for INSIDE to drop to 0. With sequentially consistent operations on both words, either the
// thread sees PENDING (and backs out until the checkpoint is over) or the checkpoint thread sees
// it inside (and waits): no thread is ever suspended inside a window, and a checkpoint requested
// during one starts when the last window closes.

/// Threads inside a window (a thread counts once, however deeply it nests).
static INSIDE: AtomicU32 = AtomicU32::new(0);
/// True from the moment the checkpoint thread wants to suspend until the threads run again.
static PENDING: AtomicBool = AtomicBool::new(false);
/// Bumped when PENDING clears: threads waiting to enter a window sleep on it.
static GATE: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// This thread's nesting depth of dmtcp_disable_ckpt().
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

pub fn on_ckpt_thread() -> bool {
    let me = CKPT_TID.load(Acquire);
    me != 0 && me == dmtcp_arch::sys::gettid()
}

/// dmtcp_disable_ckpt(): waits while a checkpoint is under way, unless this thread is already
/// inside a window (nesting) or is the checkpoint thread (a plugin hook).
pub fn enter_window() {
    let depth = DEPTH.with(Cell::get);
    if depth == 0 && !on_ckpt_thread() {
        loop {
            INSIDE.fetch_add(1, SeqCst);
            if !PENDING.load(SeqCst) {
                break;
            }
            leave_count();
            let gate = GATE.load(SeqCst);
            if PENDING.load(SeqCst) {
                dmtcp_arch::sys::futex_wait(&GATE, gate);
            }
        }
    }
    DEPTH.with(|d| d.set(depth + 1));
}

/// dmtcp_enable_ckpt(). False if this thread was not inside a window.
pub fn leave_window() -> bool {
    let depth = DEPTH.with(Cell::get);
    if depth == 0 {
        return false;
    }
    DEPTH.with(|d| d.set(depth - 1));
    if depth == 1 && !on_ckpt_thread() {
        leave_count();
    }
    true
}

/// Depth of this thread's window nesting.
pub fn window_depth() -> u32 {
    DEPTH.with(Cell::get)
}

fn leave_count() {
    if INSIDE.fetch_sub(1, SeqCst) == 1 && PENDING.load(SeqCst) {
        dmtcp_arch::sys::futex_wake_all(&INSIDE);
    }
}

/// A checkpoint is waiting for windows to close or under way (checkpoint_is_pending()).
pub fn checkpoint_pending() -> bool {
    PENDING.load(SeqCst)
}

/// Before suspending: no thread may enter a window, and every thread inside leaves it.
fn close_gate() {
    PENDING.store(true, SeqCst);
    loop {
        let n = INSIDE.load(SeqCst);
        if n == 0 {
            return;
        }
        dmtcp_arch::sys::futex_wait(&INSIDE, n);
    }
}

fn open_gate() {
    PENDING.store(false, SeqCst);
    GATE.fetch_add(1, SeqCst);
    dmtcp_arch::sys::futex_wake_all(&GATE);
}

/// Wake dmtcp_checkpoint() callers after a counter changed.
fn notify_waiters() {
    EVENT_SEQ.fetch_add(1, AcqRel);
    dmtcp_arch::sys::futex_wake_all(&EVENT_SEQ);
}

/// Send one message to the coordinator on the process's own connection, from an application
/// thread (dmtcp_checkpoint()). The caller is inside a window, so the checkpoint thread, which
/// writes only while every application thread is outside windows and suspended, is not writing.
pub fn send_from_app(msg: &ToCoord) -> bool {
    static SENDERS: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = SENDERS.lock().unwrap_or_else(|e| e.into_inner());
    let fd = COORD_FD.load(Acquire);
    if fd < 0 {
        return false;
    }
    // SAFETY: the coordinator socket stays open while COORD_FD holds it; ManuallyDrop keeps
    // this borrowed handle from closing it.
    let mut stream = core::mem::ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
    protocol::send(&mut *stream, msg).is_ok()
}

/// Filled in by the restart loader (its address is recorded in every image).
pub struct RestartInfoCell(pub UnsafeCell<RestartInfo>);
// SAFETY: written only by the loader before any thread runs, read by the checkpoint thread.
unsafe impl Sync for RestartInfoCell {}
// SAFETY: RestartInfo holds only integers, for which all-zero is valid (zeroed, not a literal,
// so that fields the loader gains later need no change here).
pub static RESTART_INFO: RestartInfoCell = RestartInfoCell(UnsafeCell::new(unsafe { core::mem::zeroed() }));

pub(crate) fn warn(msg: &str) {
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
    let mut stream = stream;
    // Register before main() runs, so that the application's first request (dmtcp_checkpoint())
    // reaches a coordinator that knows this process.
    if let Err(e) = hello(&mut stream, false) {
        warn(&format!("coordinator handshake failed: {e}; this process will not be checkpointed"));
        return;
    }
    COORD_FD.store(stream.as_raw_fd(), Release);
    // The new thread starts with every signal blocked (it keeps only glibc's own open, see
    // `run`): with the caller's mask it could take one of the application's signals before it
    // sets its own.
    let all: u64 = !0;
    let mut caller_mask: u64 = 0;
    let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&all), Some(&mut caller_mask));
    let spawned = std::thread::Builder::new().name("dmtcp_ckpt".into()).stack_size(1 << 20).spawn(move || run(stream));
    let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&caller_mask), None);
    if let Err(e) = spawned {
        warn(&format!("cannot start the checkpoint thread: {e}; this process will not be checkpointed"));
    }
}

/// In the child of a fork (from the atfork handler, before fork() returns): the parent's
/// coordinator connection and checkpoint thread are the parent's. The child closes its copy of
/// the socket, takes a unique pid of its own and joins the computation as a new process, so that
/// it is checkpointed together with its parent (DMTCP follows fork the same way).
pub fn after_fork_child() {
    // No checkpoint is under way in the child, and its only thread is the forking one.
    PENDING.store(false, SeqCst);
    INSIDE.store(u32::from(window_depth() > 0), SeqCst);
    if crate::pids::renumbered() && crate::pids::taken_by_another(dmtcp_arch::sys::getpid()) {
        // The program knows this pid as another process's: the fork wrapper makes another child.
        dmtcp_arch::sys::exit_group(0);
    }
    let fd = COORD_FD.swap(-1, AcqRel);
    if fd < 0 {
        return; // the parent was not under a coordinator
    }
    // SAFETY: our copy of the parent's coordinator socket; nothing in the child uses it.
    unsafe { libc::close(fd) };
    config::renew_unique_pid();
    start();
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
            unique_pid: config::unique_pid(),
            // The kernel's pid: `dmtcp_command --list` shows what ps and kill know.
            pid: dmtcp_arch::sys::getpid(),
            prog: cfg.prog.clone(),
            hostname: config::nix_hostname(),
            restarted,
            interval: cfg.interval,
        },
    )?;
    match protocol::recv::<_, FromCoord>(stream)? {
        FromCoord::Welcome { generation } => {
            GENERATION.store(u32::try_from(generation).unwrap_or(u32::MAX), Release);
            Ok(())
        }
        other => Err(protocol::ProtocolError::Io(std::io::Error::other(format!("unexpected {other:?}")))),
    }
}

fn run(mut stream: TcpStream) {
    // Process-directed signals (SIGCHLD, SIGINT, ...) and their application handlers belong on
    // the application's threads; after a restart this thread runs with all blocked too. All but
    // glibc's own two (SIGCANCEL 32, SIGSETXID 33): setuid()/setgid() in a threaded process waits
    // until every thread has taken SIGSETXID (GNU screen's child hung on it).
    let glibc_internal: u64 = (1 << (32 - 1)) | (1 << (33 - 1));
    let all: u64 = !glibc_internal;
    let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&all), None);
    CKPT_TID.store(dmtcp_arch::sys::gettid(), Release);
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
                // dmtcp_checkpoint() callers waiting for a checkpoint give up.
                notify_waiters();
                return;
            }
        }
    }
}

pub(crate) fn kill_process() -> ! {
    // A drained TCP connection's queue is empty, so its close would be graceful and leave the
    // port in TIME_WAIT, which a listener restarted on it cannot bind over: reset them instead.
    crate::tcp_drain::reset_connections();
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

/// The directory dmtcp_set_ckpt_dir() chose, if any.
pub fn ckpt_dir_override() -> Option<String> {
    let p = CKPT_DIR_OVERRIDE.load(Acquire);
    // SAFETY: a leaked, NUL-terminated string set by api.rs; never freed.
    (!p.is_null()).then(|| unsafe { core::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

fn checkpoint_round(stream: &mut TcpStream, generation: u64, ckpt_dir: Option<String>) {
    let cfg = config::get();
    GENERATION.store(u32::try_from(generation).unwrap_or(u32::MAX), Release);
    // Plugins run before anything stops, so their hooks may use any library function.
    plugin::deliver(plugin::EVENT_PRESUSPEND, 0);
    plugin::deliver(plugin::EVENT_PRECHECKPOINT, 0);
    close_gate();
    let n = threads::suspend_all(cfg.ckpt_signal);
    NUM_PARKED.store(n, Release);
    wait_all_suspended(stream, generation);
    // Timers and pending signals live in the kernel, outside the image: note them (timers.rs).
    crate::timers::save();
    // Counted before writing, so the image (and a process restored from it) includes this
    // checkpoint; taken back below if the write fails. No application thread runs to see it.
    NUM_CHECKPOINTS.fetch_add(1, AcqRel);
    let ckpt_dir = ckpt_dir_override().or(ckpt_dir);
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
        NUM_CHECKPOINTS.fetch_sub(1, AcqRel);
        NUM_FAILED.fetch_add(1, AcqRel);
    } else if let Ok(c) = std::ffi::CString::new(image.clone()) {
        LAST_IMAGE.store(c.into_raw(), Release);
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
    // Hooks run before the threads do (DMTCP's order), so they must not wait for a lock a
    // suspended thread may hold (docs/plugins.md).
    plugin::deliver(plugin::EVENT_RESUME, 0);
    crate::tcp_drain::refill();
    // The gate first: a thread that forks as soon as it runs must not hand a closed gate to its
    // child (whose exec would then wait for a checkpoint that is not coming).
    open_gate();
    threads::resume_all();
    notify_waiters();
    plugin::deliver(plugin::EVENT_RUNNING, 0);
}

/// Barrier: what is queued in a pipe or socket between two processes is read only once neither
/// of them runs. A coordinator that goes away ends the wait (this image is written anyway).
/// Then the TCP connections between processes are drained (tcp_drain.rs).
fn wait_all_suspended(stream: &mut TcpStream, generation: u64) {
    let mine = crate::tcp_drain::my_ends(&[stream.as_raw_fd(), crate::pids::MAP_FD.load(Acquire)]);
    let tcp = mine.iter().map(|(_, e)| e.clone()).collect();
    if protocol::send(stream, &ToCoord::Suspended { generation, tcp }).is_err() {
        return;
    }
    loop {
        match protocol::recv::<_, FromCoord>(stream) {
            Ok(FromCoord::AllSuspended { generation: g, tcp }) if g == generation => {
                crate::tcp_drain::drain(stream, generation, &mine, &tcp);
                return;
            }
            Ok(FromCoord::Kill) => kill_process(),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// In the restored process, on the checkpoint thread: dmtcp_restart put a fresh coordinator
/// connection at our fd; the loader's copy is still mapped and the other threads wait.
fn after_restart(stream: &mut TcpStream) {
    // Before anything allocates (see alloc.rs).
    crate::ALLOC.forget_unsaved_chunks();
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dmtcp_ckpt".as_ptr()) };
    let me = dmtcp_arch::sys::gettid();
    crate::exec::note_owner();
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
    NUM_RESTARTS.fetch_add(1, AcqRel);
    crate::restart_settings::apply(info.settings_fd);
    plugin::deliver(plugin::EVENT_RESTART, 1);
    // The threads still block every signal: timers may fire and signals wait until they run.
    crate::timers::restore();
    open_gate();
    threads::release_restored();
    notify_waiters();
    plugin::deliver(plugin::EVENT_RUNNING, 1);
}
