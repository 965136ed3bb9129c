//! What an fd table entry needs beyond /proc/self/fd and fdinfo, read while every process of the
//! computation is suspended: the inode of pipes, sockets and files, the bytes queued in them (peeked,
//! never consumed, so the running computation loses nothing), UNIX socket peers, and which fds
//! share one open file description with an earlier fd or with the parent's (kcmp).
//!
//! Runs on the checkpoint thread while the application's threads are parked: it allocates (our
//! own allocator) but takes no glibc lock.

use super::unix_diag;
use crate::meta::{Ctty, FdEntry, FdKind, FdRef, MqueueInfo, PtyInfo, SocketInfo};
use std::io;

/// Largest amount of queued data kept per fd; a pipe or socket holding more (a raised
/// F_SETPIPE_SZ, a huge socket buffer) keeps only this much, with the rest left in the live object.
pub const MAX_QUEUED: usize = 16 << 20;

const KCMP_FILE: libc::c_int = 0;

/// Fill in inode, queued data, socket details and sharing for `entries` (this process's table).
pub fn complete(entries: &mut [FdEntry]) {
    // Sharing first: what is queued in a pipe, socket, pty or message queue is read by one
    // holder of the open file description only (the first: this process's earliest fd, or the
    // parent's). Two holders peeking one socket at once would step on each other's SO_PEEK_OFF
    // (it belongs to the socket), and draining a pty or a queue twice at once would reorder it.
    find_shared(entries);
    for e in entries.iter_mut() {
        let first_holder = e.shares.is_none();
        match e.kind {
            FdKind::Pipe => {
                e.inode = inode_of(e.fd);
                // SAFETY: fcntl F_GETPIPE_SZ only reads a property of the pipe.
                e.pipe_size = u32::try_from(unsafe { libc::fcntl(e.fd, libc::F_GETPIPE_SZ) }).unwrap_or(0);
                if reads(e.flags) {
                    e.queued = peek_pipe(e.fd, e.pipe_size as usize).map(|d| vec![d]).unwrap_or_default();
                }
            }
            FdKind::Socket => {
                e.inode = inode_of(e.fd);
                let info = socket_info(e.fd, e.inode);
                if first_holder && matches!(info.family, libc::AF_UNIX | libc::AF_INET | libc::AF_INET6) && !info.listening {
                    e.queued = peek_socket(e.fd, info.sock_type).unwrap_or_default();
                }
                e.socket = Some(info);
            }
            FdKind::Other => e.anon = super::anon_fds::read(e.fd, &e.path),
            FdKind::File => {
                // A memfd's inode ties its fd to the areas that map it (their shm_id).
                e.inode = inode_of(e.fd);
                e.mqueue = mqueue_info(e.fd, &e.path, if first_holder { e.flags } else { libc::O_WRONLY });
            }
            FdKind::CharDevice => {
                e.pty = pty_info(e.fd, &e.path);
                if let Some(p) = e.pty.as_ref().filter(|p| p.master && first_holder) {
                    e.queued = drain_pty_output(e.fd, p.index).map(|d| vec![d]).unwrap_or_default();
                }
            }
        }
        e.queued.retain(|chunk| !chunk.is_empty());
    }
}

fn sockopt_int(fd: i32, opt: libc::c_int) -> libc::c_int {
    let mut v: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `v`.
    unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    v
}

