//! New sockets for dmtcp_restart's staging (src/staging.rs), made like the checkpointed ones:
//! UNIX sockets bound to their old name (listening again if they were), TCP listeners on their
//! old address, UDP sockets bound and connected as before, and loopback TCP connections that
//! stand in for a connection between two processes of the computation. (Staging moves each to a
//! high number, close-on-exec.)

use dmtcp_engine::meta::SocketInfo;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{IntoRawFd, RawFd};
use std::path::Path;

/// A UNIX socket that is not connected to a peer of the computation: bound to its old name if it
/// had one (a stale socket file left by the killed process is replaced), listening if it was.
pub fn unix_unconnected(info: &SocketInfo, cwd: &str) -> Option<RawFd> {
    // SAFETY: socket() has no memory effects.
    let fd = unsafe { libc::socket(libc::AF_UNIX, info.sock_type | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    let ok = match &info.name {
        Some(name) => bind_unix(fd, name, cwd, info.path_mode),
        None => true,
    };
    // SAFETY: listen on our own socket.
    let ok = ok && (!info.listening || unsafe { libc::listen(fd, libc::SOMAXCONN) } == 0);
    if !ok {
        // SAFETY: our own fd.
        unsafe { libc::close(fd) };
        return None;
    }
    Some(fd)
}

fn bind_unix(fd: RawFd, name: &[u8], cwd: &str, mode: Option<u32>) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let mut name = name.to_vec();
    let mut file = None;
    if name.first().is_some_and(|&b| b != 0) {
        // A path, relative to the working directory of the bind: the checkpointed cwd.
        let path = Path::new(std::ffi::OsStr::from_bytes(&name));
        let path = if path.is_relative() { Path::new(cwd).join(path) } else { path.to_path_buf() };
        use std::os::unix::fs::FileTypeExt;
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_socket()) {
            let _ = std::fs::remove_file(&path);
        }
        name = path.as_os_str().as_bytes().to_vec();
        file = Some(path);
    }
    // SAFETY: sockaddr_un is plain data.
    let mut sa: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    if name.len() >= sa.sun_path.len() {
        return false;
    }
    for (d, s) in sa.sun_path.iter_mut().zip(&name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len() + usize::from(name.first() != Some(&0));
    // SAFETY: bind with a sockaddr_un of `len` meaningful bytes.
    if unsafe { libc::bind(fd, (&sa as *const libc::sockaddr_un).cast(), len as libc::socklen_t) } != 0 {
        return false;
    }
    if let (Some(path), Some(mode)) = (file, mode) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
    }
    true
}

/// A TCP listener on its old address (SO_REUSEADDR: the killed process's connections may linger).
pub fn tcp_listener(local: &str) -> std::io::Result<RawFd> {
    let addr: SocketAddr = local.parse().map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // The killed processes' connections on this port may still be closing (FIN_WAIT, LAST_ACK:
    // states that SO_REUSEADDR does not pass over); they end within moments on their own.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr) {
            Ok(l) => return Ok(l.into_raw_fd()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

/// A UDP socket bound to its old address and connected to its old peer, if it had them, with
/// the datagrams that were queued on it sent to it again (from a scratch socket: their source
/// address is not the original one).
pub fn udp(info: &SocketInfo, queued: &[Vec<u8>]) -> Option<RawFd> {
    let any: SocketAddr = if info.family == libc::AF_INET6 { "[::]:0".parse().ok()? } else { "0.0.0.0:0".parse().ok()? };
    let local = info.local.as_deref().and_then(|l| l.parse().ok()).unwrap_or(any);
    let s = UdpSocket::bind(local).ok()?;
    if !queued.is_empty() {
        let mut to = s.local_addr().ok()?;
        if to.ip().is_unspecified() {
            to.set_ip(if to.is_ipv6() { std::net::Ipv6Addr::LOCALHOST.into() } else { std::net::Ipv4Addr::LOCALHOST.into() });
        }
        if let Ok(scratch) = UdpSocket::bind(any) {
            for msg in queued {
                let _ = scratch.send_to(msg, to);
            }
        }
    }
    if let Some(remote) = info.remote.as_deref().and_then(|r| r.parse::<SocketAddr>().ok()) {
        s.connect(remote).ok()?;
    }
    Some(s.into_raw_fd())
}

/// Two connected TCP sockets over loopback of the given family: (connecting end, accepted end).
pub fn tcp_connected_pair(family: i32) -> Option<(RawFd, RawFd)> {
    let loopback: SocketAddr = if family == libc::AF_INET6 { "[::1]:0".parse().ok()? } else { "127.0.0.1:0".parse().ok()? };
    let listener = TcpListener::bind(loopback).ok()?;
    let client = TcpStream::connect(listener.local_addr().ok()?).ok()?;
    let (server, _) = listener.accept().ok()?;
    let _ = client.set_nodelay(true);
    Some((client.into_raw_fd(), server.into_raw_fd()))
}
