//! The application API (include/dmtcp.h). Programs call these through weak references: without
//! dmtcp_launch the header's macros see a null address and answer DMTCP_NOT_PRESENT instead.
//!
//! The values, names and signatures are DMTCP's, so C code written for DMTCP compiles unchanged.
//! Strings we return stay valid for the life of the process (they are leaked on purpose).

use crate::{ckpt, config};
use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::{AtomicPtr, Ordering::*};
use dmtcp_engine::protocol::{self, Command, FromCoord, ToCoord};
use std::ffi::CString;
use std::sync::OnceLock;

pub const DMTCP_AFTER_CHECKPOINT: c_int = 1;
pub const DMTCP_AFTER_RESTART: c_int = 2;
pub const DMTCP_NOT_PRESENT: c_int = 3;
pub const DMTCP_IS_PRESENT: c_int = 4;
/// dmtcp_checkpoint() and friends return this (<= 0, as DMTCP documents) when they fail.
const DMTCP_ERROR: c_int = 0;

const RESTART_ENV_SUCCESS: c_int = 0;
const RESTART_ENV_NOTFOUND: c_int = -1;
const RESTART_ENV_TOOLONG: c_int = -2;
const RESTART_ENV_NULL_PTR: c_int = -5;

fn enabled() -> bool {
    crate::wrappers::CKPT_SIGNAL.load(Relaxed) != 0
}

fn leak(s: impl Into<Vec<u8>>) -> *mut c_char {
    CString::new(s).map(CString::into_raw).unwrap_or(core::ptr::null_mut())
}

/// A string computed once, leaked, returned as a C pointer.
fn once(cell: &'static OnceLock<usize>, f: impl FnOnce() -> String) -> *const c_char {
    *cell.get_or_init(|| leak(f()) as usize) as *const c_char
}

/// 1 when running under dmtcp_launch/dmtcp_restart (this library is loaded and active).
/// The kernel's pid (or tid) for one the program knows (they differ after a restart that could
/// not give a process its old pid back).
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_virtual_to_real_pid(pid: libc::pid_t) -> libc::pid_t {
    if pid > 0 {
        crate::pids::to_real(pid as u32) as libc::pid_t
    } else {
        pid
    }
}

/// The program's pid (or tid) for one of the kernel's.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_real_to_virtual_pid(pid: libc::pid_t) -> libc::pid_t {
    if pid > 0 {
        crate::pids::to_virtual(pid as u32) as libc::pid_t
    } else {
        pid
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_is_enabled() -> c_int {
    c_int::from(enabled())
}

/// Checkpoint the whole computation and return once this process has been checkpointed:
/// DMTCP_AFTER_CHECKPOINT in the original process, DMTCP_AFTER_RESTART when the process resumes
/// from that image. 0 on failure (no coordinator, the checkpoint failed, or called inside a
/// dmtcp_disable_ckpt() window, where waiting for the checkpoint would never end).
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_checkpoint() -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    if ckpt::window_depth() != 0 {
        return DMTCP_ERROR;
    }
    // Inside a window: no checkpoint can start between reading the counters and sending the
    // request, so the one we wait for is one that began after this call.
    ckpt::enter_window();
    let mut seq = ckpt::EVENT_SEQ.load(Acquire);
    let (ckpts, restarts, failed) = (ckpt::NUM_CHECKPOINTS.load(Acquire), ckpt::NUM_RESTARTS.load(Acquire), ckpt::NUM_FAILED.load(Acquire));
    let sent = ckpt::send_from_app(&ToCoord::RequestCheckpoint);
    ckpt::leave_window();
    if !sent {
        return DMTCP_ERROR;
    }
    loop {
        if ckpt::NUM_RESTARTS.load(Acquire) != restarts {
            return DMTCP_AFTER_RESTART;
        }
        if ckpt::NUM_CHECKPOINTS.load(Acquire) != ckpts {
            return DMTCP_AFTER_CHECKPOINT;
        }
        if ckpt::NUM_FAILED.load(Acquire) != failed || ckpt::COORD_FD.load(Acquire) < 0 {
            return DMTCP_ERROR;
        }
        dmtcp_arch::sys::futex_wait(&ckpt::EVENT_SEQ, seq);
        seq = ckpt::EVENT_SEQ.load(Acquire);
    }
}

/// Open a window in which no checkpoint starts (nests; per thread). A checkpoint requested
/// meanwhile waits for every window to close. Returns 1.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_disable_ckpt() -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    ckpt::enter_window();
    1
}

