//! What the kernel knows about one UNIX-domain socket, asked through NETLINK_SOCK_DIAG
//! (sock_diag(7), the unix_diag family): its type, state, bound name and the inode of its peer.
//!
//! Used at checkpoint to pair the two ends of a socketpair (each end's peer inode is the other
//! end's inode, the N of `socket:[N]` in /proc/self/fd) so that restart can recreate the pair
//! with one socketpair() call, and to find the names sockets are bound to.
//!
//! Allocates (error messages, the reply buffer, the name): it runs in the checkpoint thread,
//! where the preload library's own allocator is in use, never in a signal handler.
//!
//! Layouts and constants are those of the kernel's include/uapi/linux/netlink.h, sock_diag.h
//! and unix_diag.h; requests and replies are encoded and decoded byte by byte in native byte
//! order, as netlink uses.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// What the kernel reports about one UNIX socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSockInfo {
    /// The socket's inode number (st_ino of its fd).
    pub inode: u64,
    /// SOCK_STREAM = 1, SOCK_DGRAM = 2, SOCK_SEQPACKET = 5.
    pub sock_type: u8,
    /// The kernel's sk_state, in TCP state numbering: 1 = established (connected, and both
    /// ends of a socketpair), 7 = close (unconnected), 10 = listen.
    pub state: u8,
    /// The inode of the socket this one is connected to, if any. None too when the kernel
    /// reports peer inode 0: the peer was closed (the survivor stays "established"), or it is
    /// a connection the listener has not accepted yet (the peer has no inode before accept).
    pub peer_inode: Option<u64>,
    /// The bound address: the sun_path bytes, without the terminating NUL the kernel keeps for
    /// pathname sockets; abstract names start with NUL and are reported exactly, NULs included.
    /// None when the socket is not bound. A socket accepted from a listener reports the
    /// listener's name (it shares the address) without being bound itself; an autobound
    /// socket reports its kernel-chosen abstract name (NUL and five hex digits).
    pub name: Option<Vec<u8>>,
}

// include/uapi/linux/netlink.h
/// sizeof(struct nlmsghdr): u32 nlmsg_len, u16 nlmsg_type, u16 nlmsg_flags, u32 nlmsg_seq,
/// u32 nlmsg_pid.
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
/// sizeof(struct rtattr) / sizeof(struct nlattr): u16 len (header included), u16 type.
const RTA_HDRLEN: usize = 4;
/// nla_type's top bits are the NLA_F_NESTED and NLA_F_NET_BYTEORDER flags.
const NLA_TYPE_MASK: u16 = 0x3fff;

// include/uapi/linux/sock_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;

// include/uapi/linux/unix_diag.h
/// sizeof(struct unix_diag_req): u8 sdiag_family, u8 sdiag_protocol, u16 pad,
/// u32 udiag_states, u32 udiag_ino, u32 udiag_show, u32 udiag_cookie[2].
const UNIX_DIAG_REQ_LEN: usize = 24;
/// sizeof(struct unix_diag_msg): u8 udiag_family, u8 udiag_type, u8 udiag_state, u8 pad,
/// u32 udiag_ino, u32 udiag_cookie[2].
const UNIX_DIAG_MSG_LEN: usize = 16;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_PEER: u32 = 0x4;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
/// INET_DIAG_NOCOOKIE in both cookie words: look the socket up by inode alone.
const NO_COOKIE: u32 = !0;

/// The sequence number of our one request (the netlink socket is ours alone and fresh).
const SEQ: u32 = 1;

fn invalid_data(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("unix_diag: {what}"))
}

