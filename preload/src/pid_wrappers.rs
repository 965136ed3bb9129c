//! The libc functions that take or return pids, translated between the program's (virtual) pids
//! and the kernel's (see pids.rs). Until a restart renumbers a process, each is a plain call.
//!
//! Wrappers run on the application's threads, possibly in its signal handlers: no allocation,
//! no locks.

use crate::pids::{self, active, signed_to_real, to_real, to_virtual};
use crate::wrappers::real;
use core::sync::atomic::AtomicUsize;
use dmtcp_arch::sys;
use libc::{c_int, c_long, c_void, id_t, pid_t};

macro_rules! next_definitions {
    ($($slot:ident = $name:literal),* $(,)?) => {
        $(static $slot: AtomicUsize = AtomicUsize::new(0);)*
        /// Resolve every wrapped function up front (dlsym takes a lock; see wrappers.rs).
        pub fn resolve() {
            $(real(&$slot, $name);)*
        }
    };
}

next_definitions! {
    GETPGID = c"getpgid", GETSID = c"getsid", SETSID = c"setsid", SETPGID = c"setpgid",
    KILL = c"kill", KILLPG = c"killpg", TGKILL = c"tgkill", SIGQUEUE = c"sigqueue",
    WAITPID = c"waitpid", WAIT = c"wait", WAIT3 = c"wait3", WAIT4 = c"wait4", WAITID = c"waitid",
    // 32-bit CPUs' 64-bit-time variants (glibc 2.34+; what wait3/wait4 name with _TIME_BITS=64).
    WAIT3_TIME64 = c"__wait3_time64", WAIT4_TIME64 = c"__wait4_time64",
    TCGETPGRP = c"tcgetpgrp", TCSETPGRP = c"tcsetpgrp", TCGETSID = c"tcgetsid", FORK = c"fork",
    SCHED_GETAFFINITY = c"sched_getaffinity", SCHED_SETAFFINITY = c"sched_setaffinity",
    SCHED_GETSCHEDULER = c"sched_getscheduler", SCHED_SETSCHEDULER = c"sched_setscheduler",
    GETPRIORITY = c"getpriority", SETPRIORITY = c"setpriority", PIDFD_OPEN = c"pidfd_open",
    SYSCALL = c"syscall",
}

/// glibc's definition of the function in `slot`, as type `F` (a function pointer).
pub(crate) fn next<F: Copy>(slot: &AtomicUsize, name: &core::ffi::CStr) -> Option<F> {
    let f = real(slot, name);
    // SAFETY: F is the function pointer type of this symbol's C declaration (each caller below
    // names the symbol it wraps and its type together).
    (f != 0).then(|| unsafe { core::mem::transmute_copy::<usize, F>(&f) })
}

fn set_errno(e: c_int) {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = e };
}

/// Call glibc's `$name` (resolved into `$slot`) with type `$ty`, or fail with ENOSYS.
macro_rules! call_next {
    ($slot:ident, $name:literal, $ty:ty, $fail:expr, ($($arg:expr),*)) => {
        match next::<$ty>(&$slot, $name) {
            // SAFETY: glibc's function, with the caller's arguments (forwarded contract).
            Some(f) => unsafe { f($($arg),*) },
            None => {
                set_errno(libc::ENOSYS);
                $fail
            }
        }
    };
}

fn virtual_result(pid: pid_t) -> pid_t {
    if pid > 0 && active() {
        to_virtual(pid as u32) as pid_t
    } else {
        pid
    }
}