/// Close the window opened by the matching dmtcp_disable_ckpt(). Returns 1, or 0 if this thread
/// had none open.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_enable_ckpt() -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    c_int::from(ckpt::leave_window())
}

/// The plugin flavour of dmtcp_disable_ckpt() (DMTCP_PLUGIN_DISABLE_CKPT()): 1 if it disabled.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_plugin_disable_ckpt() -> c_int {
    c_int::from(dmtcp_disable_ckpt() == 1)
}

#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_plugin_enable_ckpt() {
    dmtcp_enable_ckpt();
}

/// 1 while a checkpoint waits for windows to close or is under way.
#[unsafe(no_mangle)]
pub extern "C" fn checkpoint_is_pending() -> c_int {
    c_int::from(enabled() && ckpt::checkpoint_pending())
}

/// 1 unless a checkpoint is pending or under way.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_is_running_state() -> c_int {
    c_int::from(!ckpt::checkpoint_pending())
}

/// How many times this process was checkpointed and restarted.
///
/// # Safety
/// Each pointer is null or points to a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmtcp_get_local_status(num_checkpoints: *mut c_int, num_restarts: *mut c_int) -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    let c = ckpt::NUM_CHECKPOINTS.load(Acquire) as c_int;
    let r = ckpt::NUM_RESTARTS.load(Acquire) as c_int;
    // SAFETY: the caller passes null or writable ints.
    unsafe {
        if !num_checkpoints.is_null() {
            *num_checkpoints = c;
        }
        if !num_restarts.is_null() {
            *num_restarts = r;
        }
    }
    DMTCP_IS_PRESENT
}

/// Ask the coordinator, on a connection of our own, how many processes it has and whether they
/// all run (no checkpoint under way).
fn coordinator_status() -> Option<(u32, bool)> {
    use std::os::fd::FromRawFd;
    let fd = ckpt::COORD_FD.load(Acquire);
    if fd < 0 {
        return None;
    }
    // After a restart the coordinator may be another one than at launch: ask the socket.
    // SAFETY: borrowing the open coordinator socket; ManuallyDrop never closes it.
    let sock = core::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
    let addr = sock.peer_addr().ok()?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    protocol::send(&mut s, &ToCoord::Command(Command::Status)).ok()?;
    match protocol::recv::<_, FromCoord>(&mut s).ok()? {
        FromCoord::Reply(r) => Some((r.num_peers, r.running)),
        _ => None,
    }
}

/// Processes connected to the coordinator, and 1 if they all run.
///
/// # Safety
/// Each pointer is null or points to a writable int.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmtcp_get_coordinator_status(num_peers: *mut c_int, is_running: *mut c_int) -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    // In a window: a checkpoint must not catch the temporary socket open.
    ckpt::enter_window();
    let status = coordinator_status();
    ckpt::leave_window();
    let Some((peers, running)) = status else { return DMTCP_ERROR };
    // SAFETY: the caller passes null or writable ints.
    unsafe {
        if !num_peers.is_null() {
            *num_peers = c_int::try_from(peers).unwrap_or(c_int::MAX);
        }
        if !is_running.is_null() {
            *is_running = c_int::from(running);
        }
    }
    DMTCP_IS_PRESENT
}

/// The computation's checkpoint generation: 0 before the first checkpoint.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_generation() -> u32 {
    ckpt::GENERATION.load(Acquire)
}

/// The checkpoint signal (SIGUSR2 unless --ckpt-signal / DMTCP_SIGCKPT).
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_ckpt_signal() -> c_int {
    crate::wrappers::CKPT_SIGNAL.load(Relaxed)
}

/// DMTCP's unique process id of this process, `<hostid>-<pid>-<time>`.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_uniquepid_str() -> *const c_char {
    config::unique_pid_cstr()
}

/// The directory for temporary files (DMTCP_TMPDIR).
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_tmpdir() -> *const c_char {
    static S: OnceLock<usize> = OnceLock::new();
    once(&S, || config::get().tmpdir.clone())
}

/// The program under checkpoint control.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_executable_path() -> *const c_char {
    static S: OnceLock<usize> = OnceLock::new();
    once(&S, || std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default())
}

/// 1 if launched with --no-coordinator.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_no_coordinator() -> c_int {
    c_int::from(config::get().coord_port == 0)
}

/// 1 if launched with --checkpoint-open-files.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_should_ckpt_open_files() -> c_int {
    c_int::from(config::get().ckpt_open_files)
}

