//! Quiescing user threads: the checkpoint signal handler parks each thread with its registers
//! saved (`arch::park`), and the checkpoint thread waits until all are parked.
//!
//! The handler and everything it calls run in signal context: no allocation, no locks, no libc;
//! raw syscalls and atomics on static tables only.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering::*};
use dmtcp_arch::sys;
use dmtcp_layout::{ThreadRecord, MAX_THREADS, THREAD_IS_MAIN};

/// One user thread's state while it is parked.
pub struct Slot {
    pub tid: AtomicU32,
    /// The tid the program knows the thread by (pids.rs), kept for the restart.
    vtid: AtomicU32,
    /// Saved context's stack pointer; non-zero once the thread is parked.
    pub sp: AtomicUsize,
    record: UnsafeCell<ThreadRecord>,
}

// SAFETY: `record` is written only by the thread owning the slot before it publishes `sp`
// (Release), and read by the checkpoint thread after it saw `sp` (Acquire).
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY_SLOT: Slot = Slot {
    tid: AtomicU32::new(0),
    vtid: AtomicU32::new(0),
    sp: AtomicUsize::new(0),
    record: UnsafeCell::new(ThreadRecord {
        tid: 0,
        flags: 0,
        resume_sp: 0,
        tls: 0,
        tls_aux: 0,
        tid_address: 0,
        robust_head: 0,
        robust_len: 0,
        rseq_addr: 0,
        rseq_len: 0,
        rseq_sig: 0,
        comm: [0; 16],
    }),
};

static SLOTS: [Slot; MAX_THREADS] = [EMPTY_SLOT; MAX_THREADS];
static NUM_SLOTS: AtomicUsize = AtomicUsize::new(0);
/// True from the first checkpoint signal sent until the threads are released.
static SUSPENDING: AtomicBool = AtomicBool::new(false);
/// Parked threads sleep while this keeps the value they saw; bumping it releases them.
static PARK_WORD: AtomicU32 = AtomicU32::new(0);
/// After a restart, restored threads wait here until the checkpoint thread has reconnected.
static RESTART_RELEASE: AtomicU32 = AtomicU32::new(0);
static RESTORED_CHECKINS: AtomicU32 = AtomicU32::new(0);

/// glibc's rseq area of a thread is at thread pointer + __rseq_offset (glibc >= 2.35).
pub static RSEQ_OFFSET: AtomicUsize = AtomicUsize::new(0);
pub static RSEQ_SIZE: AtomicU32 = AtomicU32::new(0);

const PR_SET_NAME: usize = 15;
const PR_GET_NAME: usize = 16;
const PR_GET_TID_ADDRESS: usize = 40;

/// Fill in the calling thread's own state: TLS, tid word, robust list, rseq, name.
pub fn describe_current_thread(rec: &mut ThreadRecord) {
    rec.tid = sys::gettid();
    rec.flags = if rec.tid == sys::getpid() { THREAD_IS_MAIN } else { 0 };
    (rec.tls, rec.tls_aux) = dmtcp_arch::current_tls();
    let mut tid_address: usize = 0;
    // SAFETY: PR_GET_TID_ADDRESS writes one word to the pointer.
    if unsafe { syscalls::syscall2(syscalls::Sysno::prctl, PR_GET_TID_ADDRESS, &mut tid_address as *mut usize as usize) }.is_ok() {
        rec.tid_address = tid_address as u64;
    }
    let (mut head, mut len): (usize, usize) = (0, 0);
    // SAFETY: get_robust_list(0, ...) writes the calling thread's head pointer and length.
    if unsafe { syscalls::syscall3(syscalls::Sysno::get_robust_list, 0, &mut head as *mut usize as usize, &mut len as *mut usize as usize) }.is_ok() {
        rec.robust_head = head as u64;
        rec.robust_len = len as u64;
    }
    let rseq_size = RSEQ_SIZE.load(Relaxed);
    if rseq_size != 0 {
        rec.rseq_addr = (rec.tls as usize).wrapping_add(RSEQ_OFFSET.load(Relaxed)) as u64;
        // glibc registers at least the original 32-byte struct rseq, rounded to 32 bytes.
        rec.rseq_len = rseq_size.max(32).div_ceil(32) * 32;
        rec.rseq_sig = dmtcp_arch::RSEQ_SIG;
    }
    // SAFETY: PR_GET_NAME writes at most 16 bytes.
    let _ = unsafe { syscalls::syscall2(syscalls::Sysno::prctl, PR_GET_NAME, rec.comm.as_mut_ptr() as usize) };
}

