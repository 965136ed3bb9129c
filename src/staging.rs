//! Open file descriptions for a whole restart, made once in dmtcp_restart before it forks the
//! process tree, so that processes that shared one at checkpoint time share one again: a pipe
//! between parent and child (with the bytes that were in it), a socketpair (with what was queued
//! on each end), a file one process opened and its children inherited (one offset for all).
//!
//! Every description is "staged" at a number above all the restored programs' fds; each
//! restarted process dups the ones it had to their numbers ([`Staged::place`]) and closes the
//! rest before it becomes the loader.

use crate::restore_fds::{dev_null, dup_at_least, open_file, put_back_saved_file};
use crate::shared_memory::SharedObjects;
use crate::sockets;
use dmtcp_engine::meta::{is_unlinked, AnonFd, FdEntry, FdKind, ProcessMeta, SocketInfo};
use std::collections::HashMap;
use std::os::fd::{IntoRawFd, RawFd};
use std::path::PathBuf;

const PROG: &str = "dmtcp_restart";

/// One image's part in the restart.
pub struct ImageFds<'a> {
    pub meta: &'a ProcessMeta,
    /// Where `--ckpt-open-files` saved its files (meta::saved_files_dir).
    pub saved_files: PathBuf,
}

/// The staged descriptions, by (image index, fd number).
#[derive(Default)]
pub struct Staged {
    by_entry: HashMap<(usize, i32), RawFd>,
    all: Vec<RawFd>,
    /// The new slave of each recreated pseudo-terminal, by (host, old N of /dev/pts/N).
    pty_slaves: HashMap<(String, u32), RawFd>,
}

/// A new open file description of `object` (an fd of ours) with `e`'s access mode, O_APPEND
/// and offset, close-on-exec.
fn reopen(object: RawFd, e: &FdEntry) -> Option<RawFd> {
    let acc = e.flags & libc::O_ACCMODE;
    let path = std::ffi::CString::new(format!("/proc/self/fd/{object}")).ok()?;
    // SAFETY: opening our own fd's file again through /proc (a new description of the same
    // object), then lseek on that new fd.
    unsafe {
        let fd = libc::open(path.as_ptr(), acc | (e.flags & libc::O_APPEND) | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        libc::lseek(fd, e.offset as libc::off_t, libc::SEEK_SET);
        Some(fd)
    }
}

/// (host, pid at checkpoint, fd): an fd anywhere in the computation restarted here.
type GlobalFd<'a> = (&'a str, u32, i32);

