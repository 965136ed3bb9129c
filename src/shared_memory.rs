//! Shared memory between processes of a restart: every shared anonymous object (MAP_SHARED
//! anonymous memory, a memfd, a SysV segment) that two or more restored areas map is made once
//! by dmtcp_restart as a memfd, filled from the images, and handed to each process's loader
//! (`shm=<area>:<fd>`), which maps it instead of reading the pages itself. Filled here, before
//! anything runs: a loader writing the checkpointed pages into an object that an already
//! resumed process uses would undo that process's writes.
//!
//! A SysV segment the program had not removed is made again (or found again) as a segment,
//! under its old id where the kernel allows, and attached by the loader (`sysv=<area>:<id>`),
//! so that the program's shmid keeps working (shmat, shmctl, shmdt).
//!
//! A memfd that the program also holds as an fd is made here even when one process alone maps
//! it: its fd is reopened on the same object (see [`SharedObjects::object_for`]), so that writes
//! through the fd and through the mapping meet again.

use dmtcp_engine::image::reader::ImageInfo;
use dmtcp_engine::meta::{SysvKind, SysvObject};
use dmtcp_layout::AreaKind;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

/// How the loader gets an area's object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Object {
    /// A memfd of ours (mapped with mmap).
    Memfd(RawFd),
    /// A SysV segment by id (attached with shmat, so that the program's shmid works).
    Sysv(i32),
}

/// The objects, by (image index, area index); the memfds also by (host, object id: low 32 bits
/// of its inode).
#[derive(Default)]
pub struct SharedObjects {
    by_area: HashMap<(usize, usize), Object>,
    by_object: HashMap<(String, u32), RawFd>,
    all: Vec<RawFd>,
}

/// What went wrong making one object (the restart goes on without sharing it).
#[derive(Debug, thiserror::Error)]
pub enum SharedMemoryError {
    #[error("cannot create a shared memory object: {0}")]
    Create(std::io::Error),
    #[error("cannot fill the shared memory object: {0}")]
    Fill(std::io::Error),
}

impl SharedObjects {
    /// `images[i]` = (what image i holds, its raw image file, its host). Staged fds go at or
    /// above `top`.
    pub fn build(images: &[(&ImageInfo, &File, &str)], top: RawFd, quiet: bool) -> SharedObjects {
        let mut groups: HashMap<(&str, u32), Vec<(usize, usize)>> = HashMap::new();
        for (i, (info, _, host)) in images.iter().enumerate() {
            for (j, a) in info.areas.iter().enumerate() {
                if a.area_kind() == AreaKind::SharedAnon && a.shm_id != 0 {
                    groups.entry((host, a.shm_id)).or_default().push((i, j));
                }
            }
        }
        // Objects the programs hold as memfd fds, by (host, object id).
        let held: std::collections::HashSet<(&str, u32)> = images
            .iter()
            .flat_map(|(info, _, host)| info.meta.fds.iter().filter(|e| e.path.starts_with("/memfd:")).map(move |e| (*host, e.inode as u32)))
            .collect();
        let mut out = SharedObjects::default();
        for (key, members) in groups {
            if let Some(segment) = live_segment(images, key) {
                match make_segment(images, &members, segment) {
                    Ok(id) => out.by_area.extend(members.into_iter().map(|m| (m, Object::Sysv(id)))),
                    Err(e) if !quiet => eprintln!("dmtcp_restart: SysV shared memory segment {}: {e}", segment.id),
                    Err(_) => {}
                }
                continue;
            }
            if members.len() < 2 && !held.contains(&key) {
                continue;
            }
            match make_object(images, &members) {
                Ok(f) => {
                    // SAFETY: F_DUPFD_CLOEXEC of the memfd we own, which is then closed.
                    let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
                    if fd < 0 {
                        continue;
                    }
                    out.all.push(fd);
                    out.by_area.extend(members.into_iter().map(|m| (m, Object::Memfd(fd))));
                    out.by_object.insert((key.0.to_string(), key.1), fd);
                }
                Err(e) => {
                    if !quiet {
                        eprintln!("dmtcp_restart: {e}; processes that shared it get copies of their own");
                    }
                }
            }
        }
        out
    }

