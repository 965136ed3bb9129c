//! dmtcp_restart's side of the pid map (format in dmtcp_engine::pidmap): one entry per restarted
//! process and per recreated zombie, each filled in by the process that learns the new pid.
//! libdmtcp.so in the restored processes reads it to translate the pids the program knows.

use dmtcp_engine::meta::ProcessMeta;
use dmtcp_engine::pidmap;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileExt;

pub struct PidMapFile {
    file: std::fs::File,
    /// Entry index of the first zombie of image i (the images take entries 0..n).
    zombie_base: Vec<u32>,
}

impl PidMapFile {
    /// A map with room for every process of `metas` and their unreaped children.
    pub fn create(metas: &[&ProcessMeta]) -> std::io::Result<Self> {
        let mut zombie_base = Vec::with_capacity(metas.len());
        let mut next = metas.len() as u32;
        for m in metas {
            zombie_base.push(next);
            next += m.zombies.len() as u32;
        }
        let fd = nix::sys::memfd::memfd_create(pidmap::PIDMAP_NAME, nix::sys::memfd::MFdFlags::empty()).map_err(std::io::Error::from)?;
        let file = std::fs::File::from(fd);
        file.write_all_at(&pidmap::header(next), 0)?;
        file.set_len(8 + u64::from(next) * 8)?;
        Ok(PidMapFile { file, zombie_base })
    }

    fn put(&self, index: u32, old_pid: u32, new_pid: u32) {
        let (at, bytes) = pidmap::entry(index, old_pid, new_pid);
        // A failed write leaves the entry empty: the restored processes then wait for it and warn.
        let _ = self.file.write_all_at(&bytes, at);
    }

    /// The process of image `index` (pid `old_pid` at checkpoint time) now has pid `new_pid`.
    pub fn record_process(&self, index: usize, old_pid: u32, new_pid: u32) {
        self.put(index as u32, old_pid, new_pid);
    }

    /// Unreaped child `k` of image `index` was made again with pid `new_pid`.
    pub fn record_zombie(&self, index: usize, k: usize, old_pid: u32, new_pid: u32) {
        if let Some(base) = self.zombie_base.get(index) {
            self.put(base + k as u32, old_pid, new_pid);
        }
    }

    /// The current pid of the process that had `old_pid`, if it is known yet.
    pub fn real_pid(&self, old_pid: u32) -> Option<u32> {
        let len = self.file.metadata().ok()?.len();
        let mut bytes = vec![0u8; usize::try_from(len).ok()?];
        self.file.read_exact_at(&mut bytes, 0).ok()?;
        pidmap::parse(&bytes)?.entries.into_iter().find(|&(old, _)| old == old_pid).map(|(_, new)| new)
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}