struct Builder<'a> {
    images: &'a [ImageFds<'a>],
    /// The shared memory objects made for the restart (memfds the programs also hold as fds).
    objects: &'a SharedObjects,
    quiet: bool,
    /// Staged fds go at or above this number.
    top: RawFd,
    staged: Staged,
    by_root: HashMap<(usize, i32), RawFd>,
    /// Anonymous pipes by (host, inode): (read end, write end).
    pipes: HashMap<(&'a str, u64), (RawFd, RawFd)>,
    /// Named FIFOs by path: an O_RDWR anchor, so that opening either end never blocks.
    fifos: HashMap<&'a str, RawFd>,
    /// UNIX sockets by (host, inode): the new socket of each end of a recreated pair.
    sockets: HashMap<(&'a str, u64), RawFd>,
    /// POSIX message queues made again, by (host, name).
    mqueues: std::collections::HashSet<(&'a str, &'a str)>,
    /// Pseudo-terminals by (host, N of /dev/pts/N): (master, slave).
    ptys: HashMap<(&'a str, u32), (RawFd, RawFd)>,
    /// Deleted files and memfds made again from their saved contents, by (host, inode).
    unlinked: HashMap<(&'a str, u64), RawFd>,
    put_back: Vec<String>,
}

impl Staged {
    /// Make every description the images need. Never fails: what cannot be recreated is opened
    /// on /dev/null (with a warning unless `quiet`), so that its number stays taken.
    pub fn build(images: &[ImageFds<'_>], objects: &SharedObjects, quiet: bool) -> Staged {
        let top = first_free_fd(images.iter().map(|i| i.meta));
        let limit = raise_fd_limit();
        let mut b = Builder {
            images,
            objects,
            quiet,
            top,
            staged: Staged::default(),
            by_root: HashMap::new(),
            pipes: HashMap::new(),
            fifos: HashMap::new(),
            sockets: HashMap::new(),
            ptys: HashMap::new(),
            mqueues: std::collections::HashSet::new(),
            unlinked: HashMap::new(),
            put_back: Vec::new(),
        };
        let index: HashMap<GlobalFd<'_>, (usize, usize)> = images
            .iter()
            .enumerate()
            .flat_map(|(i, img)| img.meta.fds.iter().enumerate().map(move |(j, e)| ((img.meta.hostname.as_str(), img.meta.pid, e.fd), (i, j))))
            .collect();
        for (i, img) in images.iter().enumerate() {
            for e in img.meta.fds.iter().filter(|e| e.fd > 2 || in_computation(images, &img.meta.hostname, e)) {
                let (ri, rj) = root_of(images, &index, i, e);
                let root = &images[ri].meta.fds[rj];
                let fd = match b.by_root.get(&(ri, root.fd)) {
                    Some(&fd) => fd,
                    None => {
                        let fd = b.create(ri, root);
                        b.by_root.insert((ri, root.fd), fd);
                        fd
                    }
                };
                b.staged.by_entry.insert((i, e.fd), fd);
            }
        }
        b.staged.all.extend(b.pipes.values().flat_map(|&(r, w)| [r, w]));
        b.staged.all.extend(b.fifos.values().copied());
        b.staged.all.extend(b.sockets.values().copied());
        b.staged.all.extend(b.ptys.values().flat_map(|&(m, s)| [m, s]));
        b.staged.all.extend(b.unlinked.values().copied());
        b.staged.pty_slaves = b.ptys.iter().map(|(&(host, n), &(_, slave))| ((host.to_string(), n), slave)).collect();
        b.staged.all.extend(b.by_root.values().copied());
        b.staged.all.sort_unstable();
        b.staged.all.dedup();
        if let Some(lim) = limit {
            // The restored programs get the limit they had; the staged fds stay valid above it.
            // SAFETY: setrlimit with the values getrlimit returned.
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
        }
        b.staged
    }

    /// In the restarted process of image `image`: put each of its fds (above 2) at its number,
    /// without close-on-exec (see [`Staged::cloexec_fds`]). The staged originals stay open
    /// (close_others ends them).
    pub fn place(&self, image: usize, meta: &ProcessMeta) {
        for e in meta.fds.iter().filter(|e| e.fd > 2 || self.by_entry.contains_key(&(image, e.fd))) {
            let Some(&from) = self.by_entry.get(&(image, e.fd)) else { continue };
            // SAFETY: dup2 onto a number the restored process owns; `from` stays open.
            if unsafe { libc::dup2(from, e.fd) } < 0 {
                crate::cli::die(PROG, format!("cannot place file descriptor {}: {}", e.fd, std::io::Error::last_os_error()));
            }
        }
    }

    /// The fds of image `image` that [`Staged::place`] puts in place and that were close-on-exec:
    /// libdmtcp sets the flag again after the restart (here it would close them at the exec of
    /// the loader).
    pub fn cloexec_fds(&self, image: usize, meta: &ProcessMeta) -> Vec<RawFd> {
        meta.fds.iter().filter(|e| e.cloexec && self.by_entry.contains_key(&(image, e.fd))).map(|e| e.fd).collect()
    }

    /// After [`Staged::place`]: fill the new epoll instances of image `image` with what the old
    /// ones watched, by the fd numbers the program registered (its own, now in place).
    pub fn rearm_epolls(&self, meta: &ProcessMeta) {
        for e in meta.fds.iter().filter(|e| e.fd > 2) {
            let Some(AnonFd::Epoll { targets }) = &e.anon else { continue };
            for t in targets {
                let mut ev = libc::epoll_event { events: t.events, u64: t.data };
                // SAFETY: epoll_ctl on the program's epoll fd with a local event; EEXIST (a shared
                // instance another process of the tree filled already) is fine.
                if unsafe { libc::epoll_ctl(e.fd, libc::EPOLL_CTL_ADD, t.fd, &mut ev) } != 0 {
                    let err = std::io::Error::last_os_error();
                    if err.raw_os_error() != Some(libc::EEXIST) {
                        eprintln!("{PROG}: epoll fd {}: cannot watch fd {} again: {err}", e.fd, t.fd);
                    }
                }
            }
        }
    }

    /// The new slave of pseudo-terminal /dev/pts/`index` (old numbering) on `host`, if it was
    /// recreated (its master is part of the restart).
    pub fn pty_slave(&self, host: &str, index: u32) -> Option<RawFd> {
        self.pty_slaves.get(&(host.to_string(), index)).copied()
    }

    /// In a process that restores none of them (dmtcp_restart waiting in front of the root):
    /// its copies must not keep pipes open (a reader would never see end-of-file).
    pub fn close_all(&self) {
        for &fd in &self.all {
            // SAFETY: closing our own staged fds; nothing in this process uses them any more.
            unsafe { libc::close(fd) };
        }
    }
}

/// Follow `shares` from entry `e` of image `i` to the first holder of its description among the
/// images restarted here.
fn root_of(images: &[ImageFds<'_>], index: &HashMap<GlobalFd<'_>, (usize, usize)>, i: usize, e: &FdEntry) -> (usize, usize) {
    let host = images[i].meta.hostname.as_str();
    let mut at = (i, images[i].meta.fds.iter().position(|x| x.fd == e.fd).unwrap_or(0));
    for _ in 0..64 {
        let cur = &images[at.0].meta.fds[at.1];
        match cur.shares.and_then(|r| index.get(&(host, r.pid, r.fd))) {
            Some(&next) if next != at => at = next,
            _ => break,
        }
    }
    at
}

/// Every fd entry of every image of the processes on `host`.
fn entries_on<'i: 'h, 'h>(images: &'i [ImageFds<'i>], host: &'h str) -> impl Iterator<Item = &'i FdEntry> + 'h {
    images.iter().filter(move |i| i.meta.hostname == host).flat_map(|i| i.meta.fds.iter())
}

/// The first fd number above every fd of every image (and their coordinator fds): staged fds go
/// at or above it, out of the way of the numbers the restored programs use.
pub fn first_free_fd<'m>(metas: impl Iterator<Item = &'m ProcessMeta>) -> RawFd {
    metas.flat_map(|m| m.fds.iter().map(|e| e.fd).chain([m.coord_fd])).max().unwrap_or(2).max(2) + 1
}

/// Is some image on `host` holding the master of /dev/pts/`index`?
fn pty_master_known(images: &[ImageFds<'_>], host: &str, index: u32) -> bool {
    pty_master(images, host, index).is_some()
}

/// The master of /dev/pts/`index` on `host` as an image recorded it. Its settings are the
/// terminal's: its holder read them before it drained the terminal, while a slave's holder
/// may have read them meanwhile, changed for the drain.
fn pty_master<'a>(images: &'a [ImageFds<'a>], host: &str, index: u32) -> Option<&'a dmtcp_engine::meta::PtyInfo> {
    entries_on(images, host).find_map(|x| x.pty.as_ref().filter(|p| p.master && p.index == index))
}

/// What the master of /dev/pts/`index` on `host` had not read yet.
fn pty_output(images: &[ImageFds<'_>], host: &str, index: u32) -> Vec<u8> {
    entries_on(images, host)
        .find(|x| x.pty.as_ref().is_some_and(|p| p.master && p.index == index) && !x.queued.is_empty())
        .map(|x| x.queued.concat())
        .unwrap_or_default()
}

/// What the slave side of /dev/pts/`index` on `host` had not read yet.
fn pty_input<'a>(images: &'a [ImageFds<'a>], host: &str, index: u32) -> &'a [u8] {
    images
        .iter()
        .filter(|i| i.meta.hostname == host)
        .flat_map(|i| i.meta.pty_input.iter())
        .find(|p| p.index == index)
        .map_or(&[], |p| p.bytes.as_slice())
}

/// Is the object behind `e` made anew for the restarted computation (rather than standing for
/// something outside it)? For stdin/stdout/stderr this decides between the restored object and
/// dmtcp_restart's own: a pipe to another process of the computation, a socket whose peer is in
/// it, a pseudo-terminal whose master is in it.
fn in_computation(images: &[ImageFds<'_>], host: &str, e: &FdEntry) -> bool {
    let on_host = || entries_on(images, host);
    match e.kind {
        FdKind::Pipe if e.path.starts_with("pipe:") => on_host().filter(|x| x.kind == FdKind::Pipe && x.inode == e.inode).count() > 1,
        FdKind::Socket => e.socket.as_ref().and_then(|s| s.peer_inode).is_some_and(|peer| on_host().any(|x| x.inode == peer)),
        FdKind::CharDevice => e.pty.as_ref().is_some_and(|p| pty_master_known(images, host, p.index)),
        _ => false,
    }
}

/// A connected UNIX socket whose peer the checkpoint could not tell (no NETLINK_SOCK_DIAG).
fn peer_unknown(s: &SocketInfo) -> bool {
    s.family == libc::AF_UNIX && !s.listening && s.peer_inode.is_none() && s.remote.is_some()
}

/// The first non-empty queued data recorded for (host, inode) by any image.
fn queued_for<'a>(images: &'a [ImageFds<'a>], host: &str, inode: u64) -> &'a [Vec<u8>] {
    entries_on(images, host)
        .find(|e| e.inode == inode && !e.queued.is_empty() && matches!(e.kind, FdKind::Pipe | FdKind::Socket))
        .map_or(&[], |e| e.queued.as_slice())
}

fn set_nonblock(fd: RawFd, on: bool) {
    // SAFETY: F_GETFL/F_SETFL on our own fd.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, if on { fl | libc::O_NONBLOCK } else { fl & !libc::O_NONBLOCK });
        }
    }
}

/// Write all of `data` to `fd` (non-blocking: a full pipe or socket is reported, not waited on).
/// Write all of `data` to a non-blocking fd whose reader does not run yet: what does not fit in
/// a moment fails (EAGAIN) rather than waiting forever.
fn write_all_now(fd: RawFd, data: &[u8]) -> std::io::Result<()> {
    let mut done = 0;
    let mut stalls = 0;
    while done < data.len() {
        // SAFETY: writing from our buffer.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                // A TCP window opens as the peer's kernel takes data in: give it a moment.
                std::io::ErrorKind::WouldBlock if stalls < 100 => {
                    stalls += 1;
                    let mut p = libc::pollfd { fd, events: libc::POLLOUT, revents: 0 };
                    // SAFETY: poll on one pollfd of ours.
                    unsafe { libc::poll(&mut p, 1, 10) };
                    continue;
                }
                _ => return Err(e),
            }
        }
        stalls = 0;
        done += n as usize;
    }
    Ok(())
}

/// Socket buffers large enough for `len` bytes written through `from` before `to` reads any
/// (a drained TCP connection can hold more than a new one's default buffers): the privileged
/// FORCE options where allowed, else the plain ones (capped by net.core.[rw]mem_max).
fn make_room(from: RawFd, to: RawFd, len: usize) {
    const DEFAULT_ROOM: usize = 64 << 10;
    if len <= DEFAULT_ROOM {
        return;
    }
    let v = libc::c_int::try_from(len).unwrap_or(libc::c_int::MAX);
    let set = |fd: RawFd, opt: libc::c_int| {
        // SAFETY: setsockopt with one int.
        unsafe {
            libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t) == 0
        }
    };
    if !set(from, libc::SO_SNDBUFFORCE) {
        set(from, libc::SO_SNDBUF);
    }
    if !set(to, libc::SO_RCVBUFFORCE) {
        set(to, libc::SO_RCVBUF);
    }
}

/// A new pseudo-terminal (master, slave) with the settings and window size of `p`, `output`
/// waiting on the master side (what the old master had not read yet) and `input` on the slave
/// side (what the programs on the old slave had not read).
fn new_pty(p: &dmtcp_engine::meta::PtyInfo, output: &[u8], input: &[u8]) -> Option<(RawFd, RawFd)> {
    // SAFETY: posix_openpt and friends on our own new fds; ptsname_r writes into `name`.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            return None;
        }
        let mut name = [0 as libc::c_char; 64];
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 || libc::ptsname_r(m, name.as_mut_ptr(), name.len()) != 0 {
            libc::close(m);
            return None;
        }
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            libc::close(m);
            return None;
        }
        if p.termios.len() == std::mem::size_of::<libc::termios>() {
            let mut t: libc::termios = std::mem::zeroed();
            std::ptr::copy_nonoverlapping(p.termios.as_ptr(), (&mut t as *mut libc::termios).cast::<u8>(), p.termios.len());
            if !output.is_empty() {
                // Already processed on its way out the first time.
                let mut raw = t;
                raw.c_oflag &= !libc::OPOST;
                libc::tcsetattr(s, libc::TCSANOW, &raw);
                set_nonblock(s, true);
                let _ = write_all_now(s, output);
                set_nonblock(s, false);
            }
            if input.is_empty() {
                libc::tcsetattr(s, libc::TCSANOW, &t);
            } else {
                dmtcp_engine::procfs::pty::put_back_input(m, s, &t, input);
            }
        }
        let w = libc::winsize { ws_row: p.winsize[0], ws_col: p.winsize[1], ws_xpixel: p.winsize[2], ws_ypixel: p.winsize[3] };
        libc::ioctl(m, libc::TIOCSWINSZ, &w);
        Some((m, s))
    }
}

/// A new eventfd, timerfd, signalfd or (empty) epoll instance in the recorded state.
fn new_anon(a: &AnonFd, flags: i32) -> Option<RawFd> {
    let nonblock = flags & libc::O_NONBLOCK != 0;
    // SAFETY: each call creates a new fd from plain values; failures return -1.
    let fd = unsafe {
        match *a {
            AnonFd::EventFd { count, semaphore } => {
                let fd = libc::eventfd(0, libc::EFD_CLOEXEC | if semaphore { libc::EFD_SEMAPHORE } else { 0 });
                // The count is 64-bit; eventfd() takes only an int: add it with a write.
                if fd >= 0 && count > 0 && libc::write(fd, (&count as *const u64).cast(), 8) != 8 {
                    libc::close(fd);
                    return None;
                }
                fd
            }
            AnonFd::TimerFd { clockid, ticks, value_ns, interval_ns } => {
                let fd = libc::timerfd_create(clockid, libc::TFD_CLOEXEC);
                let ts = |ns: u64| libc::timespec { tv_sec: (ns / 1_000_000_000) as libc::time_t, tv_nsec: (ns % 1_000_000_000) as libc::c_long };
                let spec = libc::itimerspec { it_interval: ts(interval_ns), it_value: ts(value_ns) };
                if fd >= 0 && (value_ns > 0 || interval_ns > 0) {
                    libc::timerfd_settime(fd, 0, &spec, std::ptr::null_mut());
                }
                if fd >= 0 && ticks > 0 {
                    // TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE): the unread expirations.
                    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
                    libc::ioctl(fd, TFD_IOC_SET_TICKS as _, &ticks);
                }
                fd
            }
            AnonFd::SignalFd { mask } => {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                for sig in 1..=64 {
                    if mask & (1u64 << (sig - 1)) != 0 {
                        libc::sigaddset(&mut set, sig);
                    }
                }
                libc::signalfd(-1, &set, libc::SFD_CLOEXEC)
            }
            AnonFd::Epoll { .. } => libc::epoll_create1(libc::EPOLL_CLOEXEC),
        }
    };
    if fd < 0 {
        return None;
    }
    set_nonblock(fd, nonblock);
    Some(fd)
}

/// Let this process hold every staged fd: the soft limit up to the hard one. Returns the limit
/// to put back, if it was changed.
fn raise_fd_limit() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on local structs.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 || lim.rlim_cur >= lim.rlim_max {
            return None;
        }
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        (libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0).then_some(lim)
    }
}

