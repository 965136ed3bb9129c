//! /proc/PID/... paths that name a process (and /proc/PID/task/TID/... a thread) by the pid the
//! program knows: the file functions open the kernel's /proc/REAL/... instead (see pids.rs).
//! Until a restart renumbers a process, each wrapper is a plain call.
//!
//! Wrappers run on the application's threads, possibly in its signal handlers: the new path is
//! written into a buffer on the stack; no allocation, no locks.

use crate::pids::{active, to_real};
use crate::wrappers::real;
use core::sync::atomic::AtomicUsize;
use libc::{c_char, c_int, c_uint, c_void};

const PATH_MAX: usize = 4096;

/// Room for a rewritten path.
struct PathBuf([u8; PATH_MAX]);

impl PathBuf {
    fn new() -> Self {
        PathBuf([0; PATH_MAX])
    }

    /// `path`, or its rewrite in this buffer when it names a renumbered process or thread.
    fn translate(&mut self, path: *const c_char) -> *const c_char {
        if path.is_null() || !crate::pids::renumbered() {
            return path;
        }
        // SAFETY: the caller's path is a NUL-terminated string (the contract of every wrapper).
        let bytes = unsafe { core::ffi::CStr::from_ptr(path) }.to_bytes();
        // The cheap test first: active() asks the kernel which thread this is.
        if !bytes.starts_with(b"/proc/") || !active() {
            return path;
        }
        match rewrite(bytes, &mut self.0) {
            Some(()) => self.0.as_ptr().cast(),
            None => path,
        }
    }
}

/// Split a leading decimal number off `s`, if it is one followed by '/' or the end.
fn leading_pid(s: &[u8]) -> Option<(u32, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 || digits > 10 || s.get(digits).is_some_and(|&c| c != b'/') {
        return None;
    }
    let n = s[..digits].iter().try_fold(0u32, |n, &c| n.checked_mul(10)?.checked_add(u32::from(c - b'0')))?;
    Some((n, &s[digits..]))
}

/// Write `/proc/REAL[/task/REALTID]rest` NUL-terminated into `out`; None when `path` needs no
/// change (or the result would not fit).
fn rewrite(path: &[u8], out: &mut [u8]) -> Option<()> {
    rewrite_with(path, out, &to_real)
}

fn rewrite_with(path: &[u8], out: &mut [u8], to_real: &dyn Fn(u32) -> u32) -> Option<()> {
    let after = path.strip_prefix(b"/proc/")?;
    let (pid, mut rest) = leading_pid(after)?;
    let real_pid = to_real(pid);
    let mut real_tid = None;
    if let Some(t) = rest.strip_prefix(b"/task/") {
        if let Some((tid, tail)) = leading_pid(t) {
            real_tid = Some((tid, to_real(tid)));
            rest = tail;
        }
    }
    if real_pid == pid && real_tid.is_none_or(|(v, r)| v == r) {
        return None;
    }
    let mut w = Writer { out, at: 0 };
    w.put(b"/proc/")?;
    w.number(real_pid)?;
    if let Some((_, tid)) = real_tid {
        w.put(b"/task/")?;
        w.number(tid)?;
    }
    w.put(rest)?;
    w.put(b"\0")
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn put(&mut self, s: &[u8]) -> Option<()> {
        let end = self.at.checked_add(s.len()).filter(|&e| e <= self.out.len())?;
        self.out[self.at..end].copy_from_slice(s);
        self.at = end;
        Some(())
    }

    fn number(&mut self, mut n: u32) -> Option<()> {
        let mut digits = [0u8; 10];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.put(&digits[i..])
    }
}

static OPEN: AtomicUsize = AtomicUsize::new(0);
static OPEN64: AtomicUsize = AtomicUsize::new(0);
static OPENAT: AtomicUsize = AtomicUsize::new(0);
static OPENAT64: AtomicUsize = AtomicUsize::new(0);
static OPEN_2: AtomicUsize = AtomicUsize::new(0);
static OPEN64_2: AtomicUsize = AtomicUsize::new(0);
static FOPEN: AtomicUsize = AtomicUsize::new(0);
static FOPEN64: AtomicUsize = AtomicUsize::new(0);
static OPENDIR: AtomicUsize = AtomicUsize::new(0);
static READLINK: AtomicUsize = AtomicUsize::new(0);
static ACCESS: AtomicUsize = AtomicUsize::new(0);
static STAT: AtomicUsize = AtomicUsize::new(0);
static LSTAT: AtomicUsize = AtomicUsize::new(0);
static STAT64: AtomicUsize = AtomicUsize::new(0);
static LSTAT64: AtomicUsize = AtomicUsize::new(0);