/// The checkpoint signal handler (SA_SIGINFO, no SA_ONSTACK, SA_RESTART).
pub extern "C" fn on_checkpoint_signal(_sig: i32, _info: *mut libc::siginfo_t, _uctx: *mut libc::c_void) {
    if !SUSPENDING.load(Acquire) {
        return;
    }
    let tid = sys::gettid();
    let n = NUM_SLOTS.load(Acquire);
    let Some(slot) = SLOTS[..n].iter().find(|s| s.tid.load(Acquire) == tid) else {
        return; // a thread born after the scan: the next scan signals it again
    };
    if slot.sp.load(Acquire) != 0 {
        return;
    }
    // SAFETY: only this thread writes its slot's record, before publishing sp.
    describe_current_thread(unsafe { &mut *slot.record.get() });
    slot.vtid.store(crate::pids::to_virtual(tid), Release);
    let park_value = PARK_WORD.load(Acquire);
    let release_value = RESTART_RELEASE.load(Acquire);
    // SAFETY: the slot and the park word are statics; the stack above the saved pointer stays
    // untouched until park returns.
    let restored = unsafe { dmtcp_arch::park(slot.sp.as_ptr(), PARK_WORD.as_ptr(), park_value) };
    if restored == 1 {
        // SAFETY: our own slot's record; the checkpoint thread only reads it.
        let (comm, old_tid) = unsafe { ((*slot.record.get()).comm, (*slot.record.get()).tid) };
        replace_thread(old_tid, sys::gettid());
        crate::pids::thread_restored(slot.vtid.load(Acquire), sys::gettid());
        // SAFETY: comm is a 16-byte buffer.
        let _ = unsafe { syscalls::syscall2(syscalls::Sysno::prctl, PR_SET_NAME, comm.as_ptr() as usize) };
        RESTORED_CHECKINS.fetch_add(1, AcqRel);
        sys::futex_wake_all(&RESTORED_CHECKINS);
        while RESTART_RELEASE.load(Acquire) == release_value {
            sys::futex_wait(&RESTART_RELEASE, release_value);
        }
    }
}

/// Threads of the application, registered by the pthread_create wrapper (and the main thread
/// at start-up). /proc/self/task is not used: under qemu-user it lists the emulator's own
/// threads, which never answer the checkpoint signal.
static REGISTRY: [AtomicU32; MAX_THREADS] = [const { AtomicU32::new(0) }; MAX_THREADS];

pub fn register_thread(tid: u32) {
    for slot in &REGISTRY {
        if slot.compare_exchange(0, tid, AcqRel, Relaxed).is_ok() {
            return;
        }
    }
}

pub fn unregister_thread(tid: u32) {
    for slot in &REGISTRY {
        if slot.compare_exchange(tid, 0, AcqRel, Relaxed).is_ok() {
            return;
        }
    }
}

/// A restored thread has a new tid: swap it in for the one recorded at checkpoint time.
pub fn replace_thread(old: u32, new: u32) {
    for slot in &REGISTRY {
        if slot.compare_exchange(old, new, AcqRel, Relaxed).is_ok() {
            return;
        }
    }
    register_thread(new);
}