impl<'a> Builder<'a> {
    fn stage(&self, fd: RawFd) -> RawFd {
        dup_at_least(fd, self.top, true)
    }

    fn warn(&self, e: &FdEntry, why: &str) {
        if !self.quiet {
            eprintln!("{PROG}: fd {} ({}) {why}; it is opened on /dev/null", e.fd, e.path);
        }
    }

    fn null_for(&self, e: &FdEntry, why: &str) -> RawFd {
        self.warn(e, why);
        self.stage(dev_null().into_raw_fd())
    }

    /// The description for the first holder `e` (of image `i`).
    fn create(&mut self, i: usize, e: &'a FdEntry) -> RawFd {
        let img = &self.images[i];
        if e.fd <= 2 && !in_computation(self.images, &img.meta.hostname, e) {
            // Shared with a process's stdin/stdout/stderr, which are dmtcp_restart's now.
            // SAFETY: F_DUPFD_CLOEXEC of our own standard fd.
            let fd = unsafe { libc::fcntl(e.fd, libc::F_DUPFD_CLOEXEC, self.top) };
            return if fd >= 0 { fd } else { self.null_for(e, "shares a standard fd that is closed") };
        }
        let fd = match e.kind {
            FdKind::CharDevice if e.pty.as_ref().is_some_and(|p| pty_master_known(self.images, &img.meta.hostname, p.index)) => self.pty_end(i, e),
            FdKind::CharDevice
                if e.path == "/dev/tty" && img.meta.ctty.is_some_and(|c| pty_master_known(self.images, &img.meta.hostname, c.index)) =>
            {
                match self.controlling_tty(i) {
                    Some(fd) => fd,
                    None => return self.null_for(e, "is a controlling terminal that cannot be recreated"),
                }
            }
            FdKind::File if e.mqueue.is_some() => match self.mqueue_end(i, e) {
                Some(fd) => self.stage(fd),
                None => return self.null_for(e, "is a message queue that cannot be made again"),
            },
            FdKind::File if is_unlinked(&e.path) => match self.memfd_end(i, e).or_else(|| self.unlinked_end(i, e)) {
                Some(fd) => self.stage(fd),
                None => return self.null_for(e, "is a deleted file or memfd whose contents are not beside the image"),
            },
            FdKind::File | FdKind::CharDevice => {
                if e.kind == FdKind::File && !self.put_back.contains(&e.path) {
                    // Once per file: a second copy would replace the file the first fd was just opened on.
                    put_back_saved_file(e, &img.saved_files, self.quiet);
                    self.put_back.push(e.path.clone());
                }
                match open_file(e) {
                    Some(f) => self.stage(f.into_raw_fd()),
                    None => return self.null_for(e, "cannot be restored"),
                }
            }
            FdKind::Pipe if e.path.starts_with("pipe:") => self.pipe_end(i, e),
            FdKind::Pipe => self.fifo_end(i, e),
            FdKind::Socket => match self.socket_end(i, e) {
                Some(fd) => fd,
                None if e.socket.as_ref().is_some_and(peer_unknown) => {
                    return self.null_for(e, "is a connected UNIX socket whose peer the checkpoint could not identify (the kernel offers no NETLINK_SOCK_DIAG: load the unix_diag module)")
                }
                None => return self.null_for(e, "is a socket that cannot be recreated (its peer is not part of the restart)"),
            },
            FdKind::Other => match e.anon.as_ref().and_then(|a| new_anon(a, e.flags)) {
                Some(fd) => self.stage(fd),
                None => return self.null_for(e, "cannot be restored"),
            },
        };
        set_nonblock(fd, e.flags & libc::O_NONBLOCK != 0);
        fd
    }