fn real_arg(pid: pid_t) -> pid_t {
    if active() {
        signed_to_real(pid)
    } else {
        pid
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn getpid() -> pid_t {
    virtual_result(sys::getpid() as pid_t)
}

#[unsafe(no_mangle)]
pub extern "C" fn getppid() -> pid_t {
    // SAFETY: getppid has no arguments and no memory effects.
    let parent = unsafe { syscalls::syscall0(syscalls::Sysno::getppid) }.unwrap_or(0) as pid_t;
    virtual_result(parent)
}

#[unsafe(no_mangle)]
pub extern "C" fn gettid() -> pid_t {
    virtual_result(sys::gettid() as pid_t)
}

#[unsafe(no_mangle)]
pub extern "C" fn getpgrp() -> pid_t {
    getpgid(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn getpgid(pid: pid_t) -> pid_t {
    virtual_result(call_next!(GETPGID, c"getpgid", unsafe extern "C" fn(pid_t) -> pid_t, -1, (real_arg(pid))))
}

#[unsafe(no_mangle)]
pub extern "C" fn getsid(pid: pid_t) -> pid_t {
    virtual_result(call_next!(GETSID, c"getsid", unsafe extern "C" fn(pid_t) -> pid_t, -1, (real_arg(pid))))
}

#[unsafe(no_mangle)]
pub extern "C" fn setsid() -> pid_t {
    virtual_result(call_next!(SETSID, c"setsid", unsafe extern "C" fn() -> pid_t, -1, ()))
}

#[unsafe(no_mangle)]
pub extern "C" fn setpgid(pid: pid_t, pgid: pid_t) -> c_int {
    call_next!(SETPGID, c"setpgid", unsafe extern "C" fn(pid_t, pid_t) -> c_int, -1, (real_arg(pid), real_arg(pgid)))
}

#[unsafe(no_mangle)]
pub extern "C" fn kill(pid: pid_t, sig: c_int) -> c_int {
    call_next!(KILL, c"kill", unsafe extern "C" fn(pid_t, c_int) -> c_int, -1, (real_arg(pid), sig))
}

#[unsafe(no_mangle)]
pub extern "C" fn killpg(pgrp: pid_t, sig: c_int) -> c_int {
    call_next!(KILLPG, c"killpg", unsafe extern "C" fn(pid_t, c_int) -> c_int, -1, (real_arg(pgrp), sig))
}

#[unsafe(no_mangle)]
pub extern "C" fn tgkill(tgid: pid_t, tid: pid_t, sig: c_int) -> c_int {
    call_next!(TGKILL, c"tgkill", unsafe extern "C" fn(pid_t, pid_t, c_int) -> c_int, -1, (real_arg(tgid), real_arg(tid), sig))
}

/// # Safety
/// As sigqueue(3) (`value` is the pointer-sized union sigval).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sigqueue(pid: pid_t, sig: c_int, value: *mut c_void) -> c_int {
    call_next!(SIGQUEUE, c"sigqueue", unsafe extern "C" fn(pid_t, c_int, *mut c_void) -> c_int, -1, (real_arg(pid), sig, value))
}

/// A wait returned `pid` (real): the program sees its virtual pid, and the entry goes once the
/// child is reaped (not for a stopped or continued child).
fn reaped(pid: pid_t, status: *const c_int, options: c_int) -> pid_t {
    if pid <= 0 || !active() {
        return pid;
    }
    let virt = to_virtual(pid as u32) as pid_t;
    // SAFETY: the caller's status word, which the wait just filled in (null: not asked for).
    let ended = status.is_null() || unsafe { libc::WIFEXITED(*status) || libc::WIFSIGNALED(*status) };
    if ended && options & libc::WNOWAIT == 0 {
        pids::forget(pid as u32);
    }
    virt
}

/// # Safety
/// As waitpid(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn waitpid(pid: pid_t, status: *mut c_int, options: c_int) -> pid_t {
    let r = call_next!(WAITPID, c"waitpid", unsafe extern "C" fn(pid_t, *mut c_int, c_int) -> pid_t, -1, (real_arg(pid), status, options));
    reaped(r, status, options)
}

/// # Safety
/// As wait(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wait(status: *mut c_int) -> pid_t {
    let r = call_next!(WAIT, c"wait", unsafe extern "C" fn(*mut c_int) -> pid_t, -1, (status));
    reaped(r, status, 0)
}

/// # Safety
/// As wait3(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wait3(status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t {
    let r = call_next!(WAIT3, c"wait3", unsafe extern "C" fn(*mut c_int, c_int, *mut libc::rusage) -> pid_t, -1, (status, options, usage));
    reaped(r, status, options)
}