/// Family, type, listening state, and the addresses: UNIX peers and names from sock_diag
/// (getsockname where sock_diag is missing, as under qemu-user), IP addresses from
/// getsockname/getpeername.
fn socket_info(fd: i32, inode: u64) -> SocketInfo {
    let family = sockopt_int(fd, libc::SO_DOMAIN);
    let mut info = SocketInfo {
        family,
        sock_type: sockopt_int(fd, libc::SO_TYPE),
        listening: sockopt_int(fd, libc::SO_ACCEPTCONN) == 1,
        peer_inode: None,
        name: None,
        path_mode: None,
        local: None,
        remote: None,
    };
    match family {
        libc::AF_UNIX => {
            match unix_diag::query(inode) {
                Ok(Some(d)) => (info.peer_inode, info.name) = (d.peer_inode, d.name),
                _ => info.name = sock_addr(fd, libc::getsockname).and_then(|a| a.unix_name),
            }
            // Connected or not, even where sock_diag cannot name the peer: the peer's bound
            // path ("" when it has none, as a socketpair's end).
            info.remote = sock_addr(fd, libc::getpeername).map(|a| a.unix_name.map(|n| String::from_utf8_lossy(&n).into_owned()).unwrap_or_default());
        }
        libc::AF_INET | libc::AF_INET6 => {
            info.local = sock_addr(fd, libc::getsockname).and_then(|a| a.ip);
            info.remote = sock_addr(fd, libc::getpeername).and_then(|a| a.ip);
        }
        _ => {}
    }
    if info.listening || info.peer_inode.is_none() {
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::fs::PermissionsExt;
        // Relative names resolve against this process's cwd, as they did at bind time.
        info.path_mode = info
            .name
            .as_deref()
            .filter(|n| n.first().is_some_and(|&b| b != 0))
            .and_then(|n| std::fs::symlink_metadata(std::ffi::OsStr::from_bytes(n)).ok())
            .map(|m| m.permissions().mode() & 0o7777);
    }
    info
}

/// A connected TCP socket's inode and (local, peer) addresses as "ip:port"; None for any other fd.
pub fn tcp_connection(fd: i32) -> Option<(u64, String, String)> {
    // SAFETY: stat is plain data that fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to st.
    if unsafe { libc::fstat(fd, &mut st) } != 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return None;
    }
    let info = socket_info(fd, st.st_ino as u64);
    if !matches!(info.family, libc::AF_INET | libc::AF_INET6) || info.sock_type != libc::SOCK_STREAM || info.listening {
        return None;
    }
    Some((st.st_ino as u64, info.local?, info.remote?))
}

struct Addr {
    ip: Option<String>,
    unix_name: Option<Vec<u8>>,
}

type NameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