    /// A memfd's (or a deleted file's) fd: a description of its own (own offset, own flags) on
    /// the object remade for the areas that map it.
    fn memfd_end(&self, i: usize, e: &FdEntry) -> Option<RawFd> {
        reopen(self.objects.object_for(&self.images[i].meta.hostname, e.inode)?, e)
    }

    /// A deleted file's or memfd's fd that no area maps: a description of its own on the file
    /// made once per inode from the contents saved beside the image.
    fn unlinked_end(&mut self, i: usize, e: &FdEntry) -> Option<RawFd> {
        let host = self.images[i].meta.hostname.as_str();
        let object = match self.unlinked.get(&(host, e.inode)) {
            Some(&fd) => fd,
            None => {
                let fd = match crate::unlinked::remake(e, &self.images[i].saved_files) {
                    Ok(fd) => self.stage(fd?),
                    Err(err) => {
                        self.warn(e, &format!("cannot be made again from its saved contents: {err}"));
                        return None;
                    }
                };
                self.unlinked.insert((host, e.inode), fd);
                fd
            }
        };
        reopen(object, e)
    }

    /// A new pseudo-terminal for each old one whose master is restarted here, with the old
    /// settings and window size; each old end gets the same end of the new one.
    fn pty_end(&mut self, i: usize, e: &FdEntry) -> RawFd {
        let host = self.images[i].meta.hostname.as_str();
        let Some(p) = e.pty.as_ref() else { return self.null_for(e, "cannot be restored") };
        let Some((master, slave)) = self.new_pty_of(host, p.index) else { return self.null_for(e, "is a pseudo-terminal that cannot be recreated") };
        // SAFETY: F_DUPFD_CLOEXEC of a staged fd: each old fd keeps its own flags.
        let fd = unsafe { libc::fcntl(if p.master { master } else { slave }, libc::F_DUPFD_CLOEXEC, self.top) };
        if fd < 0 {
            return self.null_for(e, "is a pseudo-terminal that cannot be recreated");
        }
        fd
    }

