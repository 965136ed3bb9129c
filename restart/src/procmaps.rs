//! Just enough of /proc/self/maps for the loader: ranges and the kernel's special names.

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Special {
    None,
    Vdso,
    Vvar,
    VvarVclock,
    Vsyscall,
}

pub struct Entry {
    pub start: usize,
    pub end: usize,
    pub special: Special,
}

/// Iterate over the lines of a maps text; malformed lines are skipped.
pub struct Lines<'a> {
    text: &'a [u8],
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a [u8]) -> Self {
        Lines { text }
    }
}

impl Iterator for Lines<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        while !self.text.is_empty() {
            let n = self.text.iter().position(|&c| c == b'\n').unwrap_or(self.text.len());
            let line = &self.text[..n];
            self.text = if n < self.text.len() { &self.text[n + 1..] } else { &[] };
            if let Some(e) = parse_line(line) {
                return Some(e);
            }
        }
        None
    }
}

fn hex(s: &[u8]) -> Option<usize> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v: usize = 0;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | d as usize;
    }
    Some(v)
}

fn parse_line(line: &[u8]) -> Option<Entry> {
    let dash = line.iter().position(|&c| c == b'-')?;
    let space = line.iter().position(|&c| c == b' ')?;
    let start = hex(&line[..dash])?;
    let end = hex(line.get(dash + 1..space)?)?;
    let name_start = line.iter().position(|&c| c == b'[');
    let special = match name_start.map(|i| &line[i..]) {
        Some(b"[vdso]") => Special::Vdso,
        Some(b"[vvar]") => Special::Vvar,
        Some(b"[vvar_vclock]") => Special::VvarVclock,
        // Kernel pages that cannot be moved or unmapped: x86_64's [vsyscall], ARM's [vectors].
        Some(b"[vsyscall]") | Some(b"[vectors]") => Special::Vsyscall,
        _ => Special::None,
    };
    Some(Entry { start, end, special })
}