fn u16_at(buf: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(buf.get(off..off.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(buf.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

/// The request datagram: an nlmsghdr followed by a unix_diag_req for `inode`.
fn encode_request(inode: u32) -> [u8; NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN] {
    let mut req = [0u8; NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN];
    // struct nlmsghdr; nlmsg_pid 0: the kernel fills in our port.
    req[0..4].copy_from_slice(&((NLMSG_HDRLEN + UNIX_DIAG_REQ_LEN) as u32).to_ne_bytes());
    req[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    req[8..12].copy_from_slice(&SEQ.to_ne_bytes());
    // struct unix_diag_req; sdiag_protocol and pad stay 0.
    let r = &mut req[NLMSG_HDRLEN..];
    r[0] = libc::AF_UNIX as u8;
    r[4..8].copy_from_slice(&(!0u32).to_ne_bytes()); // udiag_states: every state
    r[8..12].copy_from_slice(&inode.to_ne_bytes());
    r[12..16].copy_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER).to_ne_bytes());
    r[16..20].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    r[20..24].copy_from_slice(&NO_COOKIE.to_ne_bytes());
    req
}

/// Decode the kernel's reply datagram to a SOCK_DIAG_BY_FAMILY request for one UNIX socket.
///
/// Ok(None) for an NLMSG_ERROR carrying ENOENT (no such socket); another NLMSG_ERROR is that
/// errno. Only the first message of the datagram is read (the kernel sends one). A short,
/// inconsistent or unexpected reply is an error of kind InvalidData.
pub fn parse_reply(buf: &[u8]) -> io::Result<Option<UnixSockInfo>> {
    let short = || invalid_data("reply shorter than a netlink header");
    let len = u32_at(buf, 0).ok_or_else(short)? as usize;
    let ty = u16_at(buf, 4).ok_or_else(short)?;
    if len < NLMSG_HDRLEN || len > buf.len() {
        return Err(invalid_data(&format!("nlmsg_len {len} outside the {}-byte reply", buf.len())));
    }
    let msg = &buf[NLMSG_HDRLEN..len];
    match ty {
        NLMSG_ERROR => {
            // struct nlmsgerr: int error, then (a part of) the request it answers.
            let err = u32_at(msg, 0).ok_or_else(|| invalid_data("truncated NLMSG_ERROR"))? as i32;
            match err {
                0 => Err(invalid_data("acknowledgement instead of an answer")),
                e if e == -libc::ENOENT => Ok(None),
                e if e < 0 => Err(io::Error::from_raw_os_error(-e)),
                e => Err(invalid_data(&format!("NLMSG_ERROR with positive error {e}"))),
            }
        }
        SOCK_DIAG_BY_FAMILY => parse_unix_diag_msg(msg).map(Some),
        other => Err(invalid_data(&format!("unexpected netlink message type {other}"))),
    }
}

/// A unix_diag_msg and the attributes after it (the payload of one SOCK_DIAG_BY_FAMILY message).
fn parse_unix_diag_msg(msg: &[u8]) -> io::Result<UnixSockInfo> {
    if msg.len() < UNIX_DIAG_MSG_LEN {
        return Err(invalid_data("truncated unix_diag_msg"));
    }
    if msg[0] != libc::AF_UNIX as u8 {
        return Err(invalid_data(&format!("reply for address family {}", msg[0])));
    }
    let mut info = UnixSockInfo {
        inode: u64::from(u32_at(msg, 4).ok_or_else(|| invalid_data("truncated unix_diag_msg"))?),
        sock_type: msg[1],
        state: msg[2],
        peer_inode: None,
        name: None,
    };
    let mut attrs = &msg[UNIX_DIAG_MSG_LEN..];
    while !attrs.is_empty() {
        let (Some(rta_len), Some(rta_type)) = (u16_at(attrs, 0), u16_at(attrs, 2)) else {
            return Err(invalid_data("truncated attribute header"));
        };
        let rta_len = usize::from(rta_len);
        if rta_len < RTA_HDRLEN || rta_len > attrs.len() {
            return Err(invalid_data(&format!("attribute length {rta_len} outside the {} bytes left", attrs.len())));
        }
        let payload = &attrs[RTA_HDRLEN..rta_len];
        match rta_type & NLA_TYPE_MASK {
            UNIX_DIAG_NAME => {
                let mut name = payload.to_vec();
                // Pathname sockets carry their terminating NUL; abstract names may end in NULs
                // that are part of the name.
                if name.first().is_some_and(|&b| b != 0) && name.last() == Some(&0) {
                    name.pop();
                }
                info.name = Some(name);
            }
            UNIX_DIAG_PEER => {
                let peer = u32_at(payload, 0).ok_or_else(|| invalid_data("truncated UNIX_DIAG_PEER"))?;
                // 0 is no inode: a peer that no longer has a socket (closed).
                info.peer_inode = (peer != 0).then_some(u64::from(peer));
            }
            _ => {} // UNIX_DIAG_SHUTDOWN, always sent, and anything newer.
        }
        // Attributes are padded to 4 bytes; the last one's padding may be missing.
        attrs = &attrs[rta_len.next_multiple_of(4).min(attrs.len())..];
    }
    Ok(info)
}

/// Ask about the socket with this inode. Err on netlink failure; Ok(None) if the kernel has no
/// such UNIX socket (in this network namespace).
///
/// Socket inode numbers are 32-bit (get_next_ino), as is the request's field: an inode above
/// u32::MAX is an InvalidInput error. Inode 0 is never a socket: Ok(None) without asking.
pub fn query(inode: u64) -> io::Result<Option<UnixSockInfo>> {
    let ino = u32::try_from(inode)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("unix_diag: inode {inode} does not fit the request's 32 bits")))?;
    if ino == 0 {
        // The kernel answers EINVAL for inode 0.
        return Ok(None);
    }
    // SAFETY: plain socket(2) call; the fd is owned by `sock` below.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns; closed when `sock` drops.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // The kernel answers within sendto itself; the timeout only guards against a reply that
    // never comes, which would otherwise hang the checkpoint.
    let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
    // SAFETY: `timeout` is a valid timeval for the length passed.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const timeout).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }

    let req = encode_request(ino);
    // SAFETY: sockaddr_nl is plain data; all zero (nl_pid 0) addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    loop {
        // SAFETY: `req` is readable for its length; `kernel` is a sockaddr_nl of the size passed.
        let n = unsafe {
            libc::sendto(
                sock.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&raw const kernel).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if n >= 0 {
            if n as usize != req.len() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "unix_diag: short send"));
            }
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }

    // Peek with MSG_TRUNC for the datagram's full length, then read it whole.
    let mut buf = Vec::new();
    let len = recv_retrying(&sock, &mut buf, libc::MSG_PEEK | libc::MSG_TRUNC)?;
    buf.resize(len, 0);
    let got = recv_retrying(&sock, &mut buf, 0)?;
    if got != len {
        return Err(invalid_data(&format!("reply of {got} bytes, {len} announced")));
    }
    if u32_at(&buf, 8).is_some_and(|seq| seq != SEQ) {
        return Err(invalid_data("reply to another request"));
    }
    let info = parse_reply(&buf)?;
    if let Some(i) = &info {
        if i.inode != inode {
            return Err(invalid_data(&format!("asked about inode {inode}, told about {}", i.inode)));
        }
    }
    Ok(info)
}

