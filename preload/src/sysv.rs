//! SysV semaphore sets and message queues the program uses, and its shared memory segments. They live in the kernel, not in an
//! fd table: semget() and msgget() are wrapped to learn their ids, and at checkpoint time (every
//! process of the computation suspended) each set's values and each queue's messages are read
//! without changing them (semctl GETALL, msgrcv with MSG_COPY) into the image's metadata, from
//! which dmtcp_restart makes them again (src/sysv.rs of the commands). Attached segments are
//! found in /proc/self/maps; their contents are the image's areas (src/shared_memory.rs).
//!
//! The wrappers run on the application's threads (no allocation: a fixed table of atomics); the
//! capture runs on the checkpoint thread (allocates; our own allocator).

use core::sync::atomic::{AtomicI32, AtomicUsize, Ordering::*};
use dmtcp_engine::meta::{SysvKind, SysvObject};
use libc::{c_int, key_t};

/// Ids seen, as (kind << 31 | id) + 1 (0 = empty slot). Ids are non-negative ints.
const SLOTS: usize = 64;
static SEEN: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static SEEN_KIND: [AtomicI32; SLOTS] = [const { AtomicI32::new(0) }; SLOTS];
static REAL_SEMGET: AtomicUsize = AtomicUsize::new(0);
static REAL_MSGGET: AtomicUsize = AtomicUsize::new(0);

type GetFn = unsafe extern "C" fn(key_t, c_int, c_int) -> c_int;
type MsgGetFn = unsafe extern "C" fn(key_t, c_int) -> c_int;

/// Resolve glibc's semget and msgget (dlsym locks: before any thread is stopped).
pub fn resolve() {
    // SAFETY: dlsym with NUL-terminated names.
    unsafe {
        REAL_SEMGET.store(libc::dlsym(libc::RTLD_NEXT, c"semget".as_ptr()) as usize, Release);
        REAL_MSGGET.store(libc::dlsym(libc::RTLD_NEXT, c"msgget".as_ptr()) as usize, Release);
    }
}

fn remember(kind: SysvKind, id: c_int) {
    if id < 0 {
        return;
    }
    let k = kind as i32;
    for (slot, kind_slot) in SEEN.iter().zip(&SEEN_KIND) {
        let cur = slot.load(Acquire);
        if cur == id + 1 && kind_slot.load(Acquire) == k {
            return;
        }
        if cur == 0 {
            kind_slot.store(k, Release);
            if slot.compare_exchange(0, id + 1, AcqRel, Acquire).is_ok() {
                return;
            }
        }
    }
}

fn enosys() -> c_int {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = libc::ENOSYS };
    -1
}

/// semget(2), noting the set's id.
///
/// # Safety
/// As semget(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn semget(key: key_t, nsems: c_int, flags: c_int) -> c_int {
    let f = REAL_SEMGET.load(Acquire);
    if f == 0 {
        return enosys(); // not resolved yet: before libdmtcp's constructor, or no glibc
    }
    // SAFETY: glibc's semget, resolved by dlsym.
    let id = unsafe { core::mem::transmute::<usize, GetFn>(f)(key, nsems, flags) };
    remember(SysvKind::Semaphores, id);
    id
}

/// msgget(2), noting the queue's id.
///
/// # Safety
/// As msgget(2).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn msgget(key: key_t, flags: c_int) -> c_int {
    let f = REAL_MSGGET.load(Acquire);
    if f == 0 {
        return enosys();
    }
    // SAFETY: glibc's msgget, resolved by dlsym.
    let id = unsafe { core::mem::transmute::<usize, MsgGetFn>(f)(key, flags) };
    remember(SysvKind::MessageQueue, id);
    id
}

/// The columns of the row for object `id` in a /proc/sysvipc table (key, id, perms, ...).
fn row_of(table: &str, id: i32) -> Option<Vec<&str>> {
    table.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()).find(|c| c.get(1).and_then(|v| v.parse::<i32>().ok()) == Some(id))
}