/// getsockname or getpeername, decoded (None if not bound / not connected).
fn sock_addr(fd: i32, call: NameFn) -> Option<Addr> {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the call writes at most `len` bytes into `ss`.
    if unsafe { call(fd, (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) } != 0 {
        return None;
    }
    let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says ss holds a sockaddr_in.
            let a = unsafe { *(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(Addr { ip: Some(std::net::SocketAddr::from((ip, u16::from_be(a.sin_port))).to_string()), unix_name: None })
        }
        libc::AF_INET6 => {
            // SAFETY: the family says ss holds a sockaddr_in6.
            let a = unsafe { *(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(Addr { ip: Some(std::net::SocketAddr::from((ip, u16::from_be(a.sin6_port))).to_string()), unix_name: None })
        }
        libc::AF_UNIX => {
            let path_off = std::mem::size_of::<libc::sa_family_t>();
            // SAFETY: ss holds `len` initialized bytes of a sockaddr_un.
            let bytes = unsafe { std::slice::from_raw_parts((&ss as *const libc::sockaddr_storage).cast::<u8>(), len) };
            let mut name = bytes.get(path_off..).unwrap_or(&[]).to_vec();
            if name.first().is_some_and(|&b| b != 0) {
                name.truncate(name.iter().position(|&b| b == 0).unwrap_or(name.len()));
                // a path: up to its NUL
            }
            Some(Addr { ip: None, unix_name: (!name.is_empty()).then_some(name) })
        }
        _ => None,
    }
}

/// A POSIX message queue: its attributes and messages. Those are taken out with mq_receive and
/// sent back at once in the same order with the same priorities (a queue cannot be peeked);
/// every process of the computation is suspended meanwhile.
// c_long and __fsword_t are i32 on the 32-bit CPUs: the conversions are not useless there.
#[allow(clippy::useless_conversion)]
fn mqueue_info(fd: i32, path: &str, flags: i32) -> Option<MqueueInfo> {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    // SAFETY: statfs/stat are plain data that the calls fill.
    let (mut sf, mut st): (libc::statfs, libc::stat) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: valid pointers to the structs above.
    if unsafe { libc::fstatfs(fd, &mut sf) } != 0 || i64::from(sf.f_type) != MQUEUE_MAGIC || unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    // SAFETY: mq_attr is plain data; mq_getattr fills it.
    let mut attr: libc::mq_attr = unsafe { std::mem::zeroed() };
    // SAFETY: an mqd_t is the fd on Linux.
    if unsafe { libc::mq_getattr(fd, &mut attr) } != 0 {
        return None;
    }
    let mut messages = Vec::new();
    // Processes that opened the queue each on their own take turns (flock on the queue's
    // inode): each finds every message again, put back by the one before.
    // SAFETY: flock on our own fd; released below.
    let locked = attr.mq_curmsgs > 0 && reads(flags) && unsafe { libc::flock(fd, libc::LOCK_EX) } == 0;
    if locked {
        let mut buf = vec![0u8; usize::try_from(attr.mq_msgsize).unwrap_or(0).clamp(1, MAX_QUEUED)];
        // SAFETY: mq_* calls on the queue's fd with our buffer and a zero timeout (never waits).
        unsafe {
            let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            loop {
                let mut prio: libc::c_uint = 0;
                let n = libc::mq_timedreceive(fd, buf.as_mut_ptr().cast(), buf.len(), &mut prio, &now);
                if n < 0 {
                    break;
                }
                messages.push((prio, buf[..n as usize].to_vec()));
            }
            for (prio, m) in &messages {
                libc::mq_timedsend(fd, m.as_ptr().cast(), m.len(), *prio, &now);
            }
            libc::flock(fd, libc::LOCK_UN);
        }
    }
    Some(MqueueInfo {
        name: path.to_string(),
        mode: st.st_mode & 0o7777,
        maxmsg: i64::from(attr.mq_maxmsg),
        msgsize: i64::from(attr.mq_msgsize),
        messages,
    })
}

/// A pseudo-terminal end: its index, settings and window size.
fn pty_info(fd: i32, path: &str) -> Option<PtyInfo> {
    let master = path == "/dev/ptmx" || path == "/dev/pts/ptmx";
    let index = if master {
        let mut n: libc::c_uint = 0;
        // SAFETY: TIOCGPTN writes one unsigned int.
        if unsafe { libc::ioctl(fd, libc::TIOCGPTN, &mut n) } != 0 {
            return None;
        }
        n
    } else {
        path.strip_prefix("/dev/pts/")?.parse().ok()?
    };
    // SAFETY: termios and winsize are plain data that the calls fill.
    let (mut t, mut w): (libc::termios, libc::winsize) = unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    // SAFETY: valid pointers to the structs above.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 || unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut w) } != 0 {
        return None;
    }
    // SAFETY: termios is plain data; its bytes are what tcsetattr takes back.
    let termios = unsafe { std::slice::from_raw_parts((&t as *const libc::termios).cast::<u8>(), std::mem::size_of::<libc::termios>()) }.to_vec();
    Some(PtyInfo { master, index, termios, winsize: [w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel] })
}

/// What the program on the slave side wrote and the master side has not read yet. A terminal
/// cannot be peeked: the bytes are read from the master and written back at once through the
/// slave with output processing off (they were processed on their way in), so the running
/// computation sees them again. Every process of the computation is suspended meanwhile.
fn drain_pty_output(master: i32, index: u32) -> io::Result<Vec<u8>> {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(master, libc::FIONREAD, &mut pending) } != 0 || pending <= 0 {
        return Ok(Vec::new());
    }
    let path = std::ffi::CString::new(format!("/dev/pts/{index}")).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: opening the slave by path, without making it a controlling terminal.
    let slave = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC) };
    if slave < 0 {
        return Err(io::Error::last_os_error()); // cannot put them back: leave them where they are
    }
    let mut data = vec![0u8; (pending as usize).min(MAX_QUEUED)];
    // SAFETY: fcntl, read, tcgetattr/tcsetattr and write on our fds and buffers; the checkpoint
    // thread blocks SIGTTOU, so tcsetattr from outside the foreground group proceeds.
    unsafe {
        let fl = libc::fcntl(master, libc::F_GETFL);
        libc::fcntl(master, libc::F_SETFL, fl | libc::O_NONBLOCK);
        let n = libc::read(master, data.as_mut_ptr().cast(), data.len());
        libc::fcntl(master, libc::F_SETFL, fl);
        data.truncate(usize::try_from(n).unwrap_or(0));
        let mut t: libc::termios = std::mem::zeroed();
        if !data.is_empty() && libc::tcgetattr(slave, &mut t) == 0 {
            let mut raw = t;
            raw.c_oflag &= !libc::OPOST;
            libc::tcsetattr(slave, libc::TCSANOW, &raw);
            let _ = libc::write(slave, data.as_ptr().cast(), data.len());
            libc::tcsetattr(slave, libc::TCSANOW, &t);
        }
        libc::close(slave);
    }
    Ok(data)
}

