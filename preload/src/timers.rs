//! Interval timers, POSIX timers and pending signals: kernel state outside memory, which a
//! restart (a new process) would lose.
//!
//! Where it runs: both entry points run on the checkpoint thread while every application thread
//! is parked in the checkpoint signal handler. [`save`] runs after the threads are suspended and
//! before the image is written; its results live in a static, so the restored process finds them
//! again in its memory. [`restore`] runs in the restored process, after every restored thread has
//! checked in and before they are released. A parked thread may hold any lock of glibc: no glibc
//! function that locks or mallocs is called here. The kernel is reached with raw syscalls; /proc
//! is read with std::fs (plain open/read; std allocates through our own allocator, alloc.rs).
//!
//! What is saved and put back:
//! - ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF (alarm() is ITIMER_REAL): time left and period.
//! - POSIX timers (timer_create): listed from /proc/self/timers (id, signal, sigev_value, how
//!   they notify, clock), read with timer_gettime, and recreated under their old ids with
//!   prctl(PR_TIMER_CREATE_RESTORE_IDS) (Linux 6.16). Without it, in id order, disarmed fillers
//!   holding the ids below each one (the kernel hands ids out counting up), and one warning where
//!   an id still differs. A timer notifying one thread (SIGEV_THREAD_ID) follows that thread to
//!   its new tid; CPU-time clocks of this process and of its threads are renumbered.
//! - Pending signals: the process's (ShdPnd, those every application thread blocks) and each
//!   parked thread's own (SigPnd, those it blocks), sent again before the threads run: they
//!   block every signal until they return from the handler and get their own masks back. A
//!   pending signal of a POSIX timer is queued again as SI_TIMER with the timer's value and new
//!   id. Of a real-time signal queued several times, one instance survives.
//!
//! Not restored: overrun counts, a thread CPU-time timer created with CLOCK_THREAD_CPUTIME_ID
//! (its thread is not known: it is recreated on the checkpoint thread's clock, with a warning),
//! timers notifying a thread that is not in the image (with a warning). SIGEV_THREAD timers are
//! libdmtcp's own (thread_timers.rs: they signal a helper thread that is in the image); a glibc
//! one (glibc before 2.34, or made before libdmtcp started), whose helper thread is not in the
//! image, is made again but its expirations run no function (with a warning). Under qemu-user /proc/self/timers lists the emulator's host
//! timers, which the program cannot read: POSIX timers are then not saved (with a warning); the
//! host's pending sets do not show the emulated program's pending signals either.

use crate::{config, threads};
use core::cell::UnsafeCell;
use dmtcp_arch::sys;
use dmtcp_layout::MAX_THREADS;
use libc::c_long;
use syscalls::{syscall2, syscall3, syscall4, Errno, Sysno};

/// Most POSIX timers saved per process; more are dropped with a warning.
pub const MAX_TIMERS: usize = 64;

const PR_TIMER_CREATE_RESTORE_IDS: usize = 77;
const PR_TIMER_CREATE_RESTORE_IDS_OFF: usize = 0;
const PR_TIMER_CREATE_RESTORE_IDS_ON: usize = 1;
const PR_TIMER_CREATE_RESTORE_IDS_GET: usize = 2;

const SIGEV_SIGNAL: i32 = 0;
const SIGEV_NONE: i32 = 1;
const SIGEV_THREAD: i32 = 2;
const SIGEV_THREAD_ID: i32 = 4;
const SI_TIMER: i32 = -2;
/// The signal glibc's SIGEV_THREAD timers send to its helper thread (SIGCANCEL, __SIGRTMIN).
const GLIBC_SIGTIMER: i32 = 32;
const CLOCK_MONOTONIC: i32 = 1;
const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
/// In an encoded CPU-time clock id: the clock is a thread's (else a process's).
const CPUCLOCK_PERTHREAD: i32 = 4;
/// In an encoded clock id: a dynamic clock opened as a file descriptor (CLOCKFD).
const CLOCKFD: i32 = 3;
/// Fillers the id-order fallback may hold at once (each is a disarmed kernel timer).
const MAX_FILLERS: usize = 1024;