/// Resolve every wrapped function up front (dlsym takes a lock; see wrappers.rs).
pub fn resolve() {
    for (slot, name) in [
        (&OPEN, c"open"),
        (&OPEN64, c"open64"),
        (&OPENAT, c"openat"),
        (&OPENAT64, c"openat64"),
        (&OPEN_2, c"__open_2"),
        (&OPEN64_2, c"__open64_2"),
        (&FOPEN, c"fopen"),
        (&FOPEN64, c"fopen64"),
        (&OPENDIR, c"opendir"),
        (&READLINK, c"readlink"),
        (&ACCESS, c"access"),
        (&STAT, c"stat"),
        (&LSTAT, c"lstat"),
        (&STAT64, c"stat64"),
        (&LSTAT64, c"lstat64"),
    ] {
        real(slot, name);
    }
}

fn enosys() {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
}

/// glibc's `name` as type F, called through `call` with the translated path.
fn with_next<F: Copy, R>(slot: &AtomicUsize, name: &core::ffi::CStr, path: *const c_char, fail: R, call: impl FnOnce(F, *const c_char) -> R) -> R {
    let f = real(slot, name);
    if f == 0 {
        enosys();
        return fail;
    }
    // SAFETY: F is the function pointer type of this symbol's C declaration (each wrapper below
    // names the symbol and its type together).
    let f = unsafe { core::mem::transmute_copy::<usize, F>(&f) };
    let mut buf = PathBuf::new();
    let path = buf.translate(path);
    call(f, path)
}

type OpenFn = unsafe extern "C" fn(*const c_char, c_int, c_uint) -> c_int;
type OpenatFn = unsafe extern "C" fn(c_int, *const c_char, c_int, c_uint) -> c_int;
type Open2Fn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
type FopenFn = unsafe extern "C" fn(*const c_char, *const c_char) -> *mut libc::FILE;
type StatFn = unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int;

// open and openat are variadic in C; the mode is read as a fixed third (fourth) argument, where
// the variadic one is passed on our four CPUs (see syscall in pid_wrappers.rs).

/// # Safety
/// As open(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: glibc's open with the caller's arguments.
    with_next(&OPEN, c"open", path, -1, |f: OpenFn, p| unsafe { f(p, flags, mode) })
}

/// # Safety
/// As open64(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: glibc's open64 with the caller's arguments.
    with_next(&OPEN64, c"open64", path, -1, |f: OpenFn, p| unsafe { f(p, flags, mode) })
}

/// # Safety
/// As openat(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat(dir: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: glibc's openat with the caller's arguments.
    with_next(&OPENAT, c"openat", path, -1, |f: OpenatFn, p| unsafe { f(dir, p, flags, mode) })
}

/// # Safety
/// As openat64(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn openat64(dir: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: glibc's openat64 with the caller's arguments.
    with_next(&OPENAT64, c"openat64", path, -1, |f: OpenatFn, p| unsafe { f(dir, p, flags, mode) })
}

/// The open() that _FORTIFY_SOURCE builds call.
///
/// # Safety
/// As open(2) without O_CREAT.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: glibc's __open_2 with the caller's arguments.
    with_next(&OPEN_2, c"__open_2", path, -1, |f: Open2Fn, p| unsafe { f(p, flags) })
}

/// # Safety
/// As open64(2) without O_CREAT.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __open64_2(path: *const c_char, flags: c_int) -> c_int {
    // SAFETY: glibc's __open64_2 with the caller's arguments.
    with_next(&OPEN64_2, c"__open64_2", path, -1, |f: Open2Fn, p| unsafe { f(p, flags) })
}

/// # Safety
/// As fopen(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: glibc's fopen with the caller's arguments.
    with_next(&FOPEN, c"fopen", path, core::ptr::null_mut(), |f: FopenFn, p| unsafe { f(p, mode) })
}