    /// In the restarted process of image `image`: the loader's `shm=` arguments, with the fds
    /// (duplicated at or above `top`, inherited by the loader) that must stay open.
    pub fn loader_args(&self, image: usize, top: RawFd) -> (Vec<String>, Vec<RawFd>) {
        let mut args = Vec::new();
        let mut fds = Vec::new();
        let mut mine: Vec<(usize, Object)> = self.by_area.iter().filter(|((i, _), _)| *i == image).map(|(&(_, j), &o)| (j, o)).collect();
        mine.sort_unstable_by_key(|&(j, _)| j);
        for (area, object) in mine.into_iter().take(64) {
            let fd = match object {
                Object::Sysv(id) => {
                    args.push(format!("sysv={area}:{id}"));
                    continue;
                }
                Object::Memfd(fd) => fd,
            };
            // SAFETY: F_DUPFD (no close-on-exec) of our own fd.
            let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD, top) };
            if dup >= 0 {
                args.push(format!("shm={area}:{dup}"));
                fds.push(dup);
            }
        }
        (args, fds)
    }

    /// The object remade for the memfd with this inode on `host`, if the images map it.
    pub fn object_for(&self, host: &str, inode: u64) -> Option<RawFd> {
        self.by_object.get(&(host.to_string(), inode as u32)).copied()
    }

    /// In a process that restores no image.
    pub fn close_all(&self) {
        for &fd in &self.all {
            // SAFETY: our own memfds, unused here.
            unsafe { libc::close(fd) };
        }
    }
}

/// The SysV segment record behind object `key` (host, id), if it is one the program had not
/// removed (IPC_RMID): it comes back as a segment. A removed one, which no shmid names any more,
/// is anonymous shared memory from then on (a memfd).
fn live_segment<'i>(images: &[(&'i ImageInfo, &File, &str)], (host, id): (&str, u32)) -> Option<&'i SysvObject> {
    const SHM_DEST: u32 = 0o1000;
    images
        .iter()
        .filter(|(_, _, h)| *h == host)
        .flat_map(|(info, _, _)| info.meta.sysv.iter())
        .find(|o| o.kind == SysvKind::SharedMemory && o.id as u32 == id && o.mode & SHM_DEST == 0)
}

/// The segment again (crate::sysv::ensure_segment), filled with every page any member stored.
fn make_segment(images: &[(&ImageInfo, &File, &str)], members: &[(usize, usize)], o: &SysvObject) -> Result<i32, String> {
    let size = members.iter().map(|&(i, j)| images[i].0.areas[j].file_offset + images[i].0.areas[j].len()).max().unwrap_or(0);
    let (id, warning) = crate::sysv::ensure_segment(o, size)?;
    if let Some(w) = warning {
        eprintln!("dmtcp_restart: SysV shared memory segment {}: {w}", o.id);
    }
    // SAFETY: attaching the segment anywhere in this process, to fill it; detached below.
    let at = unsafe { libc::shmat(id, core::ptr::null(), 0) };
    if at as isize == -1 {
        return Err(format!("cannot attach it to fill it: {}", std::io::Error::last_os_error()));
    }
    let filled = fill(images, members, &mut |offset, bytes| {
        if offset + bytes.len() as u64 > size {
            return Err(std::io::Error::other("a page lies beyond the segment"));
        }
        // SAFETY: the segment is mapped at `at` for at least `size` bytes (checked above).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), (at as *mut u8).add(offset as usize), bytes.len()) };
        Ok(())
    });
    // SAFETY: detaching what we attached above.
    unsafe { libc::shmdt(at) };
    filled.map_err(|e| format!("cannot fill it: {e}"))?;
    Ok(id)
}

/// Every page any member stored, read from its image and handed to `put` at its offset in the
/// object. All members stored the same memory at the same moment, each the pages it had touched.
fn fill(
    images: &[(&ImageInfo, &File, &str)],
    members: &[(usize, usize)],
    put: &mut dyn FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    for &(i, j) in members {
        let (info, raw, _) = images[i];
        let a = &info.areas[j];
        let page = u64::from(info.header.page_size);
        let runs = info.runs.get(a.runs_index as usize..(a.runs_index as usize).saturating_add(a.num_runs as usize)).unwrap_or(&[]);
        let mut data = a.data_off;
        for run in runs {
            let mut buf = vec![0u8; (run.num_pages * page) as usize];
            raw.read_exact_at(&mut buf, data)?;
            put(a.file_offset + run.first_page * page, &buf)?;
            data += buf.len() as u64;
        }
    }
    Ok(())
}

/// A memfd as large as the object's largest use, with every page any member stored.
fn make_object(images: &[(&ImageInfo, &File, &str)], members: &[(usize, usize)]) -> Result<File, SharedMemoryError> {
    let fd = nix::sys::memfd::memfd_create(c"dmtcp-shm", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SharedMemoryError::Create(std::io::Error::from_raw_os_error(e as i32)))?;
    let object = File::from(fd);
    let size = members.iter().map(|&(i, j)| images[i].0.areas[j].file_offset + images[i].0.areas[j].len()).max().unwrap_or(0);
    object.set_len(size).map_err(SharedMemoryError::Create)?;
    fill(images, members, &mut |offset, bytes| object.write_all_at(bytes, offset)).map_err(SharedMemoryError::Fill)?;
    Ok(object)
}
