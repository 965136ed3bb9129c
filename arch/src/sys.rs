//! Thin raw-syscall helpers shared by the preload library's signal path and the static loader.
//! Raw calls only: libdmtcp.so wraps some libc functions, and the loader has no libc at all.

use syscalls::{syscall1, syscall2, syscall3, syscall4, syscall6, Errno, Sysno};

pub const FUTEX_WAIT_PRIVATE: usize = 128;
pub const FUTEX_WAKE_PRIVATE: usize = 129;

pub fn gettid() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { syscalls::syscall0(Sysno::gettid) }.unwrap_or(0) as u32
}

pub fn getpid() -> u32 {
    // SAFETY: getpid takes no arguments and cannot fail.
    unsafe { syscalls::syscall0(Sysno::getpid) }.unwrap_or(0) as u32
}

pub fn tgkill(pid: u32, tid: u32, sig: i32) -> Result<(), Errno> {
    // SAFETY: plain integer arguments.
    unsafe { syscall3(Sysno::tgkill, pid as usize, tid as usize, sig as usize) }.map(|_| ())
}

/// Wait while `*word == expected` (spurious wake-ups are the caller's loop's business).
pub fn futex_wait(word: &core::sync::atomic::AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    let _ = unsafe { syscall4(Sysno::futex, word.as_ptr() as usize, FUTEX_WAIT_PRIVATE, expected as usize, 0) };
}

pub fn futex_wake_all(word: &core::sync::atomic::AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32.
    let _ = unsafe { syscall3(Sysno::futex, word.as_ptr() as usize, FUTEX_WAKE_PRIVATE, i32::MAX as usize) };
}

/// Write all of `buf` to `fd`, ignoring errors: used for last-resort messages.
pub fn write_all(fd: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: buf is a valid slice for its length.
        match unsafe { syscall3(Sysno::write, fd as usize, buf.as_ptr() as usize, buf.len()) } {
            Ok(n) if n > 0 => buf = &buf[n.min(buf.len())..],
            Err(Errno::EINTR) => {}
            _ => return,
        }
    }
}

pub fn exit_group(code: i32) -> ! {
    loop {
        // SAFETY: exit_group does not return.
        let _ = unsafe { syscall1(Sysno::exit_group, code as usize) };
    }
}

pub fn nanosleep_us(us: u64) {
    let ts = [(us / 1_000_000) as usize, ((us % 1_000_000) * 1000) as usize];
    // SAFETY: ts is a valid struct timespec (two machine words on every Linux ABI we support).
    let _ = unsafe { syscall2(Sysno::nanosleep, ts.as_ptr() as usize, 0) };
}

/// # Safety
/// Maps memory: the caller decides what may be replaced (MAP_FIXED) and owns the result.
pub unsafe fn mmap(addr: usize, len: usize, prot: usize, flags: usize, fd: i32, off: u64) -> Result<usize, Errno> {
    #[cfg(target_pointer_width = "32")]
    {
        // mmap2 takes the offset in 4096-byte units on every 32-bit ABI we support.
        syscall6(Sysno::mmap2, addr, len, prot, flags, fd as usize, (off / 4096) as usize)
    }
    #[cfg(target_pointer_width = "64")]
    {
        syscall6(Sysno::mmap, addr, len, prot, flags, fd as usize, off as usize)
    }
}

/// # Safety
/// Unmaps memory that nothing may use afterwards.
pub unsafe fn munmap(addr: usize, len: usize) -> Result<(), Errno> {
    syscall2(Sysno::munmap, addr, len).map(|_| ())
}

/// # Safety
/// Changes protection of memory the caller controls.
pub unsafe fn mprotect(addr: usize, len: usize, prot: usize) -> Result<(), Errno> {
    syscall3(Sysno::mprotect, addr, len, prot).map(|_| ())
}

/// Read exactly `buf.len()` bytes at `off`; short reads are retried, EOF is EIO.
pub fn pread_exact(fd: i32, buf: &mut [u8], mut off: u64) -> Result<(), Errno> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is a valid writable slice.
        let r = unsafe { pread_raw(fd, rest.as_mut_ptr() as usize, rest.len(), off) };
        match r {
            Ok(0) => return Err(Errno::EIO),
            Ok(n) => {
                done += n;
                off += n as u64;
            }
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read into raw memory (a freshly mapped area) at `addr`.
///
/// # Safety
/// `addr..addr+len` must be writable memory.
pub unsafe fn pread_into(fd: i32, addr: usize, len: usize, off: u64) -> Result<(), Errno> {
    pread_exact(fd, core::slice::from_raw_parts_mut(addr as *mut u8, len), off)
}

unsafe fn pread_raw(fd: i32, addr: usize, len: usize, off: u64) -> Result<usize, Errno> {
    #[cfg(target_pointer_width = "64")]
    {
        syscall4(Sysno::pread64, fd as usize, addr, len, off as usize)
    }
    #[cfg(all(target_pointer_width = "32", target_arch = "arm"))]
    {
        // EABI passes 64-bit arguments in an aligned register pair: a padding slot comes first.
        syscall6(Sysno::pread64, fd as usize, addr, len, 0, off as u32 as usize, (off >> 32) as usize)
    }
    #[cfg(all(target_pointer_width = "32", not(target_arch = "arm")))]
    {
        syscall6(Sysno::pread64, fd as usize, addr, len, off as u32 as usize, (off >> 32) as usize, 0)
    }
}
