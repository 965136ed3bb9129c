//! Process metadata stored postcard-encoded in the image (the part only std-side tools read).

use serde::{Deserialize, Serialize};

/// What kind of object an fd referred to at checkpoint time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum FdKind {
    /// A regular file or a directory, reopened by path at restart.
    File,
    /// A character device such as /dev/null or a terminal.
    CharDevice,
    Pipe,
    Socket,
    /// Anything else (eventfd, epoll, ...): not restored yet, a /dev/null placeholder keeps the number.
    Other,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct FdEntry {
    pub fd: i32,
    pub kind: FdKind,
    /// The readlink of /proc/self/fd/N (for deleted files it ends in " (deleted)").
    pub path: String,
    /// open(2) flags from /proc/self/fdinfo (O_APPEND, O_RDWR, ...).
    pub flags: i32,
    /// File offset from /proc/self/fdinfo.
    pub offset: u64,
    pub cloexec: bool,
}

/// Everything about the process that the restart loader does not need but the tools do.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ProcessMeta {
    /// DMTCP's unique process id: "<hostid>-<pid at launch>-<launch time>" in hex.
    pub unique_pid: String,
    /// The program name (argv[0] basename), as in ckpt_<prog>_<id>.dmtcp.
    pub prog: String,
    pub argv: Vec<String>,
    pub pid: u32,
    pub ppid: u32,
    pub hostname: String,
    pub cwd: String,
    pub exe: String,
    /// Seconds since the epoch when the image was written.
    pub ckpt_time: u64,
    /// Checkpoint generation of the computation (1 for the first checkpoint).
    pub generation: u64,
    pub kernel_release: String,
    /// gnu_get_libc_version() of the checkpointed process.
    pub libc_version: String,
    pub fds: Vec<FdEntry>,
    /// The fd number the checkpoint thread talks to the coordinator on; dmtcp_restart puts a
    /// fresh connection there.
    pub coord_fd: i32,
    pub coord_host: String,
    pub coord_port: u16,
    pub ckpt_dir: String,
    pub gzip: bool,
}

/// Where `dmtcp_launch --ckpt-open-files` keeps the contents of the files open at checkpoint
/// time: `<image name without .dmtcp>_files/<fd>` beside the image (DMTCP's layout).
pub fn saved_files_dir(image: &std::path::Path) -> std::path::PathBuf {
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("ckpt");
    image.with_file_name(format!("{}_files", name.strip_suffix(".dmtcp").unwrap_or(name)))
}