    /// The staged (master, slave) of the new pty standing for old /dev/pts/`index` on `host`,
    /// made on first use.
    fn new_pty_of(&mut self, host: &'a str, index: u32) -> Option<(RawFd, RawFd)> {
        if let Some(&ends) = self.ptys.get(&(host, index)) {
            return Some(ends);
        }
        let (m, s) = new_pty(pty_master(self.images, host, index)?, &pty_output(self.images, host, index), pty_input(self.images, host, index))?;
        let ends = (self.stage(m), self.stage(s));
        self.ptys.insert((host, index), ends);
        Some(ends)
    }

    /// An fd on /dev/tty of image `i`, whose controlling terminal is a pty restarted here: the
    /// new pty's slave opened again (dmtcp_restart has no such controlling terminal to open;
    /// the restored process gets it before it runs). A description of its own, as /dev/tty is.
    fn controlling_tty(&mut self, i: usize) -> Option<RawFd> {
        let host = self.images[i].meta.hostname.as_str();
        let (_, slave) = self.new_pty_of(host, self.images[i].meta.ctty?.index)?;
        let path = std::ffi::CString::new(std::fs::read_link(format!("/proc/self/fd/{slave}")).ok()?.into_os_string().into_encoded_bytes()).ok()?;
        // SAFETY: opening the new slave by its path, without making it our controlling terminal.
        let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        (fd >= 0).then(|| self.stage(fd))
    }

