//! Pid virtualization: the pids and tids a program saw stay valid after a restart, while the
//! kernel gives its processes and threads new ones.
//!
//! A process's *virtual* pid is the pid it had when it was first made (launch or fork); the
//! *real* pid is the kernel's. They differ only after a restart that could not reuse the old pid
//! (it was taken, or dmtcp_restart lacked the privilege). Two tables map one to the other:
//! processes of the computation on this host (loaded from dmtcp_restart's pid map, see
//! dmtcp_engine::pidmap) and this process's own threads. A pid found in neither is its own
//! virtual pid, so that processes made after the restart need no entry at all.
//!
//! The wrappers (pid_wrappers.rs, proc_paths.rs) translate for the application only: the
//! checkpoint thread and the code it runs work with real pids and convert what they record.
//!
//! Lookups run on the application's threads, in signal handlers too: atomics on static tables,
//! no allocation, no locks. Loading a map (std, allocates) runs only while the application's
//! threads are parked or before any of them exists.

use core::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::*};
use dmtcp_arch::sys;

const MAX_PROCS: usize = 4096;
const MAX_THREADS: usize = dmtcp_layout::MAX_THREADS;

/// Entries are `virtual << 32 | real`; 0 is a free slot.
static PROCS: [AtomicU64; MAX_PROCS] = [const { AtomicU64::new(0) }; MAX_PROCS];
static THREADS: [AtomicU64; MAX_THREADS] = [const { AtomicU64::new(0) }; MAX_THREADS];
/// Slots of PROCS in use lie below this; 0 means no process is renumbered, the common case,
/// in which every wrapper is a plain call.
static PROCS_LEN: AtomicUsize = AtomicUsize::new(0);
static THREADS_LEN: AtomicUsize = AtomicUsize::new(0);

/// The restart's pid map, kept open at PIDMAP_FD (-1: none). The checkpoint leaves it out of
/// the image and the application cannot close it (protected_fds.rs).
pub static MAP_FD: AtomicI32 = AtomicI32::new(-1);

fn pack(virt: u32, real: u32) -> u64 {
    (u64::from(virt) << 32) | u64::from(real)
}

fn unpack(e: u64) -> (u32, u32) {
    ((e >> 32) as u32, e as u32)
}