/// A row's perms column (printed in octal).
fn perms(cols: &[&str]) -> u32 {
    cols.get(2).and_then(|v| u32::from_str_radix(v, 8).ok()).unwrap_or(0o600)
}

/// The SysV shared memory segments attached in this process (their maps entries are named
/// /SYSV<key> and carry the segment id as inode): key, id and mode from /proc/sysvipc/shm.
fn attached_segments() -> Vec<SysvObject> {
    let table = std::fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    let maps = dmtcp_engine::procfs::maps::read_self_maps().unwrap_or_default();
    let mut out: Vec<SysvObject> = Vec::new();
    for m in maps.iter().filter(|m| m.path.starts_with("/SYSV")) {
        let Ok(id) = i32::try_from(m.inode) else { continue };
        if out.iter().any(|o| o.id == id) {
            continue;
        }
        // key shmid perms size ...
        let Some(cols) = row_of(&table, id) else { continue };
        let key = cols.first().and_then(|v| v.parse::<i32>().ok()).unwrap_or(0);
        out.push(SysvObject { kind: SysvKind::SharedMemory, key, id, mode: perms(&cols), values: Vec::new(), messages: Vec::new() });
    }
    out
}

/// The state of every set and queue this process used that still exists, and the shared memory
/// segments it has attached.
pub fn capture() -> Vec<SysvObject> {
    let sems = std::fs::read_to_string("/proc/sysvipc/sem").unwrap_or_default();
    let msgs = std::fs::read_to_string("/proc/sysvipc/msg").unwrap_or_default();
    let mut out = Vec::new();
    for (slot, kind_slot) in SEEN.iter().zip(&SEEN_KIND) {
        let v = slot.load(Acquire);
        if v == 0 {
            continue;
        }
        let id = v - 1;
        let kind = if kind_slot.load(Acquire) == SysvKind::Semaphores as i32 { SysvKind::Semaphores } else { SysvKind::MessageQueue };
        let table = if kind == SysvKind::Semaphores { &sems } else { &msgs };
        // key id perms (nsems | cbytes qnum) ...
        let Some(cols) = row_of(table, id) else {
            continue; // removed since
        };
        let num = |i: usize| cols.get(i).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
        let mut obj = SysvObject { kind, key: num(0) as i32, id, mode: perms(&cols), values: Vec::new(), messages: Vec::new() };
        match kind {
            SysvKind::Semaphores => {
                let n = usize::try_from(num(3)).unwrap_or(0).min(32000);
                let mut values = vec![0u16; n];
                // SAFETY: GETALL writes n unsigned shorts into `values`.
                if n > 0 && unsafe { libc::semctl(id, 0, libc::GETALL, values.as_mut_ptr()) } == 0 {
                    obj.values = values;
                }
            }
            SysvKind::MessageQueue => obj.messages = copy_messages(id, num(4)),
            SysvKind::SharedMemory => {}
        }
        out.push(obj);
    }
    out.extend(attached_segments());
    out
}

/// Every message of queue `id` (`count` of them), copied in place with MSG_COPY (the queue
/// keeps them).
fn copy_messages(id: i32, count: i64) -> Vec<(i64, Vec<u8>)> {
    const MSG_COPY: c_int = 0o40000;
    const MAX: usize = 65536;
    let word = core::mem::size_of::<libc::c_long>();
    let mut buf = vec![0u8; word + MAX];
    let mut out = Vec::new();
    for i in 0..count.clamp(0, 100_000) {
        // SAFETY: msgrcv writes a long and at most MAX bytes into `buf`; MSG_COPY does not remove.
        let n = unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), MAX, i as libc::c_long, libc::IPC_NOWAIT | MSG_COPY) };
        if n < 0 {
            break;
        }
        let mut t = [0u8; 8];
        t[..word].copy_from_slice(&buf[..word]);
        let mtype = if word == 8 { i64::from_ne_bytes(t) } else { i64::from(i32::from_ne_bytes([t[0], t[1], t[2], t[3]])) };
        out.push((mtype, buf[word..word + n as usize].to_vec()));
    }
    out
}