/// The kernel's `struct itimerval` / `struct itimerspec` (interval first, then value) with native
/// longs: microseconds for getitimer, nanoseconds for timer_gettime. The 32-bit ABIs use the
/// syscalls with 32-bit times, which is fine for relative times.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct KTimer {
    interval_sec: c_long,
    interval_sub: c_long,
    value_sec: c_long,
    value_sub: c_long,
}

impl KTimer {
    const ZERO: KTimer = KTimer { interval_sec: 0, interval_sub: 0, value_sec: 0, value_sub: 0 };

    fn armed(&self) -> bool {
        self.value_sec != 0 || self.value_sub != 0
    }
}

/// One entry of /proc/self/timers (fs/proc/base.c, show_timer).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ProcTimer {
    id: i32,
    signo: i32,
    /// sigev_value as the kernel prints it (sival_ptr, in hex).
    value: u64,
    /// SIGEV_SIGNAL, SIGEV_NONE or SIGEV_THREAD, with SIGEV_THREAD_ID or'ed in.
    notify: i32,
    /// The pid, or with SIGEV_THREAD_ID the tid, signalled.
    target: u32,
    clock: i32,
}

impl ProcTimer {
    const EMPTY: ProcTimer = ProcTimer { id: 0, signo: 0, value: 0, notify: 0, target: 0, clock: 0 };

    fn signals_one_thread(&self) -> bool {
        self.notify & SIGEV_THREAD_ID != 0
    }

    fn sends_signal(&self) -> bool {
        self.notify & !SIGEV_THREAD_ID != SIGEV_NONE
    }
}

#[derive(Clone, Copy)]
struct SavedTimer {
    proc: ProcTimer,
    spec: KTimer,
}

/// A parked thread at checkpoint time: its tid, the address where the kernel keeps its tid (the
/// restart writes the new tid there), and the signals pending on it alone.
#[derive(Clone, Copy)]
struct SavedThread {
    tid: u32,
    tid_address: usize,
    pending: u64,
}

struct Saved {
    valid: bool,
    pid: u32,
    ckpt_tid: u32,
    /// PR_TIMER_CREATE_RESTORE_IDS_GET at checkpoint time (-1: the kernel has no such prctl).
    restore_ids_mode: i32,
    itimers: [KTimer; 3],
    timers: [SavedTimer; MAX_TIMERS],
    num_timers: usize,
    shared_pending: u64,
    threads: [SavedThread; MAX_THREADS],
    num_threads: usize,
}

struct SavedCell(UnsafeCell<Saved>);
// SAFETY: only the checkpoint thread touches it: in save() while the others are parked, and in
// restore() before the restored threads are released; one checkpoint thread per process.
unsafe impl Sync for SavedCell {}

static SAVED: SavedCell = SavedCell(UnsafeCell::new(Saved {
    valid: false,
    pid: 0,
    ckpt_tid: 0,
    restore_ids_mode: -1,
    itimers: [KTimer::ZERO; 3],
    timers: [SavedTimer { proc: ProcTimer::EMPTY, spec: KTimer::ZERO }; MAX_TIMERS],
    num_timers: 0,
    shared_pending: 0,
    threads: [SavedThread { tid: 0, tid_address: 0, pending: 0 }; MAX_THREADS],
    num_threads: 0,
}));

const ITIMERS: [i32; 3] = [libc::ITIMER_REAL, libc::ITIMER_VIRTUAL, libc::ITIMER_PROF];

fn warn(msg: &str) {
    if !config::get().quiet {
        eprintln!("[dmtcp] {msg}");
    }
}

fn sig_bit(sig: i32) -> u64 {
    1u64 << (sig - 1)
}

