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
    /// Identity of the object, unique on the host while it is open: st_ino of a pipe or socket
    /// (the N of `pipe:[N]`), so that a restart gives every process that held one the same new one.
    pub inode: u64,
    /// The same open file description (one offset, one set of flags) as an fd listed earlier:
    /// in this process's own table, or in its parent's (fork shares them). Restart opens the
    /// description once and hands it to every holder.
    pub shares: Option<FdRef>,
    /// What was queued for reading, left in place at checkpoint (peeked, not consumed) and put
    /// back into the new object at restart: one chunk for a pipe or stream socket, one per
    /// message for a datagram or seqpacket socket.
    pub queued: Vec<Vec<u8>>,
    /// Sockets: the other end of a connected UNIX socket (its inode), type and state.
    pub socket: Option<SocketInfo>,
    /// Pipes: the capacity (F_GETPIPE_SZ), 0 if unknown.
    pub pipe_size: u32,
    /// eventfd, timerfd, signalfd and epoll instances: what recreates them.
    pub anon: Option<AnonFd>,
    /// A pseudo-terminal's master (/dev/ptmx) or slave (/dev/pts/N).
    pub pty: Option<PtyInfo>,
    /// A POSIX message queue (mq_open).
    pub mqueue: Option<MqueueInfo>,
}

/// A POSIX message queue: enough to make it again with the messages it held.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MqueueInfo {
    /// Its name, with the leading slash (as mq_open takes it).
    pub name: String,
    pub mode: u32,
    pub maxmsg: i64,
    pub msgsize: i64,
    /// (priority, bytes), in the order mq_receive returned them.
    pub messages: Vec<(u32, Vec<u8>)>,
}

/// One end of a pseudo-terminal.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PtyInfo {
    pub master: bool,
    /// N of /dev/pts/N.
    pub index: u32,
    /// The terminal's settings (`struct termios` as tcgetattr filled it; same CPU at restart).
    pub termios: Vec<u8>,
    /// rows, columns, x and y pixels (TIOCGWINSZ).
    pub winsize: [u16; 4],
}

/// What had been written to the master of a pseudo-terminal and the programs on its slave side
/// had not read yet (keys typed ahead), recorded by the master's holder. Canonical-mode line
/// boundaries are the newlines in `bytes`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PtyInput {
    /// N of /dev/pts/N.
    pub index: u32,
    pub bytes: Vec<u8>,
}

/// The controlling terminal of a process, when it is a pseudo-terminal.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ctty {
    /// N of /dev/pts/N.
    pub index: u32,
    /// Its foreground process group at checkpoint time.
    pub foreground_pgid: u32,
}

/// The state of an anonymous-inode fd, from /proc/self/fdinfo.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum AnonFd {
    EventFd {
        count: u64,
        semaphore: bool,
    },
    TimerFd {
        clockid: i32,
        /// Expirations not read yet.
        ticks: u64,
        /// Time left until the next expiration, and the period (nanoseconds; 0 = disarmed / one-shot).
        value_ns: u64,
        interval_ns: u64,
    },
    SignalFd {
        /// Bit n-1 is signal n.
        mask: u64,
    },
    Epoll {
        targets: Vec<EpollTarget>,
    },
}

/// One fd an epoll instance watches, by the fd number the program registered it with.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollTarget {
    pub fd: i32,
    pub events: u32,
    pub data: u64,
}

/// One fd of one process: `pid` as it was at checkpoint time.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdRef {
    pub pid: u32,
    pub fd: i32,
}

/// A socket: enough to make a new one like it (UNIX, IPv4 and IPv6; others carry only family
/// and type and are not restored).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// AF_UNIX, AF_INET, AF_INET6, ...
    pub family: i32,
    /// SOCK_STREAM, SOCK_DGRAM or SOCK_SEQPACKET.
    pub sock_type: i32,
    /// listen() was called on it.
    pub listening: bool,
    /// UNIX: the inode of the connected peer (a socketpair's other end, or the other side of
    /// an accepted connection), if any.
    pub peer_inode: Option<u64>,
    /// UNIX: the bound address (sun_path bytes, as given to bind; an abstract name starts
    /// with NUL), if any.
    pub name: Option<Vec<u8>>,
    /// UNIX, bound to a path: the socket file's permission bits (GNU screen keeps a session's
    /// attached/detached state in them).
    pub path_mode: Option<u32>,
    /// IPv4/IPv6: the local and the connected remote address ("127.0.0.1:80", "[::1]:80").
    pub local: Option<String>,
    /// IPv4/IPv6: as `local`. UNIX: set when the socket is connected: the peer's bound name
    /// ("" if it has none, as a socketpair's end); images before this was recorded have None.
    pub remote: Option<String>,
}