/// This process's children that have exited and wait to be reaped: (pid, wait status), from
/// /proc/self/task/*/children and each child's /proc/PID/stat (state Z, exit_code).
pub fn zombie_children() -> Vec<(u32, i32)> {
    let tasks = super::fds::list_numeric_dir("/proc/self/task").unwrap_or_default();
    let mut out = Vec::new();
    for tid in tasks {
        let children = std::fs::read_to_string(format!("/proc/self/task/{tid}/children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // rest starts at field 3 (state); exit_code is field 52.
            if fields.first() == Some(&"Z") {
                if let Some(status) = fields.get(52 - 3).and_then(|v| v.parse::<i32>().ok()) {
                    out.push((pid, status));
                }
            }
        }
    }
    out
}

/// This process's controlling terminal when it is /dev/pts/N, and its foreground group, from
/// /proc/self/stat (tty_nr and tpgid).
pub fn controlling_pty() -> Option<Ctty> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut f = stat.rsplit_once(") ")?.1.split_whitespace();
    // After the command: state, ppid, pgrp, session, tty_nr, tpgid.
    let tty_nr: u32 = f.nth(4)?.parse().ok()?;
    let tpgid: i64 = f.next()?.parse().ok()?;
    let major = (tty_nr >> 8) & 0xfff;
    let minor = (tty_nr & 0xff) | ((tty_nr >> 12) & 0xfff00);
    // Unix98 pty slaves have majors 136 to 143.
    (136..=143).contains(&major).then(|| Ctty { index: (major - 136) * 256 + minor, foreground_pgid: u32::try_from(tpgid).unwrap_or(0) })
}

/// Can this fd read (O_RDONLY or O_RDWR)?
pub fn reads(flags: i32) -> bool {
    let acc = flags & libc::O_ACCMODE;
    acc == libc::O_RDONLY || acc == libc::O_RDWR
}

fn inode_of(fd: i32) -> u64 {
    // SAFETY: stat is plain data that fstat fills.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to st.
    if unsafe { libc::fstat(fd, &mut st) } == 0 {
        st.st_ino as u64
    } else {
        0
    }
}

