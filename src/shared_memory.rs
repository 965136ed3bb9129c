//! Shared memory between processes of a restart: every shared anonymous object (MAP_SHARED
//! anonymous memory, a memfd, a SysV segment) that two or more restored areas map is made once
//! by dmtcp_restart as a memfd, filled from the images, and handed to each process's loader
//! (`shm=<area>:<fd>`), which maps it instead of reading the pages itself. Filled here, before
//! anything runs: a loader writing the checkpointed pages into an object that an already
//! resumed process uses would undo that process's writes.
//!
//! A memfd that the program also holds as an fd is made here even when one process alone maps
//! it: its fd is reopened on the same object (see [`SharedObjects::object_for`]), so that writes
//! through the fd and through the mapping meet again.

use dmtcp_engine::image::reader::ImageInfo;
use dmtcp_layout::AreaKind;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

/// The memfds, by (image index, area index) and by (host, object id: low 32 bits of its inode).
#[derive(Default)]
pub struct SharedObjects {
    by_area: HashMap<(usize, usize), RawFd>,
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
        for (key, members) in groups.into_iter().filter(|(key, m)| m.len() > 1 || held.contains(key)) {
            match make_object(images, &members) {
                Ok(f) => {
                    // SAFETY: F_DUPFD_CLOEXEC of the memfd we own, which is then closed.
                    let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
                    if fd < 0 {
                        continue;
                    }
                    out.all.push(fd);
                    out.by_area.extend(members.into_iter().map(|m| (m, fd)));
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
        let mut mine: Vec<(usize, RawFd)> = self.by_area.iter().filter(|((i, _), _)| *i == image).map(|(&(_, j), &fd)| (j, fd)).collect();
        mine.sort_unstable();
        for (area, fd) in mine.into_iter().take(64) {
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

/// A memfd as large as the object's largest use, with every page any member stored.
fn make_object(images: &[(&ImageInfo, &File, &str)], members: &[(usize, usize)]) -> Result<File, SharedMemoryError> {
    let fd = nix::sys::memfd::memfd_create(c"dmtcp-shm", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .map_err(|e| SharedMemoryError::Create(std::io::Error::from_raw_os_error(e as i32)))?;
    let object = File::from(fd);
    let size = members.iter().map(|&(i, j)| images[i].0.areas[j].file_offset + images[i].0.areas[j].len()).max().unwrap_or(0);
    object.set_len(size).map_err(SharedMemoryError::Create)?;
    // All members stored the same memory at the same moment, each the pages it had touched.
    for &(i, j) in members {
        let (info, raw, _) = images[i];
        let a = &info.areas[j];
        let page = u64::from(info.header.page_size);
        let runs = info.runs.get(a.runs_index as usize..(a.runs_index as usize).saturating_add(a.num_runs as usize)).unwrap_or(&[]);
        let mut data = a.data_off;
        for run in runs {
            let mut buf = vec![0u8; (run.num_pages * page) as usize];
            raw.read_exact_at(&mut buf, data).map_err(SharedMemoryError::Fill)?;
            object.write_all_at(&buf, a.file_offset + run.first_page * page).map_err(SharedMemoryError::Fill)?;
            data += buf.len() as u64;
        }
    }
    Ok(object)
}