/// The signals of a 64-bit pending set, lowest first.
fn signals(mask: u64) -> impl Iterator<Item = i32> {
    (1..=64).filter(move |&s| mask & sig_bit(s) != 0)
}

/// Signals never sent again: the checkpoint signal (a second one may be pending on a thread that
/// was already parked), and the two that cannot be blocked.
fn resendable(mask: u64) -> u64 {
    mask & !(sig_bit(config::get().ckpt_signal) | sig_bit(libc::SIGKILL) | sig_bit(libc::SIGSTOP))
}

// ----- /proc parsers

/// The POSIX timers of /proc/self/timers, into `out`; returns how many were stored and how many
/// the file lists (more than `out` holds are counted, not stored).
fn parse_timers(text: &str, out: &mut [ProcTimer]) -> (usize, usize) {
    let (mut stored, mut listed) = (0, 0);
    let mut cur: Option<ProcTimer> = None;
    let mut flush = |t: Option<ProcTimer>, stored: &mut usize, listed: &mut usize| {
        if let Some(t) = t {
            if *stored < out.len() {
                out[*stored] = t;
                *stored += 1;
            }
            *listed += 1;
        }
    };
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else { continue };
        let val = val.trim();
        if key == "ID" {
            flush(cur.take(), &mut stored, &mut listed);
            cur = val.parse().ok().map(|id| ProcTimer { id, ..ProcTimer::EMPTY });
            continue;
        }
        let Some(t) = cur.as_mut() else { continue };
        match key {
            // "<signo>/<sival_ptr in hex>"
            "signal" => {
                let (signo, value) = val.split_once('/').unwrap_or((val, "0"));
                t.signo = signo.trim().parse().unwrap_or(0);
                let hex = value.trim().trim_start_matches("0x");
                t.value = u64::from_str_radix(hex, 16).unwrap_or(0); // "(null)" is 0
            }
            // "<signal|none|thread>/<pid|tid>.<number>"
            "notify" => {
                let (kind, who) = val.split_once('/').unwrap_or((val, ""));
                t.notify = match kind {
                    "none" => SIGEV_NONE,
                    "thread" => SIGEV_THREAD,
                    _ => SIGEV_SIGNAL,
                };
                let (space, n) = who.split_once('.').unwrap_or((who, "0"));
                if space == "tid" {
                    t.notify |= SIGEV_THREAD_ID;
                }
                t.target = n.parse().unwrap_or(0);
            }
            "ClockID" => t.clock = val.parse().unwrap_or(0),
            _ => {}
        }
    }
    flush(cur.take(), &mut stored, &mut listed);
    (stored, listed)
}

