//! /proc/<pid>/maps parsing.

use std::io;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Perms {
    pub read: bool,
    pub write: bool,
    pub exec: bool,
    /// 's' (MAP_SHARED) rather than 'p'.
    pub shared: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapEntry {
    pub start: u64,
    pub end: u64,
    pub perms: Perms,
    pub offset: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// Backing path or pseudo-name ("[heap]", "[anon:x]", "/lib/x.so (deleted)"); may be empty.
    pub path: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed /proc maps line {line}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub text: String,
}

fn parse_line(line: &str) -> Option<MapEntry> {
    let mut rest = line;
    let mut field = || {
        let s = rest.trim_start_matches(' ');
        let end = s.find(' ').unwrap_or(s.len());
        let (f, r) = s.split_at(end);
        rest = r;
        f
    };
    let range = field();
    let perms = field().as_bytes().to_vec();
    let offset = field();
    let dev = field();
    let inode = field();
    let (start, end) = range.split_once('-')?;
    let (major, minor) = dev.split_once(':')?;
    if perms.len() != 4 {
        return None;
    }
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    if end < start {
        return None;
    }
    Some(MapEntry {
        start,
        end,
        perms: Perms { read: perms[0] == b'r', write: perms[1] == b'w', exec: perms[2] == b'x', shared: perms[3] == b's' },
        offset: u64::from_str_radix(offset, 16).ok()?,
        dev_major: u32::from_str_radix(major, 16).ok()?,
        dev_minor: u32::from_str_radix(minor, 16).ok()?,
        inode: inode.parse().ok()?,
        // The path starts after the padding spaces and may itself contain spaces.
        path: rest.trim_start_matches(' ').to_string(),
    })
}

pub fn parse_maps(text: &str) -> Result<Vec<MapEntry>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| parse_line(l).ok_or_else(|| ParseError { line: i + 1, text: l.to_string() }))
        .collect()
}

/// The calling process's mappings. Plain open/read: safe while other threads are stopped.
pub fn read_self_maps() -> io::Result<Vec<MapEntry>> {
    let text = std::fs::read_to_string("/proc/self/maps")?;
    parse_maps(&text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d5c4a00000-55d5c4a02000 r--p 00000000 fe:01 1837283                    /usr/bin/my prog
55d5c5c3e000-55d5c5c5f000 rw-p 00000000 00:00 0                          [heap]
7f1e2c000000-7f1e2c021000 rw-s 00001000 00:05 42                         /dev/shm/x (deleted)
7f1e2c100000-7f1e2c101000 ---p 00000000 00:00 0 
7ffd1a3c6000-7ffd1a3e7000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

    #[test]
    fn parses_paths_specials_and_permissions() {
        let m = parse_maps(SAMPLE).unwrap();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].path, "/usr/bin/my prog");
        assert_eq!(m[0].inode, 1837283);
        assert_eq!((m[0].dev_major, m[0].dev_minor), (0xfe, 1));
        assert_eq!(m[1].path, "[heap]");
        assert!(m[2].perms.shared && m[2].perms.write && !m[2].perms.exec);
        assert_eq!(m[2].offset, 0x1000);
        assert_eq!(m[2].path, "/dev/shm/x (deleted)");
        assert_eq!(m[3].path, "");
        assert!(!m[3].perms.read);
        assert_eq!(m[5].start, 0xffffffffff600000);
    }

    const SPECIALS: &str = "\
7f3a5c000000-7f3a5c021000 rw-p 00000000 00:00 0 
7f3a5d1f0000-7f3a5d1f4000 rw-p 00000000 00:00 0                          [anon:glibc: loader malloc]
7fff8a5fd000-7fff8a601000 r--p 00000000 00:00 0                          [vvar]
7fff8a601000-7fff8a603000 r--p 00000000 00:00 0                          [vvar_vclock]
7fff8a603000-7fff8a605000 r-xp 00000000 00:00 0                          [vdso]
08048000-08049000 r-xp 00000000 08:02 131          /tmp/a b/c.out (deleted)
";

    #[test]
    fn parses_kernel_special_mappings_and_32_bit_addresses() {
        let m = parse_maps(SPECIALS).unwrap();
        let paths: Vec<&str> = m.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["", "[anon:glibc: loader malloc]", "[vvar]", "[vvar_vclock]", "[vdso]", "/tmp/a b/c.out (deleted)"]);
        assert!(m[4].perms.exec && m[4].perms.read && !m[4].perms.write && !m[4].perms.shared);
        assert_eq!((m[5].start, m[5].end, m[5].inode, m[5].dev_major, m[5].dev_minor), (0x8048000, 0x8049000, 131, 8, 2));
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_maps("zzzz\n").is_err());
        assert!(parse_maps("1000-0800 rw-p 0 00:00 0\n").is_err());
        assert!(parse_maps("1000-2000 rw-p 0 00:00\n").is_err());
        assert!(parse_maps("1000-2000 rwp 0 00:00 0\n").is_err());
        let e = parse_maps("1000-2000 rw-p 0 00:00 0\nbad\n").unwrap_err();
        assert_eq!(e.line, 2);
    }

    #[test]
    fn reads_own_maps() {
        let m = read_self_maps().unwrap();
        assert!(m.iter().any(|e| e.path == "[stack]"));
    }
}
