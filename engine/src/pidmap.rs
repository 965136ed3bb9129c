//! The pid map of a restart: which pid each process of the computation had at checkpoint time
//! (the pid the program knows, its *virtual* pid) and which one it has now (the *real* pid).
//!
//! dmtcp_restart makes it in a memfd before it forks the process tree; each restarted process
//! fills in its own entry right after its fork, and libdmtcp.so in every restored process reads
//! the whole map once every entry is there. The memfd then stays open at [`PIDMAP_FD`], so that
//! programs executed later (a shell's children) read it too.
//!
//! Layout, little-endian: magic `DPM1`, u32 entry count, then per entry u32 virtual and u32 real
//! pid; an entry whose virtual pid is 0 is not filled in yet.

/// The memfd's name, as /proc/PID/fd shows it: `/memfd:dmtcp-pids (deleted)`.
pub const PIDMAP_NAME: &str = "dmtcp-pids";
/// Where a restored process keeps the map open (below the coordinator's fd, 821 and up).
pub const PIDMAP_FD: i32 = 820;
const MAGIC: [u8; 4] = *b"DPM1";
const HEADER_LEN: u64 = 8;
const ENTRY_LEN: u64 = 8;

/// The header of a map with room for `count` entries (the entries follow, zero until filled).
pub fn header(count: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..4].copy_from_slice(&MAGIC);
    h[4..].copy_from_slice(&count.to_le_bytes());
    h
}

/// Where entry `index` goes, and its bytes.
pub fn entry(index: u32, virtual_pid: u32, real_pid: u32) -> (u64, [u8; ENTRY_LEN as usize]) {
    let mut e = [0u8; ENTRY_LEN as usize];
    e[..4].copy_from_slice(&virtual_pid.to_le_bytes());
    e[4..].copy_from_slice(&real_pid.to_le_bytes());
    (HEADER_LEN + u64::from(index) * ENTRY_LEN, e)
}

/// A map as read back.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PidMap {
    /// (virtual, real) of the entries filled in so far.
    pub entries: Vec<(u32, u32)>,
    /// Entries not filled in yet.
    pub missing: usize,
}

/// Parse a map; None when the bytes are not one (wrong magic, cut short).
pub fn parse(bytes: &[u8]) -> Option<PidMap> {
    let (head, body) = bytes.split_at_checked(HEADER_LEN as usize)?;
    if head[..4] != MAGIC {
        return None;
    }
    let count = u32::from_le_bytes(head[4..].try_into().ok()?) as usize;
    let body = body.get(..count.checked_mul(ENTRY_LEN as usize)?)?;
    let mut map = PidMap::default();
    for e in body.chunks_exact(ENTRY_LEN as usize) {
        let virt = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let real = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if virt == 0 {
            map.missing += 1;
        } else {
            map.entries.push((virt, real));
        }
    }
    Some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_fill_in_and_read_back() {
        let mut bytes = header(3).to_vec();
        bytes.resize(8 + 3 * 8, 0);
        assert_eq!(parse(&bytes), Some(PidMap { entries: vec![], missing: 3 }));
        for (i, v, r) in [(0u32, 100u32, 5000u32), (2, 102, 5002)] {
            let (off, e) = entry(i, v, r);
            bytes[off as usize..off as usize + 8].copy_from_slice(&e);
        }
        assert_eq!(parse(&bytes), Some(PidMap { entries: vec![(100, 5000), (102, 5002)], missing: 1 }));
    }

    #[test]
    fn damaged_maps_are_refused() {
        assert_eq!(parse(b"DPM1"), None);
        assert_eq!(parse(b"XXXX\x01\0\0\0\x01\0\0\0\x02\0\0\0"), None);
        // claims two entries, holds one
        assert_eq!(parse(b"DPM1\x02\0\0\0\x01\0\0\0\x02\0\0\0"), None);
        assert_eq!(parse(b"DPM1\xff\xff\xff\xff"), None);
    }
}