    /// A POSIX message queue as the image had it: the one of that name now (left by the killed
    /// processes, or changed since) is replaced by a new one with the saved attributes and
    /// messages; then each old fd opens it with its own access mode.
    fn mqueue_end(&mut self, i: usize, e: &'a FdEntry) -> Option<RawFd> {
        let host = self.images[i].meta.hostname.as_str();
        let q = e.mqueue.as_ref()?;
        let name = std::ffi::CString::new(q.name.as_str()).ok()?;
        if !self.mqueues.contains(&(host, q.name.as_str())) {
            let messages = entries_on(self.images, host)
                .filter_map(|x| x.mqueue.as_ref())
                .find(|m| m.name == q.name && !m.messages.is_empty())
                .map_or(&[][..], |m| m.messages.as_slice());
            // SAFETY: mq_unlink/mq_open with a NUL-terminated name and a local attribute struct;
            // the descriptor is closed at the end (the queue lives on by its name).
            unsafe {
                libc::mq_unlink(name.as_ptr());
                let mut attr: libc::mq_attr = std::mem::zeroed();
                attr.mq_maxmsg = q.maxmsg as _;
                attr.mq_msgsize = q.msgsize as _;
                let fd =
                    libc::mq_open(name.as_ptr(), libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_CLOEXEC, q.mode, &attr);
                if fd < 0 {
                    return None;
                }
                let now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                for (prio, m) in messages {
                    libc::mq_timedsend(fd, m.as_ptr().cast(), m.len(), *prio, &now);
                }
                libc::close(fd);
            }
            self.mqueues.insert((host, q.name.as_str()));
        }
        let flags = (e.flags & (libc::O_ACCMODE | libc::O_NONBLOCK)) | libc::O_CLOEXEC;
        // SAFETY: mq_open of the queue made above, with the old fd's access mode.
        let fd = unsafe { libc::mq_open(name.as_ptr(), flags) };
        (fd >= 0).then_some(fd)
    }

