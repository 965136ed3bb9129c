//! TCP connections between processes of the computation, drained at checkpoint and refilled.
//!
//! A peek at a receive queue misses what the writer's kernel still holds in its send queue (the
//! reader's window was full, or segments are in flight). So, once every process is suspended,
//! the ends whose peer is in the computation too (engine::tcp_pairs) are read out into memory
//! until every writer's send queue is empty (each process reports Drained, the coordinator says
//! AllDrained): the reading side then holds every byte, and the image keeps them (restart writes
//! them back from the new peer, src/staging.rs). When the computation resumes instead, each end
//! sends the bytes it drained to its peer in one frame ([u64 length][bytes]) and the peer
//! writes them back into the connection, so that they are queued for the reader again, ahead of
//! anything new (the application threads are still stopped while this happens).
//!
//! Runs on the checkpoint thread, with every application thread stopped: it allocates freely.

use dmtcp_engine::protocol::{self, FromCoord, TcpEnd, ToCoord};
use dmtcp_engine::tcp_pairs;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a drain or refill may take before the checkpoint goes on without it (with a warning).
const DEADLINE: Duration = Duration::from_secs(30);

/// The ends drained in this round: (fd, bytes read out of it).
static DRAINED: Mutex<Vec<(i32, Vec<u8>)>> = Mutex::new(Vec::new());

fn drained() -> std::sync::MutexGuard<'static, Vec<(i32, Vec<u8>)>> {
    DRAINED.lock().unwrap_or_else(|e| e.into_inner())
}

/// The TCP connections this process holds, with their fds (all but `skip`).
pub fn my_ends(skip: &[i32]) -> Vec<(i32, TcpEnd)> {
    let host = crate::config::nix_hostname();
    // SAFETY: getpid has no memory effects.
    let pid = crate::pids::to_virtual(unsafe { libc::getpid() } as u32);
    let fds = dmtcp_engine::procfs::fds::list_numeric_dir("/proc/self/fd").unwrap_or_default();
    fds.into_iter()
        .filter(|fd| !skip.contains(fd))
        .filter_map(|fd| {
            let (inode, local, peer) = dmtcp_engine::procfs::fd_state::tcp_connection(fd)?;
            Some((fd, TcpEnd { host: host.clone(), pid, inode, local, peer }))
        })
        .collect()
}

/// Make every TCP connection of this process end with a reset when it is closed (SO_LINGER 0):
/// the process is about to be killed.
pub fn reset_connections() {
    let abort = libc::linger { l_onoff: 1, l_linger: 0 };
    for fd in dmtcp_engine::procfs::fds::list_numeric_dir("/proc/self/fd").unwrap_or_default() {
        if dmtcp_engine::procfs::fd_state::tcp_connection(fd).is_some() {
            // SAFETY: setsockopt with a linger struct of its size.
            unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&abort as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
        }
    }
}

fn outq(fd: i32) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    if unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut n) } != 0 {
        return 0;
    }
    n
}

/// Read what is queued on `fd` now into `into`, without blocking. False at end of stream.
fn read_available(fd: i32, into: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 65536];
    loop {
        // SAFETY: recv into our buffer of buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        match n {
            0 => return false,
            n if n > 0 => into.extend_from_slice(&buf[..n as usize]),
            _ if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => {}
            _ => return true,
        }
    }
}

fn poll_in(fds: &[i32], timeout_ms: i32) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> = fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: poll on our own array of p.len() entries.
    unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    p.iter().map(|e| e.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0).collect()
}

