//! Which TCP connections join two processes of the computation. Each process reports the ends
//! it holds when it is suspended; the coordinator hands everyone the whole list. A connection
//! whose two ends are both in it is drained at checkpoint (every byte the writer had sent is
//! read out on the reading side and kept in the image), where a peek at the receive queue alone
//! would miss what still sat in the writer's send queue.
//!
//! Every process decides from the same list, so all agree on which ends are drained and by whom.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// One end of a connected TCP socket, as its holder sees it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct TcpEnd {
    pub host: String,
    /// The holder's (virtual) pid.
    pub pid: u32,
    /// The socket's inode: one socket held by several processes (fork) is one end.
    pub inode: u64,
    /// getsockname and getpeername, as "ip:port".
    pub local: String,
    pub peer: String,
}

fn canonical(addr: &str) -> Option<SocketAddr> {
    let a: SocketAddr = addr.parse().ok()?;
    Some(SocketAddr::new(a.ip().to_canonical(), a.port()))
}

impl TcpEnd {
    /// The holder that drains this socket: of the processes holding it, the lowest pid.
    fn is_drainer(&self, all: &[TcpEnd]) -> bool {
        !all.iter().any(|o| o.host == self.host && o.inode == self.inode && o.pid < self.pid)
    }

    /// Is `other` the far end of this connection? Loopback addresses only match on one host
    /// (v4-mapped IPv6 addresses match their IPv4 form: a dual-stack server's view of a v4 client).
    fn is_peer(&self, other: &TcpEnd) -> bool {
        let (Some(l), Some(p), Some(ol), Some(op)) = (canonical(&self.local), canonical(&self.peer), canonical(&other.local), canonical(&other.peer))
        else {
            return false;
        };
        l == op && p == ol && (!l.ip().is_loopback() || self.host == other.host)
    }
}

/// The ends among `mine` that this process drains: it is their drainer, and the far end is in
/// `all` too.
pub fn drained_here<'a>(mine: &'a [TcpEnd], all: &[TcpEnd]) -> Vec<&'a TcpEnd> {
    mine.iter().filter(|m| m.is_drainer(all) && all.iter().any(|o| m.is_peer(o))).collect()
}

/// Does any process drain anything (then every process takes part in the Drained barrier)?
pub fn any_drained(all: &[TcpEnd]) -> bool {
    all.iter().any(|m| m.is_drainer(all) && all.iter().any(|o| m.is_peer(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(host: &str, pid: u32, inode: u64, local: &str, peer: &str) -> TcpEnd {
        TcpEnd { host: host.into(), pid, inode, local: local.into(), peer: peer.into() }
    }

    #[test]
    fn both_ends_in_the_computation_are_drained() {
        let client = end("a", 10, 1, "127.0.0.1:40000", "127.0.0.1:5000");
        let server = end("a", 11, 2, "127.0.0.1:5000", "127.0.0.1:40000");
        let outside = end("a", 11, 3, "127.0.0.1:5001", "127.0.0.1:40001");
        let all = [client.clone(), server.clone(), outside.clone()];
        assert_eq!(drained_here(std::slice::from_ref(&client), &all), [&client]);
        assert_eq!(drained_here(&[server.clone(), outside.clone()], &all), [&server]);
        assert!(any_drained(&all));
        assert!(!any_drained(&[client, outside]), "a peer outside the computation: nothing is drained");
    }

    #[test]
    fn loopback_needs_one_host_and_mapped_addresses_match() {
        let a = end("a", 10, 1, "127.0.0.1:40000", "127.0.0.1:5000");
        let b = end("b", 11, 2, "127.0.0.1:5000", "127.0.0.1:40000");
        assert!(!any_drained(&[a, b]), "two hosts' loopback connections are not one connection");
        let client = end("a", 10, 1, "10.0.0.1:40000", "10.0.0.2:5000");
        let server = end("b", 11, 2, "[::ffff:10.0.0.2]:5000", "[::ffff:10.0.0.1]:40000");
        assert!(any_drained(&[client, server]));
    }

    #[test]
    fn a_socket_shared_after_fork_is_drained_by_one_holder() {
        let parent = end("a", 10, 7, "127.0.0.1:40000", "127.0.0.1:5000");
        let child = end("a", 12, 7, "127.0.0.1:40000", "127.0.0.1:5000");
        let server = end("a", 11, 2, "127.0.0.1:5000", "127.0.0.1:40000");
        let all = [parent.clone(), child.clone(), server];
        assert_eq!(drained_here(std::slice::from_ref(&parent), &all), [&parent]);
        assert!(drained_here(&[child], &all).is_empty());
        assert_eq!(drained_here(&[end("x", 1, 1, "garbage", "127.0.0.1:5000")], &all).len(), 0);
    }
}