/// # Safety
/// As wait4(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn wait4(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut libc::rusage) -> pid_t {
    let r = call_next!(
        WAIT4,
        c"wait4",
        unsafe extern "C" fn(pid_t, *mut c_int, c_int, *mut libc::rusage) -> pid_t,
        -1,
        (real_arg(pid), status, options, usage)
    );
    reaped(r, status, options)
}

/// # Safety
/// As wait3(2); `usage` is a struct __rusage64.
#[cfg(target_pointer_width = "32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wait3_time64(status: *mut c_int, options: c_int, usage: *mut core::ffi::c_void) -> pid_t {
    let r = call_next!(
        WAIT3_TIME64,
        c"__wait3_time64",
        unsafe extern "C" fn(*mut c_int, c_int, *mut core::ffi::c_void) -> pid_t,
        -1,
        (status, options, usage)
    );
    reaped(r, status, options)
}

/// # Safety
/// As wait4(2); `usage` is a struct __rusage64.
#[cfg(target_pointer_width = "32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __wait4_time64(pid: pid_t, status: *mut c_int, options: c_int, usage: *mut core::ffi::c_void) -> pid_t {
    let r = call_next!(
        WAIT4_TIME64,
        c"__wait4_time64",
        unsafe extern "C" fn(pid_t, *mut c_int, c_int, *mut core::ffi::c_void) -> pid_t,
        -1,
        (real_arg(pid), status, options, usage)
    );
    reaped(r, status, options)
}

/// Where siginfo_t keeps si_pid: after si_signo, si_errno and si_code, at the union, which is
/// word-aligned.
const SI_PID_OFFSET: usize = if cfg!(target_pointer_width = "64") { 16 } else { 12 };
const P_PID: libc::idtype_t = 1;
const P_PGID: libc::idtype_t = 2;

/// # Safety
/// As waitid(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn waitid(idtype: libc::idtype_t, id: id_t, info: *mut libc::siginfo_t, options: c_int) -> c_int {
    let id = if (idtype == P_PID || idtype == P_PGID) && active() { to_real(id) } else { id };
    let r = call_next!(
        WAITID,
        c"waitid",
        unsafe extern "C" fn(libc::idtype_t, id_t, *mut libc::siginfo_t, c_int) -> c_int,
        -1,
        (idtype, id, info, options)
    );
    if r == 0 && !info.is_null() && active() {
        // SAFETY: waitid filled in the caller's siginfo_t; si_pid is a pid_t at this offset.
        unsafe {
            let si_pid = (info as *mut u8).add(SI_PID_OFFSET) as *mut pid_t;
            if *si_pid > 0 {
                let ended = matches!((*info).si_code, libc::CLD_EXITED | libc::CLD_KILLED | libc::CLD_DUMPED);
                let real_pid = *si_pid;
                *si_pid = to_virtual(real_pid as u32) as pid_t;
                if ended && options & libc::WNOWAIT == 0 {
                    pids::forget(real_pid as u32);
                }
            }
        }
    }
    r
}

#[unsafe(no_mangle)]
pub extern "C" fn tcgetpgrp(fd: c_int) -> pid_t {
    virtual_result(call_next!(TCGETPGRP, c"tcgetpgrp", unsafe extern "C" fn(c_int) -> pid_t, -1, (fd)))
}

#[unsafe(no_mangle)]
pub extern "C" fn tcsetpgrp(fd: c_int, pgrp: pid_t) -> c_int {
    call_next!(TCSETPGRP, c"tcsetpgrp", unsafe extern "C" fn(c_int, pid_t) -> c_int, -1, (fd, real_arg(pgrp)))
}

#[unsafe(no_mangle)]
pub extern "C" fn tcgetsid(fd: c_int) -> pid_t {
    virtual_result(call_next!(TCGETSID, c"tcgetsid", unsafe extern "C" fn(c_int) -> pid_t, -1, (fd)))
}