/// After AllSuspended: drain the ends of `mine` that this process drains (see module doc).
/// Every process takes part in the Drained barrier when anyone drains anything.
pub fn drain(stream: &mut TcpStream, generation: u64, mine: &[(i32, TcpEnd)], all: &[TcpEnd]) {
    drained().clear();
    if !tcp_pairs::any_drained(all) {
        return;
    }
    let ends: Vec<TcpEnd> = mine.iter().map(|(_, e)| e.clone()).collect();
    let chosen = tcp_pairs::drained_here(&ends, all);
    // One fd per socket (the lowest: the one a dup shares its description with).
    let mut fds: Vec<i32> = Vec::new();
    for (fd, e) in mine.iter().filter(|(_, e)| chosen.contains(&e)) {
        if !mine.iter().any(|(other, o)| o.inode == e.inode && other < fd) {
            fds.push(*fd);
        }
    }
    let mut data: Vec<Vec<u8>> = vec![Vec::new(); fds.len()];
    let mut open = vec![true; fds.len()];
    let coord = stream.as_raw_fd();
    let deadline = Instant::now() + DEADLINE;
    let mut reported = false;
    loop {
        for (i, &fd) in fds.iter().enumerate() {
            if open[i] {
                open[i] = read_available(fd, &mut data[i]);
            }
        }
        if !reported && (fds.iter().all(|&fd| outq(fd) == 0) || Instant::now() > deadline) {
            if Instant::now() > deadline {
                crate::ckpt::warn("a TCP connection's send queue did not empty: bytes still in it are not in the image");
            }
            if protocol::send(stream, &ToCoord::Drained { generation }).is_err() {
                break;
            }
            reported = true;
        }
        let mut watch = vec![coord];
        watch.extend(fds.iter().zip(&open).filter(|(_, o)| **o).map(|(fd, _)| *fd));
        if poll_in(&watch, 5)[0] {
            match protocol::recv::<_, FromCoord>(stream) {
                Ok(FromCoord::AllDrained { generation: g }) if g == generation => break,
                Ok(FromCoord::Kill) => crate::ckpt::kill_process(),
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    // Every writer's queue is empty now: what is left sits in our receive queues.
    for (i, &fd) in fds.iter().enumerate() {
        if open[i] {
            read_available(fd, &mut data[i]);
        }
    }
    *drained() = fds.into_iter().zip(data).collect();
}

/// The bytes drained from `fd` in this round (None: not drained, its queue was peeked).
pub fn drained_from(fd: i32) -> Option<Vec<u8>> {
    drained().iter().find(|(f, _)| *f == fd).map(|(_, d)| d.clone())
}

/// One drained end's part in the refill.
struct Refill {
    fd: i32,
    /// Our frame for the peer ([u64 LE length][the bytes we drained]), then, once it is all
    /// sent and the peer's frame is in, the peer's bytes: written back towards the peer.
    out: Vec<u8>,
    sent: usize,
    /// The peer's frame as read so far.
    incoming: Vec<u8>,
    frame_in: bool,
    appended: bool,
}

impl Refill {
    fn new(fd: i32, bytes: &[u8]) -> Refill {
        let mut out = (bytes.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(bytes);
        Refill { fd, out, sent: 0, incoming: Vec::new(), frame_in: false, appended: false }
    }

    /// How much of the peer's frame is still to come.
    fn frame_left(&self) -> usize {
        match self.incoming.get(..8) {
            None => 8 - self.incoming.len(),
            Some(h) => (8 + u64::from_le_bytes(h.try_into().unwrap_or([0; 8])) as usize).saturating_sub(self.incoming.len()),
        }
    }

    fn done(&self) -> bool {
        self.appended && self.sent == self.out.len()
    }

    /// Read exactly what is left of the peer's frame and nothing after it (that is the data
    /// the peer refills for our application).
    fn read_frame(&mut self) {
        let mut buf = vec![0u8; 65536];
        while !self.frame_in {
            let want = self.frame_left().min(buf.len());
            // SAFETY: recv into our buffer of at least `want` bytes.
            let n = unsafe { libc::recv(self.fd, buf.as_mut_ptr().cast(), want, libc::MSG_DONTWAIT) };
            match n {
                0 => self.frame_in = true, // the peer closed: nothing to put back
                n if n > 0 => {
                    self.incoming.extend_from_slice(&buf[..n as usize]);
                    self.frame_in = self.frame_left() == 0;
                }
                _ => return,
            }
        }
    }

    /// Send what can be sent now; true when all of `out` is sent. A connection that can no
    /// longer send (shut down for writing, reset) gives up: what it drained cannot go back.
    fn write_some(&mut self) -> bool {
        while self.sent < self.out.len() {
            let rest = &self.out[self.sent..];
            // SAFETY: send from our buffer of rest.len() bytes.
            let n = unsafe { libc::send(self.fd, rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) {
                    if self.out.len() > 8 {
                        crate::ckpt::warn(&format!("a drained TCP connection cannot be refilled ({e}): its drained bytes are lost"));
                    }
                    (self.sent, self.frame_in, self.appended) = (self.out.len(), true, true);
                    return true;
                }
                return false;
            }
            self.sent += n as usize;
        }
        true
    }

    fn step(&mut self) {
        self.read_frame();
        while self.write_some() && self.frame_in && !self.appended {
            // Our frame is out (the peer reads it exactly): the peer's bytes follow it.
            let payload = self.incoming.split_off(self.incoming.len().min(8));
            self.out.extend_from_slice(&payload);
            self.appended = true;
        }
    }
}

/// After the resume barrier, before the application threads run: put the drained bytes back.
pub fn refill() {
    let taken = std::mem::take(&mut *drained());
    if taken.is_empty() {
        return;
    }
    let mut ends: Vec<Refill> = taken.iter().map(|(fd, bytes)| Refill::new(*fd, bytes)).collect();
    let deadline = Instant::now() + DEADLINE;
    while !ends.iter().all(Refill::done) {
        if Instant::now() > deadline {
            crate::ckpt::warn("a TCP connection could not be refilled after the checkpoint: its drained bytes are lost");
            return;
        }
        let mut p: Vec<libc::pollfd> = ends
            .iter()
            .filter(|e| !e.done())
            .map(|e| {
                let mut events = 0;
                if !e.frame_in {
                    events |= libc::POLLIN;
                }
                if e.sent < e.out.len() {
                    events |= libc::POLLOUT;
                }
                libc::pollfd { fd: e.fd, events, revents: 0 }
            })
            .collect();
        // SAFETY: poll on our own array of p.len() entries.
        unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, 5) };
        for e in ends.iter_mut().filter(|e| !e.done()) {
            e.step();
        }
    }
}