    fn pipe_end(&mut self, i: usize, e: &FdEntry) -> RawFd {
        let host = self.images[i].meta.hostname.as_str();
        let (r, w) = match self.pipes.get(&(host, e.inode)) {
            Some(&ends) => ends,
            None => {
                let ends = self.new_pipe(host, e);
                self.pipes.insert((host, e.inode), ends);
                ends
            }
        };
        if e.flags & libc::O_ACCMODE == libc::O_WRONLY {
            w
        } else {
            r
        }
    }

    fn new_pipe(&self, host: &str, e: &FdEntry) -> (RawFd, RawFd) {
        let mut p = [0i32; 2];
        // SAFETY: room for two fds.
        if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            crate::cli::die(PROG, format!("cannot create a pipe: {}", std::io::Error::last_os_error()));
        }
        let (r, w) = (self.stage(p[0]), self.stage(p[1]));
        let data: Vec<u8> = queued_for(self.images, host, e.inode).concat();
        let size = (e.pipe_size as usize).max(data.len());
        if size > 0 {
            // SAFETY: sizing our own pipe; the kernel rounds up or refuses (then the default stays).
            unsafe { libc::fcntl(w, libc::F_SETPIPE_SZ, libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX)) };
        }
        set_nonblock(w, true);
        if let Err(err) = write_all_now(w, &data) {
            if !self.quiet {
                eprintln!("{PROG}: fd {} ({}): {} bytes that were in the pipe cannot be put back: {err}", e.fd, e.path, data.len());
            }
        }
        (r, w)
    }

    fn fifo_end(&mut self, i: usize, e: &'a FdEntry) -> RawFd {
        let anchor = match self.fifos.get(e.path.as_str()) {
            Some(&a) => a,
            None => {
                use std::os::unix::fs::OpenOptionsExt;
                let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&e.path) else {
                    return self.null_for(e, "is a FIFO that cannot be opened");
                };
                let a = self.stage(f.into_raw_fd());
                let host = self.images[i].meta.hostname.as_str();
                let data: Vec<u8> = queued_for(self.images, host, e.inode).concat();
                let _ = write_all_now(a, &data);
                self.fifos.insert(e.path.as_str(), a);
                a
            }
        };
        // Through the anchor, which is both a reader and a writer: neither open blocks.
        let acc = e.flags & libc::O_ACCMODE;
        let path = format!("/proc/self/fd/{anchor}");
        let opened = std::fs::OpenOptions::new().read(acc != libc::O_WRONLY).write(acc != libc::O_RDONLY).open(path);
        match opened {
            Ok(f) => self.stage(f.into_raw_fd()),
            Err(_) => self.null_for(e, "is a FIFO that cannot be opened"),
        }
    }

    /// A new socket like the old one: a listener bound where it was; a connected pair of two
    /// sockets of the computation (UNIX: a socketpair; TCP: a loopback connection) with what was
    /// queued on each end sent again from the other; a UDP socket bound and connected as before.
    /// None for what cannot be made (a connection to a process outside the computation).
    fn socket_end(&mut self, i: usize, e: &FdEntry) -> Option<RawFd> {
        let host = self.images[i].meta.hostname.as_str();
        if let Some(&fd) = self.sockets.get(&(host, e.inode)) {
            return Some(fd);
        }
        let info = e.socket.as_ref()?;
        if !matches!(info.sock_type, libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET) {
            return None;
        }
        let fd = match info.family {
            // An unconnected socket would fail the program's next write in a stranger way.
            libc::AF_UNIX if peer_unknown(info) => return None,
            libc::AF_UNIX if info.listening || info.peer_inode.is_none() => sockets::unix_unconnected(info, &self.images[i].meta.cwd)?,
            libc::AF_UNIX => return self.unix_pair(host, e, info),
            libc::AF_INET | libc::AF_INET6 if info.listening => {
                let local = info.local.as_deref()?;
                match sockets::tcp_listener(local) {
                    Ok(fd) => fd,
                    Err(err) => return Some(self.null_for(e, &format!("is a TCP listener that cannot listen on {local} again ({err})"))),
                }
            }
            libc::AF_INET | libc::AF_INET6 if info.sock_type == libc::SOCK_STREAM => return self.tcp_pair(host, e, info),
            libc::AF_INET | libc::AF_INET6 => sockets::udp(info, &e.queued)?,
            _ => return None,
        };
        let fd = self.stage(fd);
        self.sockets.insert((host, e.inode), fd);
        Some(fd)
    }

    /// Every socket entry on `host` (any image).
    fn socket_entries(&self, host: &'a str) -> impl Iterator<Item = &'a FdEntry> + 'a {
        entries_on(self.images, host).filter(|x| x.kind == FdKind::Socket)
    }

    fn unix_pair(&mut self, host: &'a str, e: &FdEntry, info: &SocketInfo) -> Option<RawFd> {
        let peer = info.peer_inode?;
        if !self.socket_entries(host).any(|x| x.inode == peer) {
            return None;
        }
        let mut sv = [0i32; 2];
        // SAFETY: room for two fds.
        if unsafe { libc::socketpair(libc::AF_UNIX, info.sock_type | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()) } != 0 {
            return None;
        }
        Some(self.finish_pair(host, e, (sv[0], peer, sv[1])))
    }

    /// A TCP connection between two sockets of the computation: a new loopback connection
    /// (with new port numbers: the old ones may still be held by the killed processes').
    fn tcp_pair(&mut self, host: &'a str, e: &FdEntry, info: &SocketInfo) -> Option<RawFd> {
        let (local, remote) = (info.local.as_deref()?, info.remote.as_deref()?);
        let peer = self.socket_entries(host).find(|x| {
            x.inode != e.inode && x.socket.as_ref().is_some_and(|p| p.local.as_deref() == Some(remote) && p.remote.as_deref() == Some(local))
        })?;
        let (mine, theirs) = sockets::tcp_connected_pair(info.family)?;
        Some(self.finish_pair(host, e, (mine, peer.inode, theirs)))
    }

    /// Stage both ends of a new pair, refill each end's queue from the other, remember both.
    fn finish_pair(&mut self, host: &'a str, e: &FdEntry, (mine, peer, theirs): (RawFd, u64, RawFd)) -> RawFd {
        let (mine, theirs) = (self.stage(mine), self.stage(theirs));
        // What was queued on an end is sent again from the other one.
        for (from, to, inode) in [(theirs, mine, e.inode), (mine, theirs, peer)] {
            let queued = queued_for(self.images, host, inode);
            make_room(from, to, queued.iter().map(Vec::len).sum());
            set_nonblock(from, true);
            for msg in queued {
                if let Err(err) = write_all_now(from, msg) {
                    if !self.quiet {
                        eprintln!("{PROG}: fd {} ({}): data queued on the socket cannot be put back: {err}", e.fd, e.path);
                    }
                    break;
                }
            }
            set_nonblock(from, false);
        }
        self.sockets.insert((host, e.inode), mine);
        self.sockets.insert((host, peer), theirs);
        mine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmtcp_engine::meta::SocketInfo;

    fn unix_socket(fd: i32, inode: u64, peer_inode: Option<u64>, remote: Option<&str>) -> FdEntry {
        let mut e = FdEntry::basic(fd, FdKind::Socket, format!("socket:[{inode}]"), libc::O_RDWR, 0, false);
        e.inode = inode;
        e.socket = Some(SocketInfo {
            family: libc::AF_UNIX,
            sock_type: libc::SOCK_STREAM,
            listening: false,
            peer_inode,
            name: None,
            path_mode: None,
            local: None,
            remote: remote.map(str::to_string),
        });
        e
    }

    fn target(fd: RawFd) -> String {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map(|p| p.display().to_string()).unwrap_or_default()
    }

    #[test]
    fn a_connected_unix_socket_with_an_unknown_peer_is_not_made_unconnected() {
        let meta = ProcessMeta {
            hostname: "h".into(),
            pid: 10,
            fds: vec![
                unix_socket(3, 100, Some(101), Some("")),
                unix_socket(4, 101, Some(100), Some("")),
                unix_socket(5, 102, None, Some("")), // connected, peer unknown (no sock_diag)
                unix_socket(6, 103, None, None),     // never connected
            ],
            ..Default::default()
        };
        let images = [ImageFds { meta: &meta, saved_files: PathBuf::new() }];
        let staged = Staged::build(&images, &SharedObjects::default(), true);
        let at = |fd: i32| target(staged.by_entry[&(0, fd)]);
        assert!(at(3).starts_with("socket:") && at(4).starts_with("socket:"), "the pair: {} {}", at(3), at(4));
        assert_eq!(at(5), "/dev/null");
        assert!(at(6).starts_with("socket:"), "unconnected: {}", at(6));
        staged.close_all();
    }
}
