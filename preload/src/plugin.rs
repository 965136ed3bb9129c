//! Plugins: shared libraries that dmtcp_launch preloads after libdmtcp.so (`--with-plugin`,
//! `--modify-env`). Each registers a descriptor (DMTCP's `DmtcpPluginDescriptor_t`, see
//! include/dmtcp.h) from its constructor, usually through `DMTCP_DECL_PLUGIN`; we call its event
//! hook at init, around each checkpoint, after a restart and at exit. docs/plugins.md is the
//! user's side of this.
//!
//! Constructors of preloaded libraries may run before ours, so registering only records the
//! descriptor; INIT is delivered once libdmtcp.so is set up (immediately for late registrants).

use core::ffi::{c_char, c_int, CStr};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*};

/// DMTCP's `DmtcpEvent_t` numbering (DMTCP 3), so plugins compiled for DMTCP switch on the same
/// values. Only the events below are delivered.
pub const EVENT_INIT: c_int = 0;
pub const EVENT_EXIT: c_int = 1;
pub const EVENT_PRESUSPEND: c_int = 15;
pub const EVENT_PRECHECKPOINT: c_int = 16;
pub const EVENT_RESUME: c_int = 17;
pub const EVENT_RESTART: c_int = 18;
pub const EVENT_RUNNING: c_int = 19;

/// `DmtcpEventData_t`: a union whose largest member is six words. Only `isRestart` (the first
/// int) is filled in, for RESUME, RESTART and RUNNING.
#[repr(C)]
pub union EventData {
    pub is_restart: c_int,
    _size: [usize; 6],
}

pub type EventHook = unsafe extern "C" fn(event: c_int, data: *mut EventData);

/// `DmtcpPluginDescriptor_t`, field for field.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PluginDescriptor {
    pub plugin_api_version: *const c_char,
    pub dmtcp_version: *const c_char,
    pub plugin_name: *const c_char,
    pub author_name: *const c_char,
    pub author_email: *const c_char,
    pub description: *const c_char,
    pub event_hook: Option<EventHook>,
}

const MAX_PLUGINS: usize = 64;

struct Registered {
    descr: PluginDescriptor,
    /// Position of the plugin's library in LD_PRELOAD (usize::MAX: not found there).
    rank: usize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: AtomicPtr<Registered> = AtomicPtr::new(core::ptr::null_mut());
/// Registered plugins in delivery order once `init` has sorted them; entries are leaked (plugins
/// are never unloaded) and published with Release.
static PLUGINS: [AtomicPtr<Registered>; MAX_PLUGINS] = [EMPTY; MAX_PLUGINS];
static COUNT: AtomicUsize = AtomicUsize::new(0);
static INITIALIZED: AtomicBool = AtomicBool::new(false);
/// Set when plugins must be ignored (this process is not checkpointed: our own tools,
/// DMTCP_DISABLE=1).
static DISABLED: AtomicBool = AtomicBool::new(false);

/// Called by a plugin (via DMTCP_DECL_PLUGIN) to register itself. Takes the descriptor by
/// value, as DMTCP does; the strings it points to must live as long as the plugin.
#[unsafe(no_mangle)]
pub extern "C" fn dmtcp_register_plugin(descr: PluginDescriptor) {
    if DISABLED.load(Acquire) {
        return;
    }
    let idx = COUNT.fetch_add(1, AcqRel);
    if idx >= MAX_PLUGINS {
        COUNT.fetch_sub(1, AcqRel);
        eprintln!("[dmtcp] more than {MAX_PLUGINS} plugins: {} ignored", name_of(&descr));
        return;
    }
    let reg = Box::leak(Box::new(Registered { descr, rank: usize::MAX }));
    PLUGINS[idx].store(reg, Release);
    if INITIALIZED.load(Acquire) {
        // Registered after start-up (a dlopen'ed plugin): it missed INIT.
        call(&reg.descr, EVENT_INIT, 0);
    }
}

fn name_of(d: &PluginDescriptor) -> String {
    if d.plugin_name.is_null() {
        return "(unnamed plugin)".into();
    }
    // SAFETY: a non-null plugin name is a NUL-terminated string owned by the plugin.
    unsafe { CStr::from_ptr(d.plugin_name) }.to_string_lossy().into_owned()
}

/// This process is not checkpointed: ignore registrations and deliver nothing.
pub fn disable() {
    DISABLED.store(true, Release);
}

/// The LD_PRELOAD position of the library holding `addr`, so hooks run in --with-plugin order
/// whatever order the dynamic loader ran the constructors in.
fn preload_rank(addr: usize, preload: &str) -> usize {
    let mut info: libc::Dl_info = empty_dl_info();
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(addr as *const libc::c_void, &mut info) } == 0 || info.dli_fname.is_null() {
        return usize::MAX;
    }
    // SAFETY: dli_fname is the loader's NUL-terminated path of that object.
    let file = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    preload.split([':', ' ']).filter(|s| !s.is_empty()).position(|p| p == file || base(p) == base(&file)).unwrap_or(usize::MAX)
}

fn empty_dl_info() -> libc::Dl_info {
    libc::Dl_info { dli_fname: core::ptr::null(), dli_fbase: core::ptr::null_mut(), dli_sname: core::ptr::null(), dli_saddr: core::ptr::null_mut() }
}

/// At the end of libdmtcp.so's start-up: order the plugins registered so far and deliver INIT.
pub fn init() {
    let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
    let n = COUNT.load(Acquire).min(MAX_PLUGINS);
    let mut regs: Vec<*mut Registered> = (0..n).map(|i| PLUGINS[i].load(Acquire)).filter(|p| !p.is_null()).collect();
    for &r in &regs {
        // SAFETY: published, leaked entries; no other thread runs during start-up.
        let reg = unsafe { &mut *r };
        reg.rank = reg.descr.event_hook.map_or(usize::MAX, |h| preload_rank(h as usize, &preload));
    }
    // SAFETY: as above.
    regs.sort_by_key(|&r| unsafe { (*r).rank });
    for (i, r) in regs.iter().enumerate() {
        PLUGINS[i].store(*r, Release);
    }
    INITIALIZED.store(true, Release);
    deliver(EVENT_INIT, 0);
}

fn call(d: &PluginDescriptor, event: c_int, is_restart: c_int) {
    if let Some(hook) = d.event_hook {
        let mut data = EventData { _size: [0; 6] };
        data.is_restart = is_restart;
        // SAFETY: the plugin's hook, called with DMTCP's arguments.
        unsafe { hook(event, &mut data) };
    }
}

/// Call every plugin's hook for `event`. INIT, RESUME, RESTART and RUNNING go in load order;
/// PRESUSPEND, PRECHECKPOINT and EXIT in reverse, so a plugin layered over another sees the
/// checkpoint first and the restart last.
pub fn deliver(event: c_int, is_restart: c_int) {
    if DISABLED.load(Acquire) || !INITIALIZED.load(Acquire) {
        return;
    }
    let n = COUNT.load(Acquire).min(MAX_PLUGINS);
    let reverse = matches!(event, EVENT_PRESUSPEND | EVENT_PRECHECKPOINT | EVENT_EXIT);
    for k in 0..n {
        let i = if reverse { n - 1 - k } else { k };
        let p = PLUGINS[i].load(Acquire);
        if !p.is_null() {
            // SAFETY: published, leaked, never freed.
            call(unsafe { &(*p).descr }, event, is_restart);
        }
    }
}

/// Registered at start-up with atexit: EXIT runs when the application calls exit() or returns
/// from main (not when it is killed).
pub extern "C" fn on_exit() {
    deliver(EVENT_EXIT, 0);
}