impl FdEntry {
    /// An entry with no sharing, inode or queued data (what /proc alone tells).
    pub fn basic(fd: i32, kind: FdKind, path: String, flags: i32, offset: u64, cloexec: bool) -> FdEntry {
        FdEntry {
            fd,
            kind,
            path,
            flags,
            offset,
            cloexec,
            inode: 0,
            shares: None,
            queued: Vec::new(),
            socket: None,
            pipe_size: 0,
            anon: None,
            pty: None,
            mqueue: None,
        }
    }
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
    /// Since 1.2: the controlling terminal, if it is a pseudo-terminal.
    pub ctty: Option<Ctty>,
    /// Since 1.2: children that had exited but were not reaped yet (pid, wait status), made
    /// again at restart so that the program's waitpid() finds them.
    pub zombies: Vec<(u32, i32)>,
    /// Since 1.2: SysV semaphore sets and message queues the process used.
    pub sysv: Vec<SysvObject>,
    /// Since 1.3: the unread input of each pseudo-terminal whose master this process holds.
    /// Fields added after 1.2 go here, at the end (see [`ProcessMeta::decode`]).
    pub pty_input: Vec<PtyInput>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SysvKind {
    Semaphores = 1,
    MessageQueue = 2,
    /// A shared memory segment the process had attached (its contents are in the image's
    /// areas, which name it by shm_id); added after 1.2's first release, at the end so that
    /// earlier records decode the same.
    SharedMemory = 3,
}

/// A SysV semaphore set, message queue or shared memory segment at checkpoint time.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SysvObject {
    pub kind: SysvKind,
    /// Its key (0 = IPC_PRIVATE) and id.
    pub key: i32,
    pub id: i32,
    /// Permission bits; for a segment also SHM_DEST (0o1000: IPC_RMID was called on it).
    pub mode: u32,
    /// Semaphores: every semaphore's value.
    pub values: Vec<u16>,
    /// Message queue: (type, bytes) in queue order.
    pub messages: Vec<(i64, Vec<u8>)>,
}

impl ProcessMeta {
    /// Decode the metadata of an image of format minor version `minor`.
    pub fn decode(bytes: &[u8], minor: u16) -> Result<ProcessMeta, postcard::Error> {
        match minor {
            0 | 1 => postcard::from_bytes::<v1::ProcessMeta>(bytes).map(ProcessMeta::from),
            2 => {
                // postcard writes a struct as its fields one after the other, and 1.3 only added
                // fields at the end: 1.2 metadata followed by the encoding of those fields'
                // empty values is 1.3 metadata.
                let mut b = bytes.to_vec();
                b.extend(postcard::to_allocvec(&Vec::<PtyInput>::new())?);
                postcard::from_bytes(&b)
            }
            _ => postcard::from_bytes(bytes),
        }
    }
}

/// The metadata of format 1.0 and 1.1 images (fd entries without sharing, inodes or queued data).
mod v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct FdEntry {
        pub fd: i32,
        pub kind: super::FdKind,
        pub path: String,
        pub flags: i32,
        pub offset: u64,
        pub cloexec: bool,
    }

    #[derive(Deserialize)]
    #[cfg_attr(test, derive(serde::Serialize))]
    pub struct ProcessMeta {
        pub unique_pid: String,
        pub prog: String,
        pub argv: Vec<String>,
        pub pid: u32,
        pub ppid: u32,
        pub hostname: String,
        pub cwd: String,
        pub exe: String,
        pub ckpt_time: u64,
        pub generation: u64,
        pub kernel_release: String,
        pub libc_version: String,
        pub fds: Vec<FdEntry>,
        pub coord_fd: i32,
        pub coord_host: String,
        pub coord_port: u16,
        pub ckpt_dir: String,
        pub gzip: bool,
    }
}

impl From<v1::ProcessMeta> for ProcessMeta {
    fn from(m: v1::ProcessMeta) -> ProcessMeta {
        ProcessMeta {
            unique_pid: m.unique_pid,
            prog: m.prog,
            argv: m.argv,
            pid: m.pid,
            ppid: m.ppid,
            hostname: m.hostname,
            cwd: m.cwd,
            exe: m.exe,
            ckpt_time: m.ckpt_time,
            generation: m.generation,
            kernel_release: m.kernel_release,
            libc_version: m.libc_version,
            fds: m.fds.into_iter().map(|e| FdEntry::basic(e.fd, e.kind, e.path, e.flags, e.offset, e.cloexec)).collect(),
            coord_fd: m.coord_fd,
            coord_host: m.coord_host,
            coord_port: m.coord_port,
            ckpt_dir: m.ckpt_dir,
            gzip: m.gzip,
            ctty: None,
            zombies: Vec::new(),
            sysv: Vec::new(),
            pty_input: Vec::new(),
        }
    }
}

