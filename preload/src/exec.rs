//! exec(2) waits while a checkpoint is under way, as in DMTCP: a process that replaced its
//! program between the coordinator's request and its own suspension would be missing from the
//! checkpoint (and after a restart its parent would wait for a child that is not there). Inside
//! a window (ckpt::enter_window) the checkpoint in turn waits for the exec to end: the process is
//! then gone from the round, which goes on without it.
//!
//! A vfork child shares its parent's memory, so it must not count itself in the parent's window
//! count (an exec that succeeds never leaves the window); it is not a process of the computation
//! either (no fork handlers ran in it). It is told apart by its pid, which differs from the one
//! this process image recorded. Before it waits, it lets the checkpoint thread read any message
//! the coordinator sent (a checkpoint request on its way would otherwise be missed).
//!
//! exit(3) waits out a checkpoint under way the same way (an atexit handler), without holding
//! checkpoints off while the process ends.
//!
//! glibc's execl, execlp and execle are variadic (not definable in stable Rust) and reach the
//! kernel through glibc's internal execve: they are not held. posix_spawn needs no hold (the
//! caller stays).
//!
//! Runs on the application's threads: no allocation, no locks (a vfork child shares the heap).

use crate::pid_wrappers::next;
use crate::wrappers::real;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use libc::{c_char, c_int};

static EXECVE: AtomicUsize = AtomicUsize::new(0);
static EXECV: AtomicUsize = AtomicUsize::new(0);
static EXECVP: AtomicUsize = AtomicUsize::new(0);
static EXECVPE: AtomicUsize = AtomicUsize::new(0);
static FEXECVE: AtomicUsize = AtomicUsize::new(0);

/// The pid of the process this memory belongs to (set at start-up and in each fork child).
static OWNER_PID: AtomicU32 = AtomicU32::new(0);

/// At start-up, and in the child after fork(): this memory is this process's.
pub fn note_owner() {
    OWNER_PID.store(dmtcp_arch::sys::getpid(), Relaxed);
}

/// Resolve the wrapped functions up front (dlsym takes a lock).
pub fn resolve() {
    real(&EXECVE, c"execve");
    real(&EXECV, c"execv");
    real(&EXECVP, c"execvp");
    real(&EXECVPE, c"execvpe");
    real(&FEXECVE, c"fexecve");
}

type Argv = *const *const c_char;

/// exit(3) (an atexit handler): a process that ends while a checkpoint is under way waits it out
/// first, so that it is in the image as it was and ends after (its parent, restarted, sees it
/// end). It does not hold checkpoints off while it ends: flushing its output may wait for a
/// reader that a new checkpoint stops.
pub extern "C" fn wait_out_checkpoint() {
    if OWNER_PID.load(Relaxed) != dmtcp_arch::sys::getpid() || crate::ckpt::on_ckpt_thread() {
        return;
    }
    wait_for_coordinator_messages();
    crate::ckpt::enter_window();
    crate::ckpt::leave_window();
}

/// Run `exec` held against a checkpoint (see the module comment); returns what it returned
/// (it only returns on failure).
fn held(exec: impl FnOnce() -> c_int) -> c_int {
    if OWNER_PID.load(Relaxed) != dmtcp_arch::sys::getpid() {
        return exec(); // a vfork child
    }
    wait_for_coordinator_messages();
    crate::ckpt::enter_window();
    let r = exec();
    // Keep the failing call's errno for the caller.
    // SAFETY: errno is this thread's own.
    let errno = unsafe { *libc::__errno_location() };
    crate::ckpt::leave_window();
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    r
}

/// A message from the coordinator that the checkpoint thread has not read yet may be the request
/// for a checkpoint that this process is part of: let the thread take it first (then
/// enter_window waits for that checkpoint). Gives up after a second (a stuck thread).
fn wait_for_coordinator_messages() {
    let fd = crate::ckpt::COORD_FD.load(Relaxed);
    for _ in 0..1000 {
        let mut unread: c_int = 0;
        // SAFETY: FIONREAD writes one int; the fd is our coordinator socket (or the call fails).
        if fd < 0 || unsafe { libc::ioctl(fd, libc::FIONREAD, &mut unread) } != 0 || unread == 0 || crate::ckpt::checkpoint_pending() {
            return;
        }
        dmtcp_arch::sys::nanosleep_us(1000);
    }
}

fn enosys() -> c_int {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// # Safety
/// As execve(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execve(path: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = next::<unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int>(&EXECVE, c"execve") else { return enosys() };
    // SAFETY: glibc's execve with the caller's arguments.
    held(|| unsafe { f(path, argv, envp) })
}

/// # Safety
/// As execv(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execv(path: *const c_char, argv: Argv) -> c_int {
    let Some(f) = next::<unsafe extern "C" fn(*const c_char, Argv) -> c_int>(&EXECV, c"execv") else { return enosys() };
    // SAFETY: glibc's execv with the caller's arguments.
    held(|| unsafe { f(path, argv) })
}

/// # Safety
/// As execvp(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvp(file: *const c_char, argv: Argv) -> c_int {
    let Some(f) = next::<unsafe extern "C" fn(*const c_char, Argv) -> c_int>(&EXECVP, c"execvp") else { return enosys() };
    // SAFETY: glibc's execvp with the caller's arguments.
    held(|| unsafe { f(file, argv) })
}

/// # Safety
/// As execvpe(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn execvpe(file: *const c_char, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = next::<unsafe extern "C" fn(*const c_char, Argv, Argv) -> c_int>(&EXECVPE, c"execvpe") else { return enosys() };
    // SAFETY: glibc's execvpe with the caller's arguments.
    held(|| unsafe { f(file, argv, envp) })
}

/// # Safety
/// As fexecve(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fexecve(fd: c_int, argv: Argv, envp: Argv) -> c_int {
    let Some(f) = next::<unsafe extern "C" fn(c_int, Argv, Argv) -> c_int>(&FEXECVE, c"fexecve") else { return enosys() };
    // SAFETY: glibc's fexecve with the caller's arguments.
    held(|| unsafe { f(fd, argv, envp) })
}