/// 1 if launched with --allow-file-overwrite.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_allow_overwrite_with_ckpted_files() -> c_int {
    c_int::from(config::get().allow_file_overwrite)
}

/// Where this process's next image goes.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_ckpt_dir() -> *const c_char {
    let p = ckpt::CKPT_DIR_OVERRIDE.load(Acquire);
    if !p.is_null() {
        return p;
    }
    static S: OnceLock<usize> = OnceLock::new();
    once(&S, || config::get().ckpt_dir.display().to_string())
}

/// Write this process's next images into `dir` (made absolute against the current directory).
///
/// # Safety
/// `dir` is null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmtcp_set_ckpt_dir(dir: *const c_char) -> c_int {
    if !enabled() {
        return DMTCP_NOT_PRESENT;
    }
    if dir.is_null() {
        return DMTCP_ERROR;
    }
    // SAFETY: the caller passes a NUL-terminated string.
    let d = unsafe { CStr::from_ptr(dir) }.to_string_lossy().into_owned();
    let path = std::path::absolute(&d).unwrap_or_else(|_| d.into());
    let p = leak(path.display().to_string());
    if p.is_null() {
        return DMTCP_ERROR;
    }
    ckpt::CKPT_DIR_OVERRIDE.store(p, Release);
    EXPECTED_IMAGE.store(core::ptr::null_mut(), Release);
    DMTCP_IS_PRESENT
}

/// The image name before any checkpoint, for the directory currently chosen.
static EXPECTED_IMAGE: AtomicPtr<c_char> = AtomicPtr::new(core::ptr::null_mut());

/// The path of this process's image: the last one written, or, before the first checkpoint,
/// the one the next checkpoint will write.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_get_ckpt_filename() -> *const c_char {
    if !enabled() {
        return core::ptr::null();
    }
    let last = ckpt::LAST_IMAGE.load(Acquire);
    if !last.is_null() {
        return last;
    }
    let expected = EXPECTED_IMAGE.load(Acquire);
    if !expected.is_null() {
        return expected;
    }
    let cfg = config::get();
    // SAFETY: dmtcp_get_ckpt_dir returns a leaked NUL-terminated string.
    let dir = unsafe { CStr::from_ptr(dmtcp_get_ckpt_dir()) }.to_string_lossy().into_owned();
    let name = if cfg.unique_filenames {
        format!("{dir}/ckpt_{}_{}_{:05}.dmtcp", cfg.prog, config::unique_pid(), dmtcp_get_generation() + 1)
    } else {
        format!("{dir}/ckpt_{}_{}.dmtcp", cfg.prog, config::unique_pid())
    };
    let p = leak(name);
    // Racing callers each leak one string; one wins, which is harmless.
    EXPECTED_IMAGE.store(p, Release);
    p
}

/// The value `name` had in dmtcp_restart's environment at the last restart (for plugins such as
/// modify-env). DMTCP's codes: 0 found, -1 not found (or no restart yet), -2 value too long,
/// -5 null pointer.
///
/// # Safety
/// `name` is null or NUL-terminated; `value` is null or writable for `maxlen` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dmtcp_get_restart_env(name: *const c_char, value: *mut c_char, maxlen: usize) -> c_int {
    if name.is_null() || value.is_null() {
        return RESTART_ENV_NULL_PTR;
    }
    let env = ckpt::RESTART_ENV.load(Acquire);
    if env.is_null() {
        return RESTART_ENV_NOTFOUND;
    }
    // SAFETY: a leaked buffer of RESTART_ENV_LEN bytes, published before RESTART_ENV.
    let env = unsafe { core::slice::from_raw_parts(env, ckpt::RESTART_ENV_LEN.load(Acquire)) };
    // SAFETY: the caller passes a NUL-terminated name.
    let name = unsafe { CStr::from_ptr(name) }.to_bytes();
    let Some(val) = env.split(|&b| b == 0).find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix(b"="))) else {
        return RESTART_ENV_NOTFOUND;
    };
    if val.len() >= maxlen {
        return RESTART_ENV_TOOLONG;
    }
    // SAFETY: `value` is writable for maxlen > val.len() bytes.
    unsafe {
        core::ptr::copy_nonoverlapping(val.as_ptr(), value.cast::<u8>(), val.len());
        *value.add(val.len()) = 0;
    }
    RESTART_ENV_SUCCESS
}
