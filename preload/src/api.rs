//! The application API (dmtcp.h): programs may link against these; without dmtcp_launch the
//! weak stubs of the header make them no-ops.

use core::sync::atomic::Ordering::Relaxed;

/// 1 when running under dmtcp_launch/dmtcp_restart (this library is loaded and active).
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_is_enabled() -> libc::c_int {
    (crate::wrappers::CKPT_SIGNAL.load(Relaxed) != 0) as libc::c_int
}