/// The bytes in the pipe read through `fd`, copied with tee(2) into a scratch pipe: the pipe
/// itself keeps them.
pub fn peek_pipe(fd: i32, capacity: usize) -> io::Result<Vec<u8>> {
    let mut scratch = [0i32; 2];
    // SAFETY: room for two fds; both are closed below.
    if unsafe { libc::pipe2(scratch.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let want = capacity.clamp(4096, MAX_QUEUED);
    // SAFETY: sizing our own scratch pipe; a smaller result only limits what tee copies.
    unsafe { libc::fcntl(scratch[1], libc::F_SETPIPE_SZ, want as libc::c_int) };
    // SAFETY: tee between two pipe fds, without blocking.
    let n = unsafe { libc::tee(fd, scratch[1], want, libc::SPLICE_F_NONBLOCK) };
    let result = if n < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EAGAIN) {
            Ok(Vec::new())
        } else {
            Err(err)
        }
    } else {
        let mut data = vec![0u8; n as usize];
        let mut got = 0;
        while got < data.len() {
            // SAFETY: reading into the unfilled tail of `data`.
            let r = unsafe { libc::read(scratch[0], data[got..].as_mut_ptr().cast(), data.len() - got) };
            if r <= 0 {
                break;
            }
            got += r as usize;
        }
        data.truncate(got);
        Ok(data)
    };
    // SAFETY: closing the scratch pipe made above.
    unsafe {
        libc::close(scratch[0]);
        libc::close(scratch[1]);
    }
    result
}

/// The messages (datagram, seqpacket) or bytes (stream) queued on a socket, read with MSG_PEEK:
/// the socket keeps them. SO_PEEK_OFF walks past one message after another.
pub fn peek_socket(fd: i32, sock_type: i32) -> io::Result<Vec<Vec<u8>>> {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if queued <= 0 {
        return Ok(Vec::new());
    }
    let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
    if sock_type == libc::SOCK_STREAM {
        let mut buf = vec![0u8; (queued as usize).min(MAX_QUEUED)];
        // SAFETY: receiving into our buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(n as usize);
        return Ok(vec![buf]);
    }
    let set_peek_off = |v: libc::c_int| {
        // SAFETY: SO_PEEK_OFF takes one int.
        unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, (&v as *const libc::c_int).cast(), 4) }
    };
    if set_peek_off(0) != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        // SAFETY: receiving into our buffer; MSG_TRUNC reports a longer message's real length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags | libc::MSG_TRUNC) };
        if n < 0 {
            break;
        }
        let n = n as usize;
        if n > buf.len() {
            // Longer than the buffer: grow and read this message again from its start.
            let back = libc::c_int::try_from(total).unwrap_or(libc::c_int::MAX);
            buf.resize(n.min(MAX_QUEUED), 0);
            if set_peek_off(back) != 0 || n > MAX_QUEUED {
                break;
            }
            continue;
        }
        total += n;
        out.push(buf[..n].to_vec());
        // The kernel moves the peek offset past each message; if it did not (someone else
        // reset it), the next peek would return this message again.
        if sockopt_int(fd, libc::SO_PEEK_OFF) != libc::c_int::try_from(total).unwrap_or(-1) {
            set_peek_off(-1);
            return Err(io::Error::other("the socket's peek offset moved under us"));
        }
        if total >= MAX_QUEUED || n == 0 {
            break;
        }
    }
    set_peek_off(-1);
    Ok(out)
}

fn kcmp_file(pid1: libc::pid_t, pid2: libc::pid_t, fd1: i32, fd2: i32) -> bool {
    // SAFETY: kcmp only compares kernel objects; it writes no memory of ours.
    unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, KCMP_FILE, fd1 as libc::c_ulong, fd2 as libc::c_ulong) == 0 }
}

/// Mark each entry that shares its open file description with an earlier entry of this process
/// or with an fd of the parent process.
fn find_shared(entries: &mut [FdEntry]) {
    // SAFETY: getpid/getppid have no memory effects.
    let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
    let parent_fds = parent_table(parent);
    for i in 0..entries.len() {
        let (earlier, rest) = entries.split_at_mut(i);
        let e = &mut rest[0];
        if let Some(j) = earlier.iter().find(|o| o.kind == e.kind && o.path == e.path && kcmp_file(me, me, e.fd, o.fd)) {
            e.shares = Some(FdRef { pid: me as u32, fd: j.fd });
            continue;
        }
        if let Some((pfd, _)) = parent_fds.iter().find(|(pfd, path)| *path == e.path && kcmp_file(me, parent, e.fd, *pfd)) {
            e.shares = Some(FdRef { pid: parent as u32, fd: *pfd });
        }
    }
}