/// A signal set line of /proc/<pid>/status ("ShdPnd:\t0000000000000200").
fn status_mask(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

// ----- Raw syscalls

fn getitimer(which: i32) -> Result<KTimer, Errno> {
    let mut t = KTimer::ZERO;
    // SAFETY: getitimer writes one struct itimerval, which KTimer is.
    unsafe { syscall2(Sysno::getitimer, which as usize, &mut t as *mut KTimer as usize) }.map(|_| t)
}

fn setitimer(which: i32, t: &KTimer) -> Result<(), Errno> {
    // SAFETY: setitimer reads one struct itimerval; no old value is asked for.
    unsafe { syscall3(Sysno::setitimer, which as usize, t as *const KTimer as usize, 0) }.map(|_| ())
}

fn timer_gettime(id: i32) -> Result<KTimer, Errno> {
    let mut t = KTimer::ZERO;
    // SAFETY: timer_gettime writes one struct itimerspec, which KTimer is.
    unsafe { syscall2(Sysno::timer_gettime, id as usize, &mut t as *mut KTimer as usize) }.map(|_| t)
}

fn timer_settime(id: i32, t: &KTimer) -> Result<(), Errno> {
    // SAFETY: timer_settime reads one struct itimerspec (relative: flags 0); no old value.
    unsafe { syscall4(Sysno::timer_settime, id as usize, 0, t as *const KTimer as usize, 0) }.map(|_| ())
}

/// timer_create; with PR_TIMER_CREATE_RESTORE_IDS on, the kernel takes the id wanted from `*id`.
fn timer_create(clock: i32, sev: &libc::sigevent, id: &mut i32) -> Result<(), Errno> {
    // SAFETY: the kernel reads one struct sigevent and reads/writes one int (the kernel's
    // timer_t) through the third argument.
    unsafe { syscall3(Sysno::timer_create, clock as usize, sev as *const libc::sigevent as usize, id as *mut i32 as usize) }.map(|_| ())
}

fn timer_delete(id: i32) {
    // SAFETY: plain integer argument.
    let _ = unsafe { syscalls::syscall1(Sysno::timer_delete, id as usize) };
}

fn prctl_restore_ids(arg: usize) -> Result<usize, Errno> {
    // SAFETY: integer arguments only; the other arguments must be 0.
    unsafe { syscalls::syscall5(Sysno::prctl, PR_TIMER_CREATE_RESTORE_IDS, arg, 0, 0, 0) }
}

/// `struct siginfo` as a POSIX timer queues it (the `_timer` member: timer id, overrun,
/// sigev_value), padded to the kernel's 128 bytes. The member starts after three ints, aligned
/// like a pointer, as in the kernel's layout on every CPU.
#[repr(C)]
#[derive(Clone, Copy)]
struct TimerInfo {
    signo: i32,
    errno: i32,
    code: i32,
    timer: TimerFields,
}

/// `_sifields._timer` of the kernel's siginfo.
#[repr(C)]
#[derive(Clone, Copy)]
struct TimerFields {
    tid: i32,
    overrun: i32,
    value: usize,
}

#[repr(C)]
union Siginfo {
    info: TimerInfo,
    raw: [u8; 128],
}

/// Queue `sig` as the POSIX timer `id` with `value` would: to the process, or to one thread.
fn queue_timer_signal(sig: i32, id: i32, value: usize, tid: Option<u32>) -> Result<(), Errno> {
    let mut si = Siginfo { raw: [0; 128] };
    si.info = TimerInfo { signo: sig, errno: 0, code: SI_TIMER, timer: TimerFields { tid: id, overrun: 0, value } };
    let p = &si as *const Siginfo as usize;
    let pid = sys::getpid() as usize;
    // SAFETY: the kernel reads 128 bytes of siginfo; SI_TIMER is a negative code, which a process
    // may queue to itself and its threads.
    unsafe {
        match tid {
            None => syscall3(Sysno::rt_sigqueueinfo, pid, sig as usize, p),
            Some(t) => syscall4(Sysno::rt_tgsigqueueinfo, pid, t as usize, sig as usize, p),
        }
    }
    .map(|_| ())
}

fn kill_self(sig: i32) -> Result<(), Errno> {
    // SAFETY: kill(2) with integer arguments, to this process.
    unsafe { syscall2(Sysno::kill, sys::getpid() as usize, sig as usize) }.map(|_| ())
}

// ----- save

/// On the checkpoint thread, all other threads parked, before the image is written.
pub fn save() {
    // SAFETY: see SavedCell: this thread alone uses SAVED, and holds no other reference to it.
    let s = unsafe { &mut *SAVED.0.get() };
    s.valid = false;
    s.pid = sys::getpid();
    s.ckpt_tid = sys::gettid();
    s.restore_ids_mode = prctl_restore_ids(PR_TIMER_CREATE_RESTORE_IDS_GET).map_or(-1, |m| i32::from(m != 0));
    for (slot, &which) in s.itimers.iter_mut().zip(ITIMERS.iter()) {
        *slot = getitimer(which).unwrap_or(KTimer::ZERO);
    }

    let mut listed = [ProcTimer::EMPTY; MAX_TIMERS];
    let text = std::fs::read_to_string("/proc/self/timers").unwrap_or_default();
    let (stored, total) = parse_timers(&text, &mut listed);
    s.num_timers = 0;
    let mut unreadable = 0;
    for t in &listed[..stored] {
        match timer_gettime(t.id) {
            Ok(spec) => {
                s.timers[s.num_timers] = SavedTimer { proc: *t, spec };
                s.num_timers += 1;
            }
            Err(_) => unreadable += 1,
        }
    }
    if total > stored {
        warn(&format!("this process has {total} POSIX timers; only {MAX_TIMERS} are saved"));
    }
    if unreadable > 0 {
        warn(&format!(
            "{unreadable} POSIX timer(s) listed in /proc/self/timers cannot be read (timer_gettime fails: qemu-user?); they will not be restored"
        ));
    }

    // Only signals that wait because they are blocked: one pending for a moment on its way to a
    // thread that takes it (a parked thread still runs application handlers) is delivered by
    // the running process, and its handler's effects may already be in the image.
    let mut blocked_by_all = !0u64;
    s.num_threads = 0;
    for r in threads::parked_records() {
        if s.num_threads == MAX_THREADS {
            break;
        }
        let status = std::fs::read_to_string(format!("/proc/self/task/{}/status", r.tid)).unwrap_or_default();
        let blocked = status_mask(&status, "SigBlk:").unwrap_or(0);
        blocked_by_all &= blocked;
        let pending = resendable(status_mask(&status, "SigPnd:").unwrap_or(0) & blocked);
        s.threads[s.num_threads] = SavedThread { tid: r.tid, tid_address: r.tid_address as usize, pending };
        s.num_threads += 1;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.shared_pending = resendable(status_mask(&status, "ShdPnd:").unwrap_or(0) & blocked_by_all);
    s.valid = true;
}

// ----- restore

/// The tid a thread of the checkpointed process has now: the checkpoint thread is this one; a
/// restored thread's tid is where the kernel keeps it (restart set the tid address and wrote the
/// new tid there).
fn new_tid(s: &Saved, old: u32) -> Option<u32> {
    if old == s.ckpt_tid {
        return Some(sys::gettid());
    }
    let t = s.threads[..s.num_threads].iter().find(|t| t.tid == old)?;
    if t.tid_address == 0 {
        return (old == s.pid).then(sys::getpid);
    }
    // SAFETY: the address the kernel reported (PR_GET_TID_ADDRESS) for this thread: a u32 in
    // its thread descriptor, in restored memory, written by the restart before the thread
    // checked in.
    let tid = unsafe { core::ptr::read_volatile(t.tid_address as *const u32) };
    (tid != 0).then_some(tid)
}

/// A clock id of the checkpointed process in the restored one: CPU-time clocks encode a pid or
/// tid (`~id << 3 | kind`). None: the thread it names is gone.
fn new_clock(s: &Saved, clock: i32) -> Option<i32> {
    if clock >= 0 || clock & 3 == CLOCKFD {
        return Some(clock);
    }
    let id = !(clock >> 3) as u32;
    if id == 0 {
        return Some(clock); // the calling process or thread
    }
    let new = if clock & CPUCLOCK_PERTHREAD != 0 {
        new_tid(s, id)?
    } else if id == s.pid {
        sys::getpid()
    } else {
        return Some(clock); // another process's clock: left as it is
    };
    Some((!(new as i32)).wrapping_shl(3) | (clock & 7))
}

/// How the POSIX timers came back, for one warning line each.
#[derive(Default)]
struct Report {
    renumbered: usize,
    first_renumbered: (i32, i32),
    failed: usize,
    first_failure: String,
}

impl Report {
    fn fail(&mut self, what: String) {
        if self.failed == 0 {
            self.first_failure = what;
        }
        self.failed += 1;
    }
}

/// Create `t` again with the kernel choosing the id: in id order, disarmed fillers hold the ids
/// below the one wanted (the kernel hands out ids counting up; qemu-user the lowest free one).
fn create_in_order(clock: i32, sev: &libc::sigevent, want: i32, fillers: &mut Vec<i32>) -> Result<i32, Errno> {
    loop {
        let mut id = 0;
        timer_create(clock, sev, &mut id)?;
        if id >= want || fillers.len() >= MAX_FILLERS {
            return Ok(id);
        }
        fillers.push(id);
    }
}

/// Recreate the POSIX timers; returns each one's new id (-1: not recreated).
fn restore_posix_timers(s: &Saved, report: &mut Report) -> [i32; MAX_TIMERS] {
    let mut new_ids = [-1i32; MAX_TIMERS];
    if s.num_timers == 0 {
        return new_ids;
    }
    let mut order: Vec<usize> = (0..s.num_timers).collect();
    order.sort_by_key(|&i| s.timers[i].proc.id);
    let mut exact = prctl_restore_ids(PR_TIMER_CREATE_RESTORE_IDS_ON).is_ok();
    let mut fillers = Vec::new();
    for i in order {
        let SavedTimer { proc: t, spec } = s.timers[i];
        // SAFETY: sigevent is plain data, for which all-zero is valid; fields are set below.
        let mut sev: libc::sigevent = unsafe { core::mem::zeroed() };
        sev.sigev_value = libc::sigval { sival_ptr: t.value as usize as *mut libc::c_void };
        sev.sigev_signo = t.signo;
        sev.sigev_notify = t.notify;
        if t.signals_one_thread() {
            let tid = match new_tid(s, t.target) {
                Some(tid) => tid,
                // glibc's SIGEV_THREAD timer: its helper thread (made inside timer_create, not
                // by a pthread_create we see) is not in the image. The timer is made again on
                // the checkpoint thread, which blocks every signal: the program's timer_settime
                // and timer_delete on it keep working (vim arms one at every redraw), but an
                // expiry runs no function.
                None if t.signo == GLIBC_SIGTIMER => {
                    warn(&format!("POSIX timer {}: a SIGEV_THREAD timer of glibc; after the restart its expirations run no function", t.id));
                    sys::gettid()
                }
                None => {
                    report.fail(format!("timer {} signals thread {}, which is not in the image", t.id, t.target));
                    continue;
                }
            };
            sev.sigev_notify_thread_id = tid as i32;
        }
        let Some(mut clock) = new_clock(s, t.clock) else {
            report.fail(format!("timer {} runs on the CPU clock of a thread not in the image", t.id));
            continue;
        };
        if clock == CLOCK_THREAD_CPUTIME_ID {
            warn(&format!("POSIX timer {}: its thread CPU-time clock's thread is not known; it now counts the checkpoint thread's time", t.id));
        }
        let mut created = None;
        if exact {
            let mut id = t.id;
            match timer_create(clock, &sev, &mut id) {
                Ok(()) if id == t.id => created = Some(id),
                Ok(()) => {
                    timer_delete(id);
                    exact = false;
                }
                Err(_) => exact = false,
            }
            if !exact {
                // A kernel (or emulator) that accepted the prctl but did not give the id: count instead.
                let _ = prctl_restore_ids(PR_TIMER_CREATE_RESTORE_IDS_OFF);
            }
        }
        let id = match created {
            Some(id) => id,
            None => match create_in_order(clock, &sev, t.id, &mut fillers) {
                Ok(id) => id,
                Err(e) if clock < 0 => {
                    // A CPU-time clock the kernel refuses now: keep the timer on the monotonic clock.
                    clock = CLOCK_MONOTONIC;
                    match create_in_order(clock, &sev, t.id, &mut fillers) {
                        Ok(id) => id,
                        Err(_) => {
                            report.fail(format!("timer {}: timer_create: {e}", t.id));
                            continue;
                        }
                    }
                }
                Err(e) => {
                    report.fail(format!("timer {}: timer_create: {e}", t.id));
                    continue;
                }
            },
        };
        if id != t.id {
            if report.renumbered == 0 {
                report.first_renumbered = (t.id, id);
            }
            report.renumbered += 1;
        }
        if let Err(e) = timer_settime(id, &spec) {
            report.fail(format!("timer {}: timer_settime: {e}", t.id));
        }
        new_ids[i] = id;
    }
    for id in fillers {
        timer_delete(id);
    }
    if exact {
        let mode = if s.restore_ids_mode == 1 { PR_TIMER_CREATE_RESTORE_IDS_ON } else { PR_TIMER_CREATE_RESTORE_IDS_OFF };
        let _ = prctl_restore_ids(mode);
    }
    new_ids
}

/// Send the signals pending at checkpoint time again: the process's to the process, each
/// thread's to its new tid. A timer's signal is queued as that timer would queue it.
fn resend_pending(s: &Saved, new_ids: &[i32; MAX_TIMERS]) {
    let timer_for = |sig: i32, thread: Option<u32>| {
        (0..s.num_timers).find_map(|i| {
            let t = &s.timers[i].proc;
            let same_target = match thread {
                None => !t.signals_one_thread(),
                Some(tid) => t.signals_one_thread() && t.target == tid,
            };
            (new_ids[i] >= 0 && t.sends_signal() && t.signo == sig && same_target).then_some((new_ids[i], t.value as usize))
        })
    };
    let mut failed = 0;
    for sig in signals(s.shared_pending) {
        let r = match timer_for(sig, None) {
            Some((id, value)) => queue_timer_signal(sig, id, value, None),
            None => kill_self(sig),
        };
        failed += usize::from(r.is_err());
    }
    for t in &s.threads[..s.num_threads] {
        if t.pending == 0 {
            continue;
        }
        let Some(tid) = new_tid(s, t.tid) else {
            failed += signals(t.pending).count();
            continue;
        };
        for sig in signals(t.pending) {
            let r = match timer_for(sig, Some(t.tid)) {
                Some((id, value)) => queue_timer_signal(sig, id, value, Some(tid)),
                None => sys::tgkill(sys::getpid(), tid, sig),
            };
            failed += usize::from(r.is_err());
        }
    }
    if failed > 0 {
        warn(&format!("{failed} signal(s) pending at checkpoint time could not be sent again"));
    }
}

/// In the restored process, on the checkpoint thread, before the restored threads are released.
pub fn restore() {
    // SAFETY: see SavedCell: this thread alone uses SAVED; the data came back with the image.
    let s = unsafe { &*SAVED.0.get() };
    if !s.valid {
        return;
    }
    for (t, &which) in s.itimers.iter().zip(ITIMERS.iter()) {
        if t.armed() {
            if let Err(e) = setitimer(which, t) {
                warn(&format!("interval timer {which} not restored: setitimer: {e}"));
            }
        }
    }
    let mut report = Report::default();
    let new_ids = restore_posix_timers(s, &mut report);
    if report.renumbered > 0 {
        let (old, new) = report.first_renumbered;
        warn(&format!(
            "{} POSIX timer(s) got new ids (timer {old} is now {new}): this kernel cannot recreate a timer with its id (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.16)",
            report.renumbered
        ));
    }
    if report.failed > 0 {
        warn(&format!("{} POSIX timer(s) not restored ({})", report.failed, report.first_failure));
    }
    resend_pending(s, &new_ids);
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMERS: &str = "ID: 0\nsignal: 34/000000000000004d\nnotify: signal/pid.4242\nClockID: 1\n\
                          ID: 3\nsignal: 14/0000000000000000\nnotify: none/pid.4242\nClockID: 0\n\
                          ID: 7\nsignal: 35/00007ffd12345678\nnotify: signal/tid.4250\nClockID: -6\n";

    #[test]
    fn parses_proc_timers() {
        let mut out = [ProcTimer::EMPTY; 4];
        assert_eq!(parse_timers(TIMERS, &mut out), (3, 3));
        assert_eq!(out[0], ProcTimer { id: 0, signo: 34, value: 0x4d, notify: SIGEV_SIGNAL, target: 4242, clock: 1 });
        assert_eq!(out[1], ProcTimer { id: 3, signo: 14, value: 0, notify: SIGEV_NONE, target: 4242, clock: 0 });
        assert_eq!(out[2], ProcTimer { id: 7, signo: 35, value: 0x7ffd_1234_5678, notify: SIGEV_SIGNAL | SIGEV_THREAD_ID, target: 4250, clock: -6 });
        assert!(out[2].signals_one_thread() && out[2].sends_signal() && !out[1].sends_signal());
    }

    #[test]
    fn counts_timers_beyond_the_table_and_reads_old_formats() {
        let mut out = [ProcTimer::EMPTY; 2];
        assert_eq!(parse_timers(TIMERS, &mut out), (2, 3));
        let old = "ID: 1\nsignal: 14/(null)\nnotify: thread/pid.9\nClockID: 0\n";
        assert_eq!(parse_timers(old, &mut out), (1, 1));
        assert_eq!(out[0], ProcTimer { id: 1, signo: 14, value: 0, notify: SIGEV_THREAD, target: 9, clock: 0 });
        assert_eq!(parse_timers("", &mut out), (0, 0));
    }

    #[test]
    fn reads_pending_sets_from_status() {
        let status = "Name:\tx\nSigQ:\t1/1000\nSigPnd:\t0000000008000000\nShdPnd:\t0000000000000200\nSigBlk:\t0\n";
        assert_eq!(status_mask(status, "ShdPnd:"), Some(0x200));
        assert_eq!(status_mask(status, "SigPnd:"), Some(0x800_0000));
        assert_eq!(signals(0x200 | 0x800_0000).collect::<Vec<_>>(), vec![libc::SIGUSR1, libc::SIGWINCH]);
        assert_eq!(status_mask("Name:\tx\n", "ShdPnd:"), None);
    }

    #[test]
    fn cpu_clocks_follow_the_process() {
        let mut s = Saved {
            valid: true,
            pid: 100,
            ckpt_tid: 101,
            restore_ids_mode: 0,
            itimers: [KTimer::ZERO; 3],
            timers: [SavedTimer { proc: ProcTimer::EMPTY, spec: KTimer::ZERO }; MAX_TIMERS],
            num_timers: 0,
            shared_pending: 0,
            threads: [SavedThread { tid: 0, tid_address: 0, pending: 0 }; MAX_THREADS],
            num_threads: 0,
        };
        let me = sys::getpid();
        // The process CPU clock of pid 100 (CPUCLOCK_SCHED): now this process's.
        let old = (!100i32).wrapping_shl(3) | 2;
        assert_eq!(new_clock(&s, old), Some((!(me as i32)).wrapping_shl(3) | 2));
        // Plain and "self" clocks are left alone, as are another process's.
        assert_eq!(new_clock(&s, CLOCK_MONOTONIC), Some(CLOCK_MONOTONIC));
        assert_eq!(new_clock(&s, -6), Some(-6));
        let other = (!555i32).wrapping_shl(3) | 2;
        assert_eq!(new_clock(&s, other), Some(other));
        // A thread clock of a thread the image does not have: gone.
        assert_eq!(new_clock(&s, (!777i32).wrapping_shl(3) | CPUCLOCK_PERTHREAD | 2), None);
        // The checkpoint thread's clock: this thread's.
        s.ckpt_tid = 777;
        let mine = (!(sys::gettid() as i32)).wrapping_shl(3) | CPUCLOCK_PERTHREAD | 2;
        assert_eq!(new_clock(&s, (!777i32).wrapping_shl(3) | CPUCLOCK_PERTHREAD | 2), Some(mine));
    }
}