/// recv(2) into `buf` (its whole length), retried on EINTR; the count recv returned.
fn recv_retrying(sock: &OwnedFd, buf: &mut [u8], flags: libc::c_int) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is writable for its length (possibly 0, with MSG_TRUNC to learn the size).
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: &OwnedFd) -> u64 {
        std::fs::File::from(fd.try_clone().unwrap()).metadata().unwrap().ino()
    }

    fn socketpair(ty: libc::c_int) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds socketpair writes.
        let rc = unsafe { libc::socketpair(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
        assert_eq!(rc, 0, "socketpair: {}", io::Error::last_os_error());
        // SAFETY: two fresh fds that nothing else owns.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// A socket of type `ty` bound to `name` (sun_path bytes; a leading NUL makes it abstract).
    fn bound_socket(ty: libc::c_int, name: &[u8]) -> OwnedFd {
        // SAFETY: plain socket(2) call.
        let fd = unsafe { libc::socket(libc::AF_UNIX, ty | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: a fresh fd that nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_un is plain data.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
        assert!(name.len() < addr.sun_path.len());
        for (d, &s) in addr.sun_path.iter_mut().zip(name) {
            *d = s as libc::c_char;
        }
        let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + name.len();
        // SAFETY: `addr` is a sockaddr_un at least `len` bytes long.
        let rc = unsafe { libc::bind(sock.as_raw_fd(), (&raw const addr).cast(), len as libc::socklen_t) };
        assert_eq!(rc, 0, "bind: {}", io::Error::last_os_error());
        sock
    }

    /// False (with a note) where NETLINK_SOCK_DIAG is refused: qemu-user passes only a few
    /// netlink protocols through. The kernel tests run natively and in the qemu-system tier.
    fn sock_diag_available() -> bool {
        // SAFETY: socket() has no memory effects; the fd is closed at once.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_SOCK_DIAG) };
        if fd < 0 {
            let err = io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EPROTONOSUPPORT), "NETLINK_SOCK_DIAG: {err}");
            eprintln!("note: NETLINK_SOCK_DIAG refused here ({err}): kernel part of the test skipped");
            return false;
        }
        // SAFETY: our fd.
        unsafe { libc::close(fd) };
        true
    }

    fn check_pair(ty: libc::c_int) {
        if !sock_diag_available() {
            return;
        }
        let (a, b) = socketpair(ty);
        let (ia, ib) = (inode_of(&a), inode_of(&b));
        let qa = query(ia).unwrap().expect("first end known");
        let qb = query(ib).unwrap().expect("second end known");
        for (q, ino, peer) in [(&qa, ia, ib), (&qb, ib, ia)] {
            assert_eq!(q.inode, ino);
            assert_eq!(i32::from(q.sock_type), ty);
            assert_eq!(q.state, 1, "socketpair ends are established");
            assert_eq!(q.peer_inode, Some(peer));
            assert_eq!(q.name, None);
        }
    }

    #[test]
    fn unix_diag_stream_pair() {
        check_pair(libc::SOCK_STREAM);
    }

    #[test]
    fn unix_diag_seqpacket_pair() {
        check_pair(libc::SOCK_SEQPACKET);
    }

    #[test]
    fn unix_diag_dgram_pair() {
        check_pair(libc::SOCK_DGRAM);
    }

    #[test]
    fn unix_diag_abstract_name() {
        if !sock_diag_available() {
            return;
        }
        let name = format!("\0dmtcp-rs-unix-diag-test-{}", std::process::id()).into_bytes();
        let s = bound_socket(libc::SOCK_DGRAM, &name);
        let q = query(inode_of(&s)).unwrap().expect("bound socket known");
        assert_eq!(q.sock_type, libc::SOCK_DGRAM as u8);
        assert_eq!(q.name.as_deref(), Some(&name[..]));
        assert_eq!(q.peer_inode, None);
    }

    #[test]
    fn unix_diag_path_name() {
        if !sock_diag_available() {
            return;
        }
        let path = std::env::temp_dir().join(format!("dmtcp-rs-unix-diag-test-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let name = path.as_os_str().as_encoded_bytes().to_vec();
        let s = bound_socket(libc::SOCK_STREAM, &name);
        let q = query(inode_of(&s));
        let _ = std::fs::remove_file(&path);
        let q = q.unwrap().expect("bound socket known");
        assert_eq!(q.name.as_deref(), Some(&name[..]), "no trailing NUL");
    }

    #[test]
    fn unix_diag_not_a_socket() {
        if !sock_diag_available() {
            return;
        }
        // Pipes take their inode numbers from the same counter as sockets: an open pipe's is
        // no socket's.
        let mut fds = [0; 2];
        // SAFETY: `fds` has room for the two fds pipe writes.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: two fresh fds that nothing else owns.
        let (r, _w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        assert_eq!(query(inode_of(&r)).unwrap(), None);
        assert_eq!(query(0).unwrap(), None);
        assert_eq!(query(u64::from(u32::MAX) + 1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    /// A SOCK_DIAG_BY_FAMILY reply as the kernel builds it.
    fn reply(ino: u32, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b[8..12].copy_from_slice(&SEQ.to_ne_bytes());
        b.extend_from_slice(&[libc::AF_UNIX as u8, libc::SOCK_STREAM as u8, 1, 0]);
        b.extend_from_slice(&ino.to_ne_bytes());
        b.extend_from_slice(&[0xaa; 8]); // cookie
        for (ty, data) in attrs {
            b.extend_from_slice(&((RTA_HDRLEN + data.len()) as u16).to_ne_bytes());
            b.extend_from_slice(&ty.to_ne_bytes());
            b.extend_from_slice(data);
            b.resize(b.len().next_multiple_of(4), 0);
        }
        let len = b.len() as u32;
        b[0..4].copy_from_slice(&len.to_ne_bytes());
        b
    }

    fn error_reply(errno: i32) -> Vec<u8> {
        let mut b = vec![0u8; NLMSG_HDRLEN];
        b[0..4].copy_from_slice(&((NLMSG_HDRLEN + 4 + NLMSG_HDRLEN) as u32).to_ne_bytes());
        b[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&(-errno).to_ne_bytes());
        b.extend_from_slice(&encode_request(7)[..NLMSG_HDRLEN]);
        b
    }

    #[test]
    fn unix_diag_parse_reply() {
        let peer = 4321u32.to_ne_bytes();
        let buf = reply(1234, &[(UNIX_DIAG_NAME, b"\0abc"), (UNIX_DIAG_PEER, &peer), (6, &[3])]);
        let info = parse_reply(&buf).unwrap().unwrap();
        assert_eq!(info, UnixSockInfo { inode: 1234, sock_type: 1, state: 1, peer_inode: Some(4321), name: Some(b"\0abc".to_vec()) });
        // The last attribute's padding may be missing.
        let buf = reply(1, &[(UNIX_DIAG_NAME, b"/a\0")]);
        let mut short = buf[..buf.len() - 1].to_vec();
        let n = short.len() as u32;
        short[0..4].copy_from_slice(&n.to_ne_bytes());
        assert_eq!(parse_reply(&short).unwrap().unwrap().name.as_deref(), Some(&b"/a"[..]));
        // A peer of inode 0 (closed) is no peer.
        let info = parse_reply(&reply(1, &[(UNIX_DIAG_PEER, &[0; 4])])).unwrap().unwrap();
        assert_eq!(info.peer_inode, None);
    }

    #[test]
    fn unix_diag_parse_errors() {
        assert_eq!(parse_reply(&error_reply(libc::ENOENT)).unwrap(), None);
        assert_eq!(parse_reply(&error_reply(libc::EPERM)).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(parse_reply(&error_reply(0)).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn unix_diag_parse_rejects_truncated() {
        let peer = 4321u32.to_ne_bytes();
        let buf = reply(1234, &[(UNIX_DIAG_NAME, b"\0abc"), (UNIX_DIAG_PEER, &peer)]);
        // Every prefix is cut short of what its header announces.
        for n in 0..buf.len() {
            assert_eq!(parse_reply(&buf[..n]).unwrap_err().kind(), io::ErrorKind::InvalidData, "prefix of {n} bytes");
        }
        let enoent = error_reply(libc::ENOENT);
        for n in 0..enoent.len() {
            assert_eq!(parse_reply(&enoent[..n]).unwrap_err().kind(), io::ErrorKind::InvalidData, "prefix of {n} bytes");
        }
        // An nlmsg_len that agrees with the cut but leaves the unix_diag_msg or an attribute
        // incomplete (cuts between attributes are valid replies).
        let boundaries = [NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN, NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN + 8];
        for n in (NLMSG_HDRLEN..buf.len()).filter(|n| !boundaries.contains(n)) {
            let mut cut = buf[..n].to_vec();
            cut[0..4].copy_from_slice(&(n as u32).to_ne_bytes());
            assert_eq!(parse_reply(&cut).unwrap_err().kind(), io::ErrorKind::InvalidData, "cut at {n}");
        }
        let mut bad = buf.clone();
        bad[0..4].copy_from_slice(&8u32.to_ne_bytes()); // nlmsg_len below the header
        assert_eq!(parse_reply(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut bad = buf.clone();
        bad[NLMSG_HDRLEN + UNIX_DIAG_MSG_LEN..][..2].copy_from_slice(&2u16.to_ne_bytes()); // rta_len < 4
        assert_eq!(parse_reply(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let bad = reply(1, &[(UNIX_DIAG_PEER, &[1, 2])]); // peer shorter than a u32
        assert_eq!(parse_reply(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut bad = buf.clone();
        bad[NLMSG_HDRLEN] = libc::AF_INET as u8;
        assert_eq!(parse_reply(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut bad = buf;
        bad[4..6].copy_from_slice(&3u16.to_ne_bytes()); // NLMSG_DONE
        assert_eq!(parse_reply(&bad).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }
}
