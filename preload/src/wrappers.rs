//! libc functions libdmtcp.so wraps so the application cannot take away the checkpoint signal:
//! blocking it would stop a thread from ever parking; replacing its handler would break
//! checkpointing. Each wrapper calls the next definition (glibc's) found with dlsym(RTLD_NEXT).
//!
//! Wrappers run on the application's threads, possibly in its signal handlers: no allocation.

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering::*};
use libc::{c_int, sigset_t};

/// The checkpoint signal, once libdmtcp.so is initialised (0 = not active: wrap nothing).
pub static CKPT_SIGNAL: AtomicI32 = AtomicI32::new(0);

static REAL_SIGPROCMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_PTHREAD_SIGMASK: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGACTION: AtomicUsize = AtomicUsize::new(0);
static REAL_SIGNAL: AtomicUsize = AtomicUsize::new(0);

fn real(slot: &AtomicUsize, name: &core::ffi::CStr) -> usize {
    let f = slot.load(Acquire);
    if f != 0 {
        return f;
    }
    // SAFETY: dlsym with a NUL-terminated name; RTLD_NEXT finds glibc's definition.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) } as usize;
    slot.store(f, Release);
    f
}

/// Resolve every wrapped function up front: dlsym takes a lock, so it must not first run while
/// threads are stopped.
pub fn resolve_all() {
    real(&REAL_SIGPROCMASK, c"sigprocmask");
    real(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask");
    real(&REAL_SIGACTION, c"sigaction");
    real(&REAL_SIGNAL, c"signal");
}

type MaskFn = unsafe extern "C" fn(c_int, *const sigset_t, *mut sigset_t) -> c_int;
type SigactionFn = unsafe extern "C" fn(c_int, *const libc::sigaction, *mut libc::sigaction) -> c_int;
type SignalFn = unsafe extern "C" fn(c_int, libc::sighandler_t) -> libc::sighandler_t;

/// Call a sigmask-like function with the checkpoint signal removed from a blocking set.
unsafe fn masked(f: usize, how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int {
    if f == 0 {
        return -1;
    }
    // SAFETY: `f` is glibc's function of this type.
    let f: MaskFn = unsafe { core::mem::transmute(f) };
    let sig = CKPT_SIGNAL.load(Relaxed);
    if set.is_null() || sig == 0 || how == libc::SIG_UNBLOCK {
        // SAFETY: arguments passed through unchanged.
        return unsafe { f(how, set, old) };
    }
    // SAFETY: the caller passed a valid set; we edit a copy.
    let mut copy = unsafe { *set };
    // SAFETY: copy is a valid sigset_t.
    unsafe { libc::sigdelset(&mut copy, sig) };
    // SAFETY: as above, with our copy.
    unsafe { f(how, &copy, old) }
}

/// # Safety
/// Same contract as libc's sigprocmask.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigprocmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { masked(real(&REAL_SIGPROCMASK, c"sigprocmask"), how, set, old) }
}

/// # Safety
/// Same contract as libc's pthread_sigmask.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_sigmask(how: c_int, set: *const sigset_t, old: *mut sigset_t) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { masked(real(&REAL_PTHREAD_SIGMASK, c"pthread_sigmask"), how, set, old) }
}

/// # Safety
/// Same contract as libc's sigaction.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigaction(sig: c_int, act: *const libc::sigaction, old: *mut libc::sigaction) -> c_int {
    let f = real(&REAL_SIGACTION, c"sigaction");
    if f == 0 {
        return -1;
    }
    // SAFETY: glibc's sigaction.
    let f: SigactionFn = unsafe { core::mem::transmute(f) };
    if sig != 0 && sig == CKPT_SIGNAL.load(Relaxed) {
        // The checkpoint signal is ours: report the default action and keep our handler.
        if !old.is_null() {
            // SAFETY: `old` points at a writable struct sigaction.
            unsafe { core::ptr::write_bytes(old, 0, 1) };
        }
        return 0;
    }
    // SAFETY: forwarded contract.
    unsafe { f(sig, act, old) }
}

/// # Safety
/// Same contract as libc's signal.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn signal(sig: c_int, handler: libc::sighandler_t) -> libc::sighandler_t {
    if sig != 0 && sig == CKPT_SIGNAL.load(Relaxed) {
        return libc::SIG_DFL;
    }
    let f = real(&REAL_SIGNAL, c"signal");
    if f == 0 {
        return libc::SIG_ERR;
    }
    // SAFETY: glibc's signal.
    let f: SignalFn = unsafe { core::mem::transmute(f) };
    // SAFETY: forwarded contract.
    unsafe { f(sig, handler) }
}

/// Install the checkpoint handler through glibc's real sigaction (it supplies the restorer).
pub fn install_checkpoint_handler(sig: c_int, handler: extern "C" fn(c_int, *mut libc::siginfo_t, *mut libc::c_void)) -> bool {
    let f = real(&REAL_SIGACTION, c"sigaction");
    if f == 0 {
        return false;
    }
    // SAFETY: glibc's sigaction.
    let f: SigactionFn = unsafe { core::mem::transmute(f) };
    // SAFETY: zeroed sigaction is a valid starting point; fields set below.
    let mut act: libc::sigaction = unsafe { core::mem::zeroed() };
    act.sa_sigaction = handler as usize;
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: act is fully initialised.
    unsafe { libc::sigemptyset(&mut act.sa_mask) };
    // SAFETY: valid pointers.
    let ok = unsafe { f(sig, &act, core::ptr::null_mut()) } == 0;
    if ok {
        CKPT_SIGNAL.store(sig, Release);
    }
    ok
}