/// After fork the child has one thread: forget the others.
pub fn reset_registry(only: u32) {
    for slot in &REGISTRY {
        slot.store(0, Release);
    }
    register_thread(only);
}

/// Registered threads other than `except` that still exist in this process.
fn list_tasks(except: u32, out: &mut Vec<u32>) {
    out.clear();
    let pid = sys::getpid();
    for slot in &REGISTRY {
        let tid = slot.load(Acquire);
        if tid == 0 || tid == except {
            continue;
        }
        if sys::tgkill(pid, tid, 0).is_err() {
            let _ = slot.compare_exchange(tid, 0, AcqRel, Relaxed); // exited without telling us
            continue;
        }
        out.push(tid);
    }
}

/// Stop every other thread of the process in the checkpoint handler. Returns how many.
pub fn suspend_all(ckpt_signal: i32) -> usize {
    let me = sys::gettid();
    let pid = sys::getpid();
    NUM_SLOTS.store(0, Release);
    SUSPENDING.store(true, Release);
    let mut tids = Vec::new();
    let mut rounds = 0u64;
    loop {
        list_tasks(me, &mut tids);
        let mut added = false;
        for &tid in &tids {
            let n = NUM_SLOTS.load(Acquire);
            if SLOTS[..n].iter().any(|s| s.tid.load(Acquire) == tid) || n == MAX_THREADS {
                continue;
            }
            SLOTS[n].sp.store(0, Release);
            SLOTS[n].tid.store(tid, Release);
            NUM_SLOTS.store(n + 1, Release);
            added = true;
        }
        // Signal the unparked ones (again: a thread may have had the signal blocked briefly),
        // drop the ones that exited.
        let n = NUM_SLOTS.load(Acquire);
        let mut pending = 0;
        for s in &SLOTS[..n] {
            let tid = s.tid.load(Acquire);
            if tid == 0 || s.sp.load(Acquire) != 0 {
                continue;
            }
            if (added || rounds.is_multiple_of(100)) && sys::tgkill(pid, tid, ckpt_signal).is_err() {
                s.tid.store(0, Release); // gone
                continue;
            }
            pending += 1;
        }
        if pending == 0 && !added {
            break;
        }
        rounds += 1;
        sys::nanosleep_us(if rounds < 100 { 100 } else { 2000 });
    }
    SLOTS[..NUM_SLOTS.load(Acquire)].iter().filter(|s| s.tid.load(Acquire) != 0).count()
}

/// Records of the parked threads, with their saved contexts.
pub fn parked_records() -> Vec<ThreadRecord> {
    let n = NUM_SLOTS.load(Acquire);
    SLOTS[..n]
        .iter()
        .filter(|s| s.tid.load(Acquire) != 0)
        .map(|s| {
            // SAFETY: the thread published sp (Acquire above) after writing its record.
            let mut r = unsafe { *s.record.get() };
            r.resume_sp = s.sp.load(Acquire) as u64;
            r
        })
        .collect()
}

/// Let the parked threads of the running (not restored) process return from the handler.
pub fn resume_all() {
    SUSPENDING.store(false, Release);
    PARK_WORD.fetch_add(1, AcqRel);
    sys::futex_wake_all(&PARK_WORD);
}

/// In a restored process: wait until every restored thread left the loader's code.
pub fn wait_restored_checkins(expected: usize) {
    loop {
        let seen = RESTORED_CHECKINS.load(Acquire);
        if seen as usize >= expected {
            return;
        }
        sys::futex_wait(&RESTORED_CHECKINS, seen);
    }
}

/// In a restored process: let the restored threads return into the application.
pub fn release_restored() {
    RESTORED_CHECKINS.store(0, Release);
    SUSPENDING.store(false, Release);
    PARK_WORD.fetch_add(1, AcqRel);
    RESTART_RELEASE.fetch_add(1, AcqRel);
    sys::futex_wake_all(&RESTART_RELEASE);
}