/// # Safety
/// As sched_getaffinity(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sched_getaffinity(pid: pid_t, size: usize, mask: *mut libc::cpu_set_t) -> c_int {
    call_next!(
        SCHED_GETAFFINITY,
        c"sched_getaffinity",
        unsafe extern "C" fn(pid_t, usize, *mut libc::cpu_set_t) -> c_int,
        -1,
        (real_arg(pid), size, mask)
    )
}

/// # Safety
/// As sched_setaffinity(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sched_setaffinity(pid: pid_t, size: usize, mask: *const libc::cpu_set_t) -> c_int {
    call_next!(
        SCHED_SETAFFINITY,
        c"sched_setaffinity",
        unsafe extern "C" fn(pid_t, usize, *const libc::cpu_set_t) -> c_int,
        -1,
        (real_arg(pid), size, mask)
    )
}

#[unsafe(no_mangle)]
pub extern "C" fn sched_getscheduler(pid: pid_t) -> c_int {
    call_next!(SCHED_GETSCHEDULER, c"sched_getscheduler", unsafe extern "C" fn(pid_t) -> c_int, -1, (real_arg(pid)))
}

/// # Safety
/// As sched_setscheduler(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sched_setscheduler(pid: pid_t, policy: c_int, param: *const libc::sched_param) -> c_int {
    call_next!(
        SCHED_SETSCHEDULER,
        c"sched_setscheduler",
        unsafe extern "C" fn(pid_t, c_int, *const libc::sched_param) -> c_int,
        -1,
        (real_arg(pid), policy, param)
    )
}

/// PRIO_PROCESS names a process, PRIO_PGRP a group; PRIO_USER a user.
fn priority_who(which: c_int, who: id_t) -> id_t {
    if (which as u32 == libc::PRIO_PROCESS || which as u32 == libc::PRIO_PGRP) && active() {
        to_real(who) as id_t
    } else {
        who
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn getpriority(which: c_int, who: id_t) -> c_int {
    call_next!(GETPRIORITY, c"getpriority", unsafe extern "C" fn(c_int, id_t) -> c_int, -1, (which, priority_who(which, who)))
}

#[unsafe(no_mangle)]
pub extern "C" fn setpriority(which: c_int, who: id_t, prio: c_int) -> c_int {
    call_next!(SETPRIORITY, c"setpriority", unsafe extern "C" fn(c_int, id_t, c_int) -> c_int, -1, (which, priority_who(which, who), prio))
}

#[unsafe(no_mangle)]
pub extern "C" fn pidfd_open(pid: pid_t, flags: libc::c_uint) -> c_int {
    call_next!(PIDFD_OPEN, c"pidfd_open", unsafe extern "C" fn(pid_t, libc::c_uint) -> c_int, -1, (real_arg(pid), flags))
}

/// How often fork() tries again for a child whose new pid the program knows as another's.
const MAX_REFORKS: usize = 64;
const SIGCHLD_BIT: u64 = 1 << (libc::SIGCHLD - 1);

/// fork(): after a restart, a child whose real pid is already another process's virtual pid
/// would be mistaken for it; such a child leaves at once (ckpt::after_fork_child) and the fork is
/// made again. Its SIGCHLD is taken back, so that the program sees none.
#[unsafe(no_mangle)]
pub extern "C" fn fork() -> pid_t {
    let Some(f) = next::<extern "C" fn() -> pid_t>(&FORK, c"fork") else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    if !active() {
        return f();
    }
    for _ in 0..MAX_REFORKS {
        let mut mask: u64 = 0;
        let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_BLOCK, Some(&SIGCHLD_BIT), Some(&mut mask));
        let was_pending = sigchld_pending();
        let pid = f();
        if pid <= 0 || !pids::taken_by_another(pid as u32) {
            let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&mask), None);
            return pid;
        }
        // SAFETY: reaping our own child that is exiting; no status wanted.
        let _ = unsafe { syscalls::syscall4(syscalls::Sysno::wait4, pid as usize, 0, libc::__WALL as usize, 0) };
        if !was_pending {
            take_sigchld();
        }
        let _ = dmtcp_arch::rt_sigprocmask(libc::SIG_SETMASK, Some(&mask), None);
    }
    set_errno(libc::EAGAIN);
    -1
}

