//! Settings libdmtcp.so reads once at start-up from the environment dmtcp_launch prepared
//! (DMTCP's variable names, so scripts that set them keep working).

use core::sync::atomic::{AtomicPtr, Ordering::*};
use std::path::PathBuf;
use std::sync::OnceLock;

pub struct Config {
    pub coord_host: String,
    pub coord_port: u16,
    pub ckpt_dir: PathBuf,
    pub gzip: bool,
    pub ckpt_signal: i32,
    pub interval: u32,
    pub unique_filenames: bool,
    pub quiet: bool,
    /// DMTCP's unique process id: `<hostid>-<pid>-<time>`, kept across restarts (it lives in
    /// memory, which the restart restores).
    pub unique_pid: String,
    pub prog: String,
    /// DMTCP_TMPDIR (or $TMPDIR, or /tmp).
    pub tmpdir: String,
    /// dmtcp_launch --checkpoint-open-files (DMTCP_CHECKPOINT_OPEN_FILES=1): reported to the
    /// application and plugins; file contents are not saved in the image yet.
    pub ckpt_open_files: bool,
    /// dmtcp_launch --allow-file-overwrite (DMTCP_ALLOW_FILE_OVERWRITE=1): reported likewise.
    pub allow_file_overwrite: bool,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

pub fn get() -> &'static Config {
    CONFIG.get_or_init(from_env)
}

/// This process's unique pid, as text and as a C string (for dmtcp_get_uniquepid_str).
struct UniquePid {
    text: String,
    c: std::ffi::CString,
}

/// A leaked UniquePid: set once at start-up and again in every forked child. Atomic, not a
/// lock: the child of a fork must not wait for a lock another thread of its parent held.
static UNIQUE_PID: AtomicPtr<UniquePid> = AtomicPtr::new(core::ptr::null_mut());

fn current_unique_pid() -> &'static UniquePid {
    let mut p = UNIQUE_PID.load(Acquire);
    if p.is_null() {
        set_unique_pid(get().unique_pid.clone());
        p = UNIQUE_PID.load(Acquire);
    }
    // SAFETY: a leaked UniquePid, never freed.
    unsafe { &*p }
}

fn set_unique_pid(text: String) {
    let c = std::ffi::CString::new(text.clone()).unwrap_or_default();
    UNIQUE_PID.store(Box::leak(Box::new(UniquePid { text, c })), Release);
}

/// This process's DMTCP unique pid: the launch-time one, or the one it got when it was forked.
pub fn unique_pid() -> String {
    current_unique_pid().text.clone()
}

pub fn unique_pid_cstr() -> *const libc::c_char {
    current_unique_pid().c.as_ptr()
}

/// In a forked child: a unique pid of its own, as DMTCP gives every process of a computation.
pub fn renew_unique_pid() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    set_unique_pid(format!("{:x}-{}-{:x}", host_id(&nix_hostname()), std::process::id(), now));
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn flag(name: &str, default: bool) -> bool {
    env(name).map_or(default, |v| !matches!(v.as_str(), "0" | "no" | "false"))
}

fn host_id(hostname: &str) -> u32 {
    // FNV-1a of the host name: stable per host, like DMTCP's gethostid()-based id.
    hostname.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

fn from_env() -> Config {
    let prog = std::fs::read("/proc/self/cmdline")
        .ok()
        .and_then(|c| c.split(|&b| b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()))
        .map(|a| a.rsplit('/').next().unwrap_or(&a).to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let hostname = nix_hostname();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let ckpt_dir = env("DMTCP_CHECKPOINT_DIR").map(PathBuf::from).or_else(|| std::env::current_dir().ok()).unwrap_or_else(|| PathBuf::from("."));
    let ckpt_signal =
        env("DMTCP_SIGCKPT").and_then(|v| v.parse::<i32>().ok()).filter(|&s| (1..=64).contains(&s) && s != 9 && s != 19).unwrap_or(libc::SIGUSR2);
    Config {
        coord_host: env("DMTCP_COORD_HOST").unwrap_or_else(|| "127.0.0.1".into()),
        coord_port: env("DMTCP_COORD_PORT").and_then(|p| p.parse().ok()).unwrap_or(dmtcp_engine::protocol::DEFAULT_PORT),
        ckpt_dir,
        gzip: flag("DMTCP_GZIP", true),
        ckpt_signal,
        interval: env("DMTCP_CHECKPOINT_INTERVAL").and_then(|v| v.parse().ok()).unwrap_or(0),
        unique_filenames: flag("DMTCP_UNIQUE_CKPT_FILENAMES", false),
        quiet: flag("DMTCP_QUIET", false),
        unique_pid: format!("{:x}-{}-{:x}", host_id(&hostname), std::process::id(), now),
        prog,
        tmpdir: env("DMTCP_TMPDIR").or_else(|| env("TMPDIR")).unwrap_or_else(|| "/tmp".into()),
        ckpt_open_files: flag("DMTCP_CHECKPOINT_OPEN_FILES", false),
        allow_file_overwrite: flag("DMTCP_ALLOW_FILE_OVERWRITE", false),
    }
}

pub fn nix_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is writable for its length; gethostname NUL-terminates on success.
    if unsafe { libc::gethostname(buf.as_mut_ptr() as *mut libc::c_char, buf.len()) } != 0 {
        return "localhost".into();
    }
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
