//! libdmtcp.so: injected into the application with LD_PRELOAD by dmtcp_launch.
//!
//! Its constructor installs the checkpoint signal handler and starts the checkpoint thread,
//! which registers with the coordinator and, on request, stops the other threads (threads.rs),
//! writes the image (capture.rs) and resumes them (ckpt.rs).

mod alloc;
mod api;
mod capture;
mod ckpt;
mod config;
mod exec;
mod open_files;
mod pid_wrappers;
mod pids;
mod plugin;
mod proc_paths;
mod protected_fds;
mod restart_settings;
mod sysv;
mod tcp_drain;
mod thread_timers;
mod threads;
mod timers;
mod wrappers;

use core::sync::atomic::Ordering::Relaxed;

/// Our Rust code never calls glibc malloc (see alloc.rs).
#[global_allocator]
pub(crate) static ALLOC: alloc::DmtcpAlloc = alloc::DmtcpAlloc::new();

#[used]
#[unsafe(link_section = ".init_array")]
static INIT: extern "C" fn() = dmtcp_init;

/// Our own commands may inherit LD_PRELOAD from a checkpointed shell: they are never checkpointed.
fn is_own_tool() -> bool {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.starts_with("dmtcp_") || name == "mtcp_restart"
}

extern "C" fn dmtcp_init() {
    if is_own_tool() || std::env::var_os("DMTCP_DISABLE").is_some_and(|v| v == "1") {
        plugin::disable();
        return;
    }
    // SAFETY: dlsym on glibc's exported rseq variables (absent before glibc 2.35: null).
    unsafe {
        let off = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr()) as *const isize;
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr()) as *const u32;
        if !off.is_null() && !size.is_null() {
            threads::RSEQ_OFFSET.store(*off as usize, Relaxed);
            threads::RSEQ_SIZE.store(*size, Relaxed);
        }
    }
    wrappers::resolve_all();
    pids::inherit_map();
    // SAFETY: dlsym of glibc's exported program-break variable (may be absent: null).
    ckpt::GLIBC_CURBRK.store(unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__curbrk".as_ptr()) } as usize, Relaxed);
    threads::register_thread(dmtcp_arch::sys::gettid());
    let cfg = config::get();
    if !wrappers::install_checkpoint_handler(cfg.ckpt_signal, threads::on_checkpoint_signal) {
        eprintln!("[dmtcp] cannot install the checkpoint signal handler; this process will not be checkpointed");
        plugin::disable();
        return;
    }
    ckpt::start();
    // SAFETY: registers a handler that only calls the plugins' EXIT hooks.
    unsafe { libc::atexit(plugin::on_exit) };
    plugin::init();
}
