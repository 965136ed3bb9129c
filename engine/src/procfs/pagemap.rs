//! /proc/self/pagemap: which pages of a range hold data (present in RAM or swapped out).
//! Untouched anonymous pages are not even read, so they cost nothing to checkpoint.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
/// Entries read per pread: 512 KiB of address space per 4 KiB read with 4 KiB pages.
const BATCH: u64 = 512;

/// Runs `(first_page, num_pages)` of pages with data in [start, end), counted from `start`.
pub fn present_runs(pagemap: &File, start: u64, end: u64, page_size: u64) -> io::Result<Vec<(u64, u64)>> {
    let pages = (end - start) / page_size;
    let first_index = start / page_size;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; (BATCH * 8) as usize];
    let mut done = 0;
    while done < pages {
        let n = BATCH.min(pages - done);
        let bytes = &mut buf[..(n * 8) as usize];
        pagemap.read_exact_at(bytes, (first_index + done) * 8)?;
        for (i, e) in bytes.chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
            if entry & (PM_PRESENT | PM_SWAPPED) == 0 {
                continue;
            }
            let p = done + i as u64;
            match runs.last_mut() {
                Some((f, c)) if *f + *c == p => *c += 1,
                _ => runs.push((p, 1)),
            }
        }
        done += n;
    }
    Ok(runs)
}

/// Drop the pages for which `is_zero(page_index)` holds, splitting runs around them.
pub fn drop_zero_pages(runs: &[(u64, u64)], _page_size: u64, mut is_zero: impl FnMut(u64) -> bool) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(first, count) in runs {
        for p in first..first + count {
            if is_zero(p) {
                continue;
            }
            match out.last_mut() {
                Some((f, c)) if *f + *c == p => *c += 1,
                _ => out.push((p, 1)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_split_runs() {
        let runs = [(0, 4), (10, 2)];
        let kept = drop_zero_pages(&runs, 4096, |p| p == 1 || p == 11);
        assert_eq!(kept, vec![(0, 1), (2, 2), (10, 1)]);
    }

    #[test]
    fn touched_pages_are_present_untouched_are_not() {
        let page = 4096u64;
        let mut v = vec![0u8; 64 * page as usize];
        let base = (v.as_ptr() as u64).div_ceil(page) * page;
        let off = (base - v.as_ptr() as u64) as usize;
        v[off + 3 * page as usize] = 1;
        let f = File::open("/proc/self/pagemap").unwrap();
        let runs = present_runs(&f, base, base + 8 * page, page).unwrap();
        assert!(runs.iter().any(|&(s, c)| s <= 3 && 3 < s + c), "{runs:?}");
    }
}
