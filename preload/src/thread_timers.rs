//! POSIX timers with SIGEV_THREAD notification, made by libdmtcp.so instead of glibc.
//!
//! glibc runs them through a helper thread it creates inside timer_create with every signal
//! blocked: the checkpoint signal cannot park it, so it is not in the image, and after a restart
//! the timers' expirations would reach no one. Ours is an ordinary application thread (made
//! through our pthread_create, checkpointed and restored with the others). Each timer is a
//! kernel timer that signals that thread (SIGEV_THREAD_ID with glibc's SIGTIMER, which no
//! application uses); on each expiry the thread starts a new thread that calls the program's
//! function with its value, as POSIX says. timers.rs recreates the kernel timer after a restart,
//! aimed at the restored helper thread. The timer_t we return is the kernel timer id, which
//! glibc 2.34 and later take for one in timer_settime, timer_gettime, timer_getoverrun and
//! timer_delete; with an older glibc (whose timer_t is always a pointer) glibc's own
//! implementation is used.
//!
//! The wrapper runs on the application's threads (not async-signal-safe, as timer_create is
//! not): it may start the helper thread. The helper allocates only to start notification
//! threads; it never runs in a signal handler.

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering::*};
use dmtcp_arch::sys;
use libc::{c_int, c_void};

const SIGEV_THREAD: c_int = 2;
const SIGEV_THREAD_ID: c_int = 4;
const SI_TIMER: c_int = -2;
/// glibc's SIGTIMER (__SIGRTMIN): reserved for the C library, so no program signal is taken.
const SIGTIMER: c_int = 32;
const MAX_TIMERS: usize = 256;

/// Per slot: the program's function (0: free slot) and its sigval.
static FUNCTION: [AtomicUsize; MAX_TIMERS] = [const { AtomicUsize::new(0) }; MAX_TIMERS];
static VALUE: [AtomicUsize; MAX_TIMERS] = [const { AtomicUsize::new(0) }; MAX_TIMERS];
/// The kernel timer id of each slot (to free the slot when the id is reused).
static KERNEL_ID: [AtomicI32; MAX_TIMERS] = [const { AtomicI32::new(-1) }; MAX_TIMERS];
/// The helper thread's tid (0: not started). It changes with a restart: read it from the
/// restored thread (helper_tid) rather than trusting the saved one.
static HELPER_TID: AtomicI32 = AtomicI32::new(0);
/// 1 once a helper thread is being started.
static STARTING: AtomicI32 = AtomicI32::new(0);
static REAL_TIMER_CREATE: AtomicUsize = AtomicUsize::new(0);

type TimerCreateFn = unsafe extern "C" fn(libc::clockid_t, *mut libc::sigevent, *mut libc::timer_t) -> c_int;
type NotifyFn = extern "C" fn(libc::sigval);

/// Resolve glibc's timer_create (dlsym takes a lock; see wrappers.rs).
pub fn resolve() {
    crate::wrappers::real(&REAL_TIMER_CREATE, c"timer_create");
}

/// glibc 2.34 or later (plain kernel ids are valid timer_t values there).
fn glibc_takes_kernel_ids() -> bool {
    // SAFETY: gnu_get_libc_version returns a static NUL-terminated string.
    let v = unsafe { core::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_bytes();
    let mut parts = v.split(|&c| c == b'.').map(|p| p.iter().take_while(|c| c.is_ascii_digit()).fold(0u32, |n, &c| n * 10 + u32::from(c - b'0')));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 34)
}

fn set_errno(e: c_int) -> c_int {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = e };
    -1
}

/// Where the SIGEV_THREAD function pointer sits in struct sigevent: the union after
/// sigev_value, sigev_signo and sigev_notify, where libc's sigev_notify_thread_id is.
fn notify_function(sev: &libc::sigevent) -> usize {
    let base = sev as *const libc::sigevent as *const u8;
    // SAFETY: the union member starts at sigev_notify_thread_id's offset, word-aligned, and
    // holds `void (*)(sigval_t)` for SIGEV_THREAD.
    unsafe { (base.add(core::mem::offset_of!(libc::sigevent, sigev_notify_thread_id)) as *const usize).read() }
}