/// The parent's fds with what they point to ("pipe:[N]", a path), lowest first; empty if the
/// parent's table cannot be read.
fn parent_table(parent: libc::pid_t) -> Vec<(i32, String)> {
    if parent <= 1 {
        return Vec::new();
    }
    let dir = format!("/proc/{parent}/fd");
    let Ok(fds) = super::fds::list_numeric_dir(&dir) else { return Vec::new() };
    fds.into_iter().filter_map(|fd| Some((fd, std::fs::read_link(format!("{dir}/{fd}")).ok()?.to_string_lossy().into_owned()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_pipe_keeps_its_bytes_when_peeked() {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"in flight").unwrap();
        let entries = crate::procfs::fds::read_self_fds(&[]).unwrap();
        let mut mine: Vec<FdEntry> = entries.into_iter().filter(|e| e.fd == r.as_raw_fd() || e.fd == w.as_raw_fd()).collect();
        complete(&mut mine);
        let read_end = mine.iter().find(|e| e.fd == r.as_raw_fd()).unwrap();
        let write_end = mine.iter().find(|e| e.fd == w.as_raw_fd()).unwrap();
        assert_eq!(read_end.queued, vec![b"in flight".to_vec()]);
        assert!(write_end.queued.is_empty(), "the write end cannot be read");
        assert_eq!(read_end.inode, write_end.inode);
        assert!(read_end.pipe_size >= 4096);
        // Still there for the reader.
        let mut back = [0u8; 9];
        std::io::Read::read_exact(&mut &r, &mut back).unwrap();
        assert_eq!(&back, b"in flight");
        assert_eq!(peek_pipe(r.as_raw_fd(), 65536).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn socket_queues_are_peeked_per_message() {
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        a.send(b"one").unwrap();
        a.send(b"second").unwrap();
        match peek_socket(b.as_raw_fd(), libc::SOCK_DGRAM) {
            Ok(msgs) => assert_eq!(msgs, vec![b"one".to_vec(), b"second".to_vec()]),
            // qemu-user does not pass SO_PEEK_OFF through; natively this must work.
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => eprintln!("note: SO_PEEK_OFF refused here: message peeking not tested"),
            Err(e) => panic!("{e}"),
        }
        let mut buf = [0u8; 16];
        assert_eq!(b.recv(&mut buf).unwrap(), 3, "the first message is still queued");
        let (mut s, t) = std::os::unix::net::UnixStream::pair().unwrap();
        s.write_all(b"abc").unwrap();
        s.write_all(b"def").unwrap();
        assert_eq!(peek_socket(t.as_raw_fd(), libc::SOCK_STREAM).unwrap(), vec![b"abcdef".to_vec()]);
    }

    #[test]
    fn dup_shares_and_reopen_does_not() {
        let path = std::env::temp_dir().join(format!("dmtcp-fd-state-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        let dup = f.try_clone().unwrap();
        let other = std::fs::File::open(&path).unwrap();
        let fds = [f.as_raw_fd(), dup.as_raw_fd(), other.as_raw_fd()];
        let mut mine: Vec<FdEntry> = crate::procfs::fds::read_self_fds(&[]).unwrap().into_iter().filter(|e| fds.contains(&e.fd)).collect();
        complete(&mut mine);
        let shares = |fd| mine.iter().find(|e| e.fd == fd).unwrap().shares;
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() } as u32;
        // The lower of the two numbers is the description's first holder (other tests' threads
        // open and close fds meanwhile: the dup may well have the lower number).
        let (first, second) = (f.as_raw_fd().min(dup.as_raw_fd()), f.as_raw_fd().max(dup.as_raw_fd()));
        assert_eq!(shares(first), None);
        assert_eq!(shares(second), Some(FdRef { pid: me, fd: first }));
        assert_eq!(shares(other.as_raw_fd()), None, "a second open() is another description");
        std::fs::remove_file(&path).unwrap();
    }
}