/// Where the contents of open files are kept beside an image: `<image name without
/// .dmtcp>_files/` (DMTCP's layout). `dmtcp_launch --ckpt-open-files` saves each open file there
/// as `<fd>`; deleted files and memfds are always saved there (see [`unlinked_name`]).
pub fn saved_files_dir(image: &std::path::Path) -> std::path::PathBuf {
    let name = image.file_name().and_then(|n| n.to_str()).unwrap_or("ckpt");
    image.with_file_name(format!("{}_files", name.strip_suffix(".dmtcp").unwrap_or(name)))
}

/// Is an open file's path (readlink of /proc/self/fd/N) one that no name reaches: a deleted
/// file or a memfd (whose contents only the image can keep)?
pub fn is_unlinked(path: &str) -> bool {
    path.ends_with(" (deleted)") || path.starts_with("/memfd:")
}

/// The name, in [`saved_files_dir`], of the saved contents of the unlinked file with this inode.
pub fn unlinked_name(inode: u64) -> String {
    format!("ino-{inode}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old_meta() -> v1::ProcessMeta {
        v1::ProcessMeta {
            unique_pid: "u".into(),
            prog: "p".into(),
            argv: vec!["p".into(), "x".into()],
            pid: 10,
            ppid: 1,
            hostname: "h".into(),
            cwd: "/".into(),
            exe: "/bin/p".into(),
            ckpt_time: 5,
            generation: 2,
            kernel_release: "6.1".into(),
            libc_version: "2.36".into(),
            fds: vec![v1::FdEntry { fd: 3, kind: FdKind::Pipe, path: "pipe:[7]".into(), flags: 1, offset: 0, cloexec: true }],
            coord_fd: 821,
            coord_host: "localhost".into(),
            coord_port: 7779,
            ckpt_dir: "/tmp".into(),
            gzip: true,
        }
    }

    #[test]
    fn metadata_of_format_1_1_still_decodes() {
        let bytes = postcard::to_allocvec(&old_meta()).unwrap();
        let m = ProcessMeta::decode(&bytes, 1).unwrap();
        assert_eq!(m.fds, vec![FdEntry::basic(3, FdKind::Pipe, "pipe:[7]".into(), 1, 0, true)]);
        assert_eq!((m.pid, m.coord_fd, m.gzip, m.argv.len()), (10, 821, true, 2));
    }

    #[test]
    fn metadata_of_format_1_3_round_trips() {
        let mut m = ProcessMeta::from(old_meta());
        m.fds[0].inode = 7;
        m.fds[0].queued = vec![b"abc".to_vec(), vec![0; 5]];
        m.fds[0].shares = Some(FdRef { pid: 1, fd: 4 });
        m.fds[0].socket = Some(SocketInfo {
            family: 1,
            sock_type: 5,
            listening: false,
            peer_inode: Some(8),
            name: None,
            path_mode: None,
            local: None,
            remote: None,
        });
        m.fds[0].anon = Some(AnonFd::Epoll { targets: vec![EpollTarget { fd: 4, events: 1, data: u64::MAX }] });
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert_eq!(ProcessMeta::decode(&bytes, 3).unwrap(), m);
    }

    #[test]
    fn metadata_of_format_1_2_still_decodes() {
        let mut m = ProcessMeta::from(old_meta());
        m.fds[0].pty = Some(PtyInfo { master: true, index: 4, termios: vec![1, 2], winsize: [24, 80, 0, 0] });
        m.sysv = vec![SysvObject { kind: SysvKind::Semaphores, key: 1, id: 2, mode: 0o600, values: vec![3], messages: Vec::new() }];
        // 1.2 wrote everything up to `sysv`: the 1.3 encoding without the trailing empty list.
        let mut v1_2 = postcard::to_allocvec(&m).unwrap();
        assert_eq!(v1_2.pop(), Some(0), "pty_input (empty) is the last byte");
        assert_eq!(ProcessMeta::decode(&v1_2, 2).unwrap(), m);
        m.pty_input = vec![PtyInput { index: 4, bytes: b"typed\nahead".to_vec() }];
        assert_eq!(ProcessMeta::decode(&postcard::to_allocvec(&m).unwrap(), 3).unwrap(), m);
    }
}