fn used(table: &'static [AtomicU64], len: &AtomicUsize) -> &'static [AtomicU64] {
    &table[..len.load(Acquire).min(table.len())]
}

/// Has a restart renumbered any process or thread the program knows?
pub fn renumbered() -> bool {
    PROCS_LEN.load(Relaxed) != 0 || THREADS_LEN.load(Relaxed) != 0
}

/// Does any pid of this host differ from the program's view of it? Then the caller translates,
/// unless it is the checkpoint thread (which works with real pids).
pub fn active() -> bool {
    renumbered() && !crate::ckpt::on_ckpt_thread()
}

fn find(pred: impl Fn(u32, u32) -> bool) -> Option<(u32, u32)> {
    for table in [used(&THREADS, &THREADS_LEN), used(&PROCS, &PROCS_LEN)] {
        for slot in table {
            let e = slot.load(Acquire);
            if e != 0 {
                let (v, r) = unpack(e);
                if pred(v, r) {
                    return Some((v, r));
                }
            }
        }
    }
    None
}

/// The program's name for the kernel's pid (or tid) `real`.
pub fn to_virtual(real: u32) -> u32 {
    find(|_, r| r == real).map_or(real, |(v, _)| v)
}

/// The kernel's pid (or tid) for the program's `virt`.
pub fn to_real(virt: u32) -> u32 {
    find(|v, _| v == virt).map_or(virt, |(_, r)| r)
}

/// A pid argument as kill() and waitpid() take it: negative for a process group; 0 and -1 mean
/// no particular process.
pub fn signed_to_real(pid: i32) -> i32 {
    match pid {
        p if p > 0 => to_real(p as u32) as i32,
        p if p < -1 => -(to_real(p.unsigned_abs()) as i32),
        p => p,
    }
}

/// This process's virtual pid.
pub fn my_pid() -> u32 {
    to_virtual(sys::getpid())
}

/// A new child got the real pid `real`. If the program already knows that number as another
/// process's pid, the child must not keep it (true: make another). An entry of a process that
/// had it and has exited is dropped.
pub fn taken_by_another(real: u32) -> bool {
    for table in [used(&THREADS, &THREADS_LEN), used(&PROCS, &PROCS_LEN)] {
        for slot in table {
            let e = slot.load(Acquire);
            let (v, r) = unpack(e);
            if e == 0 || v == r {
                continue;
            }
            if v == real {
                return true;
            }
            if r == real {
                let _ = slot.compare_exchange(e, 0, AcqRel, Relaxed);
            }
        }
    }
    false
}

/// A child was reaped: its real pid may be given to a new process, which must not inherit its
/// virtual one.
pub fn forget(real: u32) {
    for slot in used(&PROCS, &PROCS_LEN) {
        let e = slot.load(Acquire);
        if e != 0 && unpack(e).1 == real {
            let _ = slot.compare_exchange(e, 0, AcqRel, Relaxed);
        }
    }
}

fn insert(table: &'static [AtomicU64], len: &AtomicUsize, virt: u32, real: u32) {
    for (i, slot) in table.iter().enumerate() {
        let e = slot.load(Acquire);
        let free = e == 0 && slot.compare_exchange(0, pack(virt, real), AcqRel, Relaxed).is_ok();
        if free || (e != 0 && unpack(e).0 == virt && slot.compare_exchange(e, pack(virt, real), AcqRel, Relaxed).is_ok()) {
            len.fetch_max(i + 1, AcqRel);
            return;
        }
    }
}

/// A restored thread that the program knew as `virt` now has the tid `real`.
pub fn thread_restored(virt: u32, real: u32) {
    if virt != real {
        insert(&THREADS, &THREADS_LEN, virt, real);
    } else {
        thread_exited(real);
    }
}

/// The thread with tid `real` ends; its entry must not name a later thread.
pub fn thread_exited(real: u32) {
    for slot in used(&THREADS, &THREADS_LEN) {
        let e = slot.load(Acquire);
        if e != 0 && unpack(e).1 == real {
            let _ = slot.compare_exchange(e, 0, AcqRel, Relaxed);
        }
    }
}

/// Replace the process table with a restart's map (the threads' entries are each thread's own).
/// Only while no application thread runs.
pub fn load(entries: &[(u32, u32)]) {
    for slot in &PROCS {
        slot.store(0, Relaxed);
    }
    let mut n = 0;
    for &(v, r) in entries.iter().filter(|(v, r)| v != r) {
        if n == MAX_PROCS {
            break;
        }
        PROCS[n].store(pack(v, r), Relaxed);
        n += 1;
    }
    PROCS_LEN.store(n, Release);
}

/// How long a restored process waits for the other processes of its restart to fill in their
/// entries (each does right after dmtcp_restart forks it).
const MAP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// After a restart: read dmtcp_restart's map from `fd` once it is complete (or after MAP_WAIT),
/// load it, and keep it open at PIDMAP_FD for the programs this process will execute.
pub fn adopt_restart_map(fd: i32) -> Result<(), String> {
    let deadline = std::time::Instant::now() + MAP_WAIT;
    let map = loop {
        let map = read_map(fd).ok_or("the pid map of the restart is unreadable")?;
        if map.missing == 0 || std::time::Instant::now() >= deadline {
            break map;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    load(&map.entries);
    keep_at_fixed_fd(fd);
    if map.missing != 0 {
        return Err(format!("{} process(es) of the restart did not report their new pid in time", map.missing));
    }
    Ok(())
}

/// At start-up of a program executed by a restarted one: the map the parent kept open.
pub fn inherit_map() {
    let fd = dmtcp_engine::pidmap::PIDMAP_FD;
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap_or_default();
    if !link.to_string_lossy().starts_with(&format!("/memfd:{}", dmtcp_engine::pidmap::PIDMAP_NAME)) {
        return;
    }
    if let Some(map) = read_map(fd) {
        load(&map.entries);
        MAP_FD.store(fd, Release);
    }
}

fn read_map(fd: i32) -> Option<dmtcp_engine::pidmap::PidMap> {
    let mut bytes = vec![0u8; 8];
    sys::pread_exact(fd, &mut bytes, 0).ok()?;
    let count = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) as usize;
    bytes.resize(8 + count.min(1 << 20) * 8, 0);
    sys::pread_exact(fd, &mut bytes, 0).ok()?;
    dmtcp_engine::pidmap::parse(&bytes)
}

/// Put the map at PIDMAP_FD (inherited across exec) if that number is free, else close it.
fn keep_at_fixed_fd(fd: i32) {
    let at = dmtcp_engine::pidmap::PIDMAP_FD;
    // An earlier restart's map is not in the image (checkpoints leave it out): nothing to close.
    MAP_FD.store(-1, Release);
    // SAFETY: our own fd, and a free number for it (F_GETFD only asks whether it is open).
    unsafe {
        if fd == at {
            libc::fcntl(fd, libc::F_SETFD, 0);
            MAP_FD.store(at, Release);
            return;
        }
        if libc::fcntl(at, libc::F_GETFD) < 0 && libc::dup3(fd, at, 0) == at {
            MAP_FD.store(at, Release);
        }
        libc::close(fd);
    }
}