/// # Safety
/// As fopen64(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn fopen64(path: *const c_char, mode: *const c_char) -> *mut libc::FILE {
    // SAFETY: glibc's fopen64 with the caller's arguments.
    with_next(&FOPEN64, c"fopen64", path, core::ptr::null_mut(), |f: FopenFn, p| unsafe { f(p, mode) })
}

/// # Safety
/// As opendir(3).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn opendir(path: *const c_char) -> *mut libc::DIR {
    type OpendirFn = unsafe extern "C" fn(*const c_char) -> *mut libc::DIR;
    // SAFETY: glibc's opendir with the caller's argument.
    with_next(&OPENDIR, c"opendir", path, core::ptr::null_mut(), |f: OpendirFn, p| unsafe { f(p) })
}

/// # Safety
/// As readlink(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn readlink(path: *const c_char, buf: *mut c_char, len: usize) -> isize {
    type ReadlinkFn = unsafe extern "C" fn(*const c_char, *mut c_char, usize) -> isize;
    // SAFETY: glibc's readlink with the caller's arguments.
    with_next(&READLINK, c"readlink", path, -1, |f: ReadlinkFn, p| unsafe { f(p, buf, len) })
}

/// # Safety
/// As access(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn access(path: *const c_char, mode: c_int) -> c_int {
    type AccessFn = unsafe extern "C" fn(*const c_char, c_int) -> c_int;
    // SAFETY: glibc's access with the caller's arguments.
    with_next(&ACCESS, c"access", path, -1, |f: AccessFn, p| unsafe { f(p, mode) })
}

// stat and lstat are exported by glibc 2.33 and later; programs built against older ones call
// __xstat instead, which never names a pid we would change.

/// # Safety
/// As stat(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glibc's stat with the caller's arguments.
    with_next(&STAT, c"stat", path, -1, |f: StatFn, p| unsafe { f(p, buf) })
}

/// # Safety
/// As lstat(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glibc's lstat with the caller's arguments.
    with_next(&LSTAT, c"lstat", path, -1, |f: StatFn, p| unsafe { f(p, buf) })
}

/// # Safety
/// As stat64(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn stat64(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glibc's stat64 with the caller's arguments.
    with_next(&STAT64, c"stat64", path, -1, |f: StatFn, p| unsafe { f(p, buf) })
}

/// # Safety
/// As lstat64(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn lstat64(path: *const c_char, buf: *mut c_void) -> c_int {
    // SAFETY: glibc's lstat64 with the caller's arguments.
    with_next(&LSTAT64, c"lstat64", path, -1, |f: StatFn, p| unsafe { f(p, buf) })
}

#[cfg(test)]
mod tests {
    use super::rewrite_with;

    fn run(path: &str) -> Option<String> {
        let map = |v: u32| match v {
            100 => 5000,
            101 => 5001,
            n => n,
        };
        let mut out = [0u8; 64];
        rewrite_with(path.as_bytes(), &mut out, &map)?;
        let end = out.iter().position(|&c| c == 0).unwrap();
        Some(String::from_utf8(out[..end].to_vec()).unwrap())
    }

    #[test]
    fn renumbered_pids_and_tids_are_rewritten() {
        assert_eq!(run("/proc/100/stat").as_deref(), Some("/proc/5000/stat"));
        assert_eq!(run("/proc/100").as_deref(), Some("/proc/5000"));
        assert_eq!(run("/proc/100/task/101/comm").as_deref(), Some("/proc/5000/task/5001/comm"));
        assert_eq!(run("/proc/7/task/101").as_deref(), Some("/proc/7/task/5001"));
    }

    #[test]
    fn other_paths_are_left_alone() {
        for p in ["/proc/7/stat", "/proc/self/stat", "/proc/100x/stat", "/proc/", "/tmp/proc/100", "proc/100", "/proc/99999999999/x"] {
            assert_eq!(run(p), None, "{p}");
        }
        let mut tiny = [0u8; 8];
        assert_eq!(rewrite_with(b"/proc/100/stat", &mut tiny, &|_| 5000), None, "too long for the buffer");
    }
}
