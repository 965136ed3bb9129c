//! Last-resort error reporting: one line on stderr, then exit with DMTCP's failure code.
//! No allocation: numbers are formatted into a stack buffer.

use core::sync::atomic::{AtomicI32, Ordering};
use dmtcp_arch::sys;

static FAIL_RC: AtomicI32 = AtomicI32::new(99);

pub fn set_fail_rc(rc: i32) {
    FAIL_RC.store(rc, Ordering::Relaxed);
}

/// `mtcp_restart: <what> (errno N)` and exit. `errno` 0 prints no errno.
pub fn die(what: &str, errno: i32) -> ! {
    sys::write_all(2, b"mtcp_restart: ");
    sys::write_all(2, what.as_bytes());
    if errno != 0 {
        sys::write_all(2, b" (errno ");
        let mut buf = [0u8; 20];
        sys::write_all(2, fmt_dec(errno.unsigned_abs() as u64, &mut buf));
        sys::write_all(2, b")");
    }
    sys::write_all(2, b"\n");
    sys::exit_group(FAIL_RC.load(Ordering::Relaxed))
}

/// `die` with the address a failure concerns.
pub fn die_at(what: &str, addr: u64, errno: i32) -> ! {
    sys::write_all(2, b"mtcp_restart: at 0x");
    let mut buf = [0u8; 16];
    sys::write_all(2, fmt_hex(addr, &mut buf));
    sys::write_all(2, b": ");
    die(what, errno)
}

pub fn fmt_dec(mut v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[i..];
        }
    }
}

pub fn fmt_hex(mut v: u64, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        let d = (v & 15) as u8;
        buf[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        v >>= 4;
        if v == 0 {
            return &buf[i..];
        }
    }
}

pub fn parse_dec(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}
