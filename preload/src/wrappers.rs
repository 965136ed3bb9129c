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
static REAL_PTHREAD_CREATE: AtomicUsize = AtomicUsize::new(0);
/// A pthread key whose destructor unregisters a thread when it exits (returns or pthread_exit).
static EXIT_KEY: AtomicUsize = AtomicUsize::new(usize::MAX);

pub(crate) fn real(slot: &AtomicUsize, name: &core::ffi::CStr) -> usize {
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
    real(&REAL_PTHREAD_CREATE, c"pthread_create");
    crate::sysv::resolve();
    crate::pid_wrappers::resolve();
    crate::proc_paths::resolve();
    crate::thread_timers::resolve();
    crate::exec::resolve();
    crate::exec::note_owner();
    // SAFETY: registering a plain extern "C" function to run at exit.
    unsafe { libc::atexit(crate::exec::wait_out_checkpoint) };
    // SAFETY: registering handlers that only touch our allocator lock and atomics.
    unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork_parent), Some(after_fork_child)) };
    let mut key: libc::pthread_key_t = 0;
    // SAFETY: creating a key with a destructor that only touches atomics.
    if unsafe { libc::pthread_key_create(&mut key, Some(on_thread_exit)) } == 0 {
        EXIT_KEY.store(key as usize, Release);
    }
}

extern "C" fn before_fork() {
    crate::ALLOC.lock_for_fork();
}

extern "C" fn after_fork_parent() {
    crate::ALLOC.unlock_after_fork();
}

extern "C" fn after_fork_child() {
    crate::exec::note_owner();
    crate::ALLOC.unlock_after_fork();
    crate::threads::reset_registry(dmtcp_arch::sys::gettid());
    crate::thread_timers::after_fork_child();
    crate::ckpt::after_fork_child();
}

unsafe extern "C" fn on_thread_exit(_value: *mut libc::c_void) {
    crate::threads::unregister_thread(dmtcp_arch::sys::gettid());
    crate::pids::thread_exited(dmtcp_arch::sys::gettid());
}

type StartFn = extern "C" fn(*mut libc::c_void) -> *mut libc::c_void;
type PthreadCreateFn = unsafe extern "C" fn(*mut libc::pthread_t, *const libc::pthread_attr_t, StartFn, *mut libc::c_void) -> c_int;

struct Start {
    routine: StartFn,
    arg: *mut libc::c_void,
}

extern "C" fn thread_trampoline(start: *mut libc::c_void) -> *mut libc::c_void {
    // SAFETY: pthread_create below passes a Box<Start> it leaked for us.
    let start = unsafe { Box::from_raw(start as *mut Start) };
    crate::threads::register_thread(dmtcp_arch::sys::gettid());
    let key = EXIT_KEY.load(Acquire);
    if key != usize::MAX {
        // SAFETY: a non-null value makes the key's destructor run at thread exit.
        unsafe { libc::pthread_setspecific(key as libc::pthread_key_t, core::ptr::dangling::<libc::c_void>()) };
    }
    (start.routine)(start.arg)
}

/// Every thread is registered for checkpointing as it starts.
///
/// # Safety
/// Same contract as libc's pthread_create.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn pthread_create(
    thread: *mut libc::pthread_t,
    attr: *const libc::pthread_attr_t,
    routine: StartFn,
    arg: *mut libc::c_void,
) -> c_int {
    let f = real(&REAL_PTHREAD_CREATE, c"pthread_create");
    if f == 0 {
        return libc::EAGAIN;
    }
    // SAFETY: glibc's pthread_create.
    let f: PthreadCreateFn = unsafe { core::mem::transmute(f) };
    let start = Box::into_raw(Box::new(Start { routine, arg })) as *mut libc::c_void;
    // SAFETY: forwarded contract; the trampoline takes ownership of `start`.
    let r = unsafe { f(thread, attr, thread_trampoline, start) };
    if r != 0 {
        // SAFETY: the thread was not created, so the box is still ours.
        drop(unsafe { Box::from_raw(start as *mut Start) });
    }
    r
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