/// timer_create(2): SIGEV_THREAD timers are ours (see the module comment).
///
/// # Safety
/// As timer_create(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn timer_create(clock: libc::clockid_t, sev: *mut libc::sigevent, id: *mut libc::timer_t) -> c_int {
    // SAFETY: the caller's sigevent, if any.
    let ours = !sev.is_null()
        && unsafe { (*sev).sigev_notify } == SIGEV_THREAD
        && crate::wrappers::CKPT_SIGNAL.load(Relaxed) != 0
        && glibc_takes_kernel_ids();
    if !ours {
        let f = crate::wrappers::real(&REAL_TIMER_CREATE, c"timer_create");
        if f == 0 {
            return set_errno(libc::ENOSYS);
        }
        // SAFETY: glibc's timer_create with the caller's arguments.
        return unsafe { core::mem::transmute::<usize, TimerCreateFn>(f)(clock, sev, id) };
    }
    if id.is_null() {
        return set_errno(libc::EFAULT);
    }
    // SAFETY: checked non-null above; the caller's sigevent.
    let sev = unsafe { &*sev };
    let function = notify_function(sev);
    if function == 0 {
        return set_errno(libc::EINVAL);
    }
    let Some(tid) = helper_tid() else { return set_errno(libc::EAGAIN) };
    let Some(slot) = FUNCTION.iter().position(|f| f.compare_exchange(0, function, AcqRel, Relaxed).is_ok()) else {
        return set_errno(libc::EAGAIN);
    };
    // SAFETY: sival_ptr is the pointer-sized member of the caller's union sigval.
    VALUE[slot].store(sev.sigev_value.sival_ptr as usize, Release);
    // SAFETY: sigevent is plain data, for which all-zero is valid; fields are set below.
    let mut ksev: libc::sigevent = unsafe { core::mem::zeroed() };
    ksev.sigev_value = libc::sigval { sival_ptr: slot as *mut c_void };
    ksev.sigev_signo = SIGTIMER;
    ksev.sigev_notify = SIGEV_THREAD_ID;
    ksev.sigev_notify_thread_id = tid;
    let mut kid: c_int = -1;
    // SAFETY: the kernel reads one sigevent and writes one int.
    let r = unsafe {
        syscalls::syscall3(syscalls::Sysno::timer_create, clock as usize, &ksev as *const libc::sigevent as usize, &mut kid as *mut c_int as usize)
    };
    match r {
        Ok(_) => {
            // A slot still holding this id belonged to a timer deleted since.
            for (other, k) in KERNEL_ID.iter().enumerate() {
                if other != slot && k.load(Acquire) == kid && k.compare_exchange(kid, -1, AcqRel, Relaxed).is_ok() {
                    FUNCTION[other].store(0, Release);
                }
            }
            KERNEL_ID[slot].store(kid, Release);
            // SAFETY: the caller's timer_t.
            unsafe { *id = kid as usize as libc::timer_t };
            0
        }
        Err(e) => {
            FUNCTION[slot].store(0, Release);
            set_errno(e.into_raw())
        }
    }
}

/// In the child of a fork: no timer and no helper thread came along (POSIX timers are not
/// inherited).
pub fn after_fork_child() {
    for (f, k) in FUNCTION.iter().zip(&KERNEL_ID) {
        f.store(0, Release);
        k.store(-1, Release);
    }
    HELPER_TID.store(0, Release);
    STARTING.store(0, Release);
}

/// The helper thread's current tid, starting it the first time.
fn helper_tid() -> Option<c_int> {
    let tid = HELPER_TID.load(Acquire);
    if tid > 0 && sys::tgkill(sys::getpid(), tid as u32, 0).is_ok() {
        return Some(tid);
    }
    if STARTING.swap(1, AcqRel) == 0 && std::thread::Builder::new().name("dmtcp_timers".into()).spawn(helper).is_err() {
        STARTING.store(0, Release);
        return None;
    }
    for _ in 0..5000 {
        let tid = HELPER_TID.load(Acquire);
        if tid > 0 {
            return Some(tid);
        }
        sys::nanosleep_us(100);
    }
    None
}

/// The helper: waits for the timers' signals and starts each expiry's notification thread.
fn helper() {
    // Every signal blocked (SIGTIMER is taken by sigwaitinfo), but the checkpoint signal, so that
    // the thread is parked, saved and restored like the program's.
    let ckpt = crate::wrappers::CKPT_SIGNAL.load(Relaxed);
    let mask: u64 = !(1u64 << (ckpt - 1));
    let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&mask), None);
    HELPER_TID.store(sys::gettid() as c_int, Release);
    let wait_for: u64 = 1 << (SIGTIMER - 1);
    loop {
        // SAFETY: siginfo_t is plain data; the kernel fills it.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        // SAFETY: waits for SIGTIMER (blocked here) with no timeout; writes `info`.
        let r = unsafe {
            syscalls::syscall4(syscalls::Sysno::rt_sigtimedwait, &wait_for as *const u64 as usize, &mut info as *mut libc::siginfo_t as usize, 0, 8)
        };
        if r.is_err() {
            // EINTR: the checkpoint signal, and after a restart this thread's tid is new.
            HELPER_TID.store(sys::gettid() as c_int, Release);
            continue;
        }
        if info.si_code != SI_TIMER {
            continue;
        }
        // SAFETY: a timer's siginfo carries the sigval we gave the kernel timer (a slot number).
        let slot = unsafe { info.si_value().sival_ptr } as usize;
        let (Some(function), Some(value)) = (FUNCTION.get(slot).map(|f| f.load(Acquire)), VALUE.get(slot).map(|v| v.load(Acquire))) else {
            continue;
        };
        if function == 0 {
            continue;
        }
        // SAFETY: the program gave this function for SIGEV_THREAD: void (*)(union sigval).
        let function: NotifyFn = unsafe { core::mem::transmute::<usize, NotifyFn>(function) };
        let value = libc::sigval { sival_ptr: value as *mut c_void };
        let value = SendSigval(value);
        let _ = std::thread::Builder::new().spawn(move || {
            let value = value;
            // The program's function runs with only SIGTIMER blocked, as glibc's do.
            let mask: u64 = 1 << (SIGTIMER - 1);
            let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&mask), None);
            function(value.0)
        });
    }
}

/// A sigval handed to the notification thread (its pointer is the program's to interpret).
struct SendSigval(libc::sigval);

// SAFETY: the value is only passed on to the program's function, which expects it on another
// thread (POSIX runs SIGEV_THREAD functions on a new thread).
unsafe impl Send for SendSigval {}