fn sigchld_pending() -> bool {
    let mut set: u64 = 0;
    // SAFETY: rt_sigpending writes an 8-byte set.
    let _ = unsafe { syscalls::syscall2(syscalls::Sysno::rt_sigpending, &mut set as *mut u64 as usize, 8) };
    set & SIGCHLD_BIT != 0
}

fn take_sigchld() {
    let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a blocked SIGCHLD is taken without waiting; nothing is written but the return.
    let _ = unsafe {
        syscalls::syscall4(syscalls::Sysno::rt_sigtimedwait, &SIGCHLD_BIT as *const u64 as usize, 0, &zero as *const libc::timespec as usize, 8)
    };
}

type SyscallFn = unsafe extern "C" fn(c_long, ...) -> c_long;

/// The system calls the syscall() wrapper translates.
const PID_SYSCALLS: [c_long; 13] = [
    libc::SYS_getpid,
    libc::SYS_getppid,
    libc::SYS_gettid,
    libc::SYS_getpgid,
    libc::SYS_getsid,
    libc::SYS_kill,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_rt_sigqueueinfo,
    libc::SYS_tgkill,
    libc::SYS_rt_tgsigqueueinfo,
    libc::SYS_setpgid,
    libc::SYS_wait4,
];

/// syscall(3) for the calls that name pids (programs call SYS_gettid this way; glibc had no
/// gettid() before 2.30). Declared with six fixed arguments: on our four CPUs a variadic call
/// passes integer arguments where fixed ones go, and unused ones are just not read by the kernel.
///
/// # Safety
/// As syscall(2) for the system call `n`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn syscall(n: c_long, a: c_long, b: c_long, c: c_long, d: c_long, e: c_long, f: c_long) -> c_long {
    let Some(next_syscall) = next::<SyscallFn>(&SYSCALL, c"syscall") else {
        set_errno(libc::ENOSYS);
        return -1;
    };
    // The cheap tests first: active() asks the kernel which thread this is, and syscall() carries
    // hot calls (futex) too.
    if !PID_SYSCALLS.contains(&n) || !active() {
        // SAFETY: forwarded contract.
        return unsafe { next_syscall(n, a, b, c, d, e, f) };
    }
    let pid = |v: c_long| signed_to_real(v as pid_t) as c_long;
    let (a, b) = match n {
        libc::SYS_getpid => return getpid() as c_long,
        libc::SYS_getppid => return getppid() as c_long,
        libc::SYS_gettid => return gettid() as c_long,
        libc::SYS_getpgid | libc::SYS_getsid => {
            // SAFETY: forwarded contract.
            return virtual_result(unsafe { next_syscall(n, pid(a)) } as pid_t) as c_long;
        }
        libc::SYS_kill | libc::SYS_tkill | libc::SYS_pidfd_open | libc::SYS_rt_sigqueueinfo => (pid(a), b),
        libc::SYS_tgkill | libc::SYS_rt_tgsigqueueinfo | libc::SYS_setpgid => (pid(a), pid(b)),
        libc::SYS_wait4 => {
            // SAFETY: forwarded contract.
            let r = unsafe { next_syscall(n, pid(a), b, c, d) };
            return reaped(r as pid_t, b as *const c_int, c as c_int) as c_long;
        }
        _ => (a, b),
    };
    // SAFETY: forwarded contract, with the pids translated.
    unsafe { next_syscall(n, a, b, c, d, e, f) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn si_pid_offset_matches_libc() {
        // SAFETY: an all-zero siginfo_t is valid; si_pid() reads the field at its offset.
        let mut info: libc::siginfo_t = unsafe { core::mem::zeroed() };
        // SAFETY: writing a pid_t inside the struct.
        unsafe { *((&mut info as *mut libc::siginfo_t as *mut u8).add(super::SI_PID_OFFSET) as *mut libc::pid_t) = 4321 };
        // SAFETY: reading the field back through libc's accessor.
        assert_eq!(unsafe { info.si_pid() }, 4321);
    }
}
