//! SysV semaphore sets and message queues at restart (libdmtcp's preload/src/sysv.rs recorded
//! them): each is brought to its state in the image before the processes run. A set or queue
//! that still exists under its id and key (they outlive the killed processes) is set to the
//! recorded values and messages; a missing one is made again, with its old id where the kernel
//! lets us choose it (/proc/sys/kernel/{sem,msg}_next_id: root, CONFIG_CHECKPOINT_RESTORE).

use dmtcp_engine::meta::{ProcessMeta, SysvKind, SysvObject};

const PROG: &str = "dmtcp_restart";

/// Bring every recorded object to its state (each once, whichever image recorded it).
pub fn restore(metas: &[&ProcessMeta], quiet: bool) {
    let mut done: Vec<(String, SysvKind, i32)> = Vec::new();
    for m in metas {
        // Segments come back with the areas that map them (shared_memory.rs).
        for o in m.sysv.iter().filter(|o| o.kind != SysvKind::SharedMemory) {
            let key = (m.hostname.clone(), o.kind, o.id);
            if done.contains(&key) {
                continue;
            }
            done.push(key);
            if let Err(why) = restore_one(o) {
                if !quiet {
                    eprintln!("{PROG}: SysV {} {} (key {:#x}): {why}", kind_name(o.kind), o.id, o.key);
                }
            }
        }
    }
}

fn kind_name(k: SysvKind) -> &'static str {
    match k {
        SysvKind::Semaphores => "semaphore set",
        SysvKind::MessageQueue => "message queue",
        SysvKind::SharedMemory => "shared memory segment",
    }
}

/// The id of the existing object with this id and key, if any.
fn existing(o: &SysvObject) -> bool {
    let table = match o.kind {
        SysvKind::Semaphores => "/proc/sysvipc/sem",
        SysvKind::MessageQueue => "/proc/sysvipc/msg",
        SysvKind::SharedMemory => "/proc/sysvipc/shm",
    };
    let table = std::fs::read_to_string(table).unwrap_or_default();
    table.lines().skip(1).any(|l| {
        let c: Vec<&str> = l.split_whitespace().collect();
        c.first().and_then(|v| v.parse::<i32>().ok()) == Some(o.key) && c.get(1).and_then(|v| v.parse::<i32>().ok()) == Some(o.id)
    })
}

fn restore_one(o: &SysvObject) -> Result<(), String> {
    let id = if existing(o) { o.id } else { create(o)? };
    match o.kind {
        SysvKind::Semaphores => {
            let mut values = o.values.clone();
            // SAFETY: SETALL reads one unsigned short per semaphore of the set from `values`.
            if !values.is_empty() && unsafe { libc::semctl(id, 0, libc::SETALL, values.as_mut_ptr()) } != 0 {
                return Err(format!("cannot set its values: {}", std::io::Error::last_os_error()));
            }
        }
        SysvKind::SharedMemory => {}
        SysvKind::MessageQueue => {
            drain(id);
            let word = core::mem::size_of::<libc::c_long>();
            for (mtype, bytes) in &o.messages {
                let mut buf = (*mtype as libc::c_long).to_ne_bytes().to_vec();
                buf.truncate(word);
                buf.extend_from_slice(bytes);
                // SAFETY: msgsnd reads a long and bytes.len() bytes from `buf`.
                if unsafe { libc::msgsnd(id, buf.as_ptr().cast(), bytes.len(), libc::IPC_NOWAIT) } != 0 {
                    return Err(format!("cannot put its messages back: {}", std::io::Error::last_os_error()));
                }
            }
        }
    }
    Ok(())
}

/// Empty queue `id` (what the killed processes left, or sent since the checkpoint).
fn drain(id: i32) {
    let mut buf = vec![0u8; core::mem::size_of::<libc::c_long>() + 65536];
    // SAFETY: msgrcv writes a long and at most 65536 bytes into `buf`.
    while unsafe { libc::msgrcv(id, buf.as_mut_ptr().cast(), 65536, 0, libc::IPC_NOWAIT | libc::MSG_NOERROR) } >= 0 {}
}

/// Make the object again, with its old id if the kernel allows.
fn create(o: &SysvObject) -> Result<i32, String> {
    let next = if o.kind == SysvKind::Semaphores { "/proc/sys/kernel/sem_next_id" } else { "/proc/sys/kernel/msg_next_id" };
    let _ = std::fs::write(next, o.id.to_string());
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (o.mode & 0o777) as i32;
    // SAFETY: semget/msgget take plain values.
    let id = unsafe {
        match o.kind {
            SysvKind::Semaphores => libc::semget(o.key, o.values.len().max(1) as i32, flags),
            SysvKind::MessageQueue => libc::msgget(o.key, flags),
            SysvKind::SharedMemory => return Err("is restored with its memory".into()),
        }
    };
    if id < 0 {
        return Err(format!("cannot be made again: {}", std::io::Error::last_os_error()));
    }
    if id != o.id {
        return Err(format!("made again with id {id}: the program's old id no longer names it"));
    }
    Ok(id)
}

/// The segment `o` (a SysV shared memory segment of `size` bytes) at restart: the one that still
/// exists under its id and key (segments outlive the killed processes), or a new one, with its
/// old id where the kernel lets us choose it (shm_next_id). Returns its id, and a warning when
/// the id is not the old one.
pub fn ensure_segment(o: &SysvObject, size: u64) -> Result<(i32, Option<String>), String> {
    if existing(o) {
        return Ok((o.id, None));
    }
    let _ = std::fs::write("/proc/sys/kernel/shm_next_id", o.id.to_string());
    let size = usize::try_from(size).map_err(|_| "is too large".to_string())?;
    let mode = (o.mode & 0o777) as i32;
    // SAFETY: shmget takes plain values.
    let mut id = unsafe { libc::shmget(o.key, size, libc::IPC_CREAT | libc::IPC_EXCL | mode) };
    if id < 0 && o.key != libc::IPC_PRIVATE {
        // Its key is taken by a segment made since: the memory is still shared, under a new id.
        // SAFETY: as above.
        id = unsafe { libc::shmget(libc::IPC_PRIVATE, size, libc::IPC_CREAT | mode) };
    }
    if id < 0 {
        return Err(format!("cannot be made again: {}", std::io::Error::last_os_error()));
    }
    let warning = (id != o.id).then(|| format!("made again with id {id}: the program's old id {} no longer names it", o.id));
    Ok((id, warning))
}
