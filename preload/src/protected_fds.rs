//! The checkpoint thread's coordinator connection (an fd at or above 821, as in DMTCP) and the
//! pid map of a restart (fd 820, see pids.rs) are out of the application's reach: programs that close every fd they did not open (GNU screen, daemons,
//! shells before exec) or that dup2 onto it would cut the process off from the computation. As
//! far as the application is concerned those fds are not open (EBADF); ranges are closed around
//! them.
//!
//! Runs on the application's threads, possibly in signal handlers: raw system calls, no
//! allocation, no locks.

use crate::ckpt::{on_ckpt_thread, COORD_FD};
use core::sync::atomic::Ordering::Acquire;
use libc::{c_int, c_uint};

/// The fds the application must not touch, lowest first (-1: none). The checkpoint thread
/// itself manages them freely.
fn protected() -> [c_int; 2] {
    let (a, b) = (COORD_FD.load(Acquire), crate::pids::MAP_FD.load(Acquire));
    if (a < 0 && b < 0) || on_ckpt_thread() {
        return [-1, -1];
    }
    [a.min(b), a.max(b)]
}

fn is_protected(fd: c_int) -> bool {
    fd >= 0 && protected().contains(&fd)
}

fn ebadf() -> c_int {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = libc::EBADF };
    -1
}

fn result(r: Result<usize, syscalls::Errno>) -> c_int {
    match r {
        Ok(v) => v as c_int,
        Err(e) => {
            // SAFETY: errno is this thread's own.
            unsafe { *libc::__errno_location() = e.into_raw() };
            -1
        }
    }
}

/// close(2), refusing the protected fd.
///
/// # Safety
/// As close(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    if is_protected(fd) {
        return ebadf();
    }
    // SAFETY: the application's close of its own fd.
    result(unsafe { syscalls::syscall1(syscalls::Sysno::close, fd as usize) })
}

fn close_range_raw(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // SAFETY: close_range on the application's fds.
    result(unsafe { syscalls::syscall3(syscalls::Sysno::close_range, first as usize, last as usize, flags as usize) })
}

/// close_range(2) over the application's fds, leaving the protected ones out.
///
/// # Safety
/// As close_range(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        return close_range_raw(first, last, flags); // the kernel's EINVAL
    }
    let mut from = first;
    for p in protected().into_iter().filter(|&p| p >= 0).map(|p| p as c_uint) {
        if p < from || p > last {
            continue;
        }
        if p > from {
            let r = close_range_raw(from, p - 1, flags);
            if r != 0 {
                return r;
            }
        }
        if p == last {
            return 0;
        }
        from = p + 1;
    }
    close_range_raw(from, last, flags)
}

/// closefrom(3): every fd from `low` up, but the protected one.
///
/// # Safety
/// As closefrom(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn closefrom(low: c_int) {
    // SAFETY: as close_range above.
    if unsafe { close_range(low.max(0) as c_uint, c_uint::MAX, 0) } == 0 {
        return;
    }
    // No close_range (kernels before 5.9): one by one, as glibc falls back to.
    // SAFETY: getdtablesize has no memory effects.
    let top = unsafe { libc::getdtablesize() };
    for fd in low.max(0)..top {
        // SAFETY: as close above.
        unsafe { close(fd) };
    }
}

/// dup2(2), refusing the protected fd as its target.
///
/// # Safety
/// As dup2(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    if is_protected(new) {
        return ebadf();
    }
    if old == new {
        // dup2 onto itself only checks that the fd is open.
        // SAFETY: F_GETFD has no memory effects.
        return if unsafe { libc::fcntl(old, libc::F_GETFD) } < 0 { -1 } else { new };
    }
    // SAFETY: dup3 on the application's fds (dup2 is dup3 without flags, which is what arm64 has).
    result(unsafe { syscalls::syscall3(syscalls::Sysno::dup3, old as usize, new as usize, 0) })
}

/// dup3(2), refusing the protected fd as its target.
///
/// # Safety
/// As dup3(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    if is_protected(new) {
        return ebadf();
    }
    // SAFETY: dup3 on the application's fds.
    result(unsafe { syscalls::syscall3(syscalls::Sysno::dup3, old as usize, new as usize, flags as usize) })
}
