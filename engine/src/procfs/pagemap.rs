//! /proc/self/pagemap: which pages of a range hold data (present in RAM or swapped out), and
//! which of those are all zero. Untouched pages are never read; zero pages are not stored.
//!
//! Runs in the checkpoint thread while every other thread is stopped: allocation is fine (the
//! preload library's own allocator), locks are not; one pread per 512 pages.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

const PM_PRESENT: u64 = 1 << 63;
const PM_SWAPPED: u64 = 1 << 62;
/// Entries read per pread: 2 MiB of address space per 4 KiB read with 4 KiB pages.
const BATCH: u64 = 512;

/// Append page `p` to sorted runs, extending the last run when it is adjacent.
fn push_page(runs: &mut Vec<(u64, u64)>, p: u64) {
    match runs.last_mut() {
        Some((f, c)) if *f + *c == p => *c += 1,
        _ => runs.push((p, 1)),
    }
}

/// Runs `(first_page, num_pages)` of pages with data in [start, end), counted from `start`.
/// `start` and `end` are page-aligned. Pages the kernel reports nothing for (beyond the user
/// address space, e.g. [vsyscall]) count as empty.
pub fn present_runs(pagemap: &File, start: u64, end: u64, page_size: u64) -> io::Result<Vec<(u64, u64)>> {
    if page_size == 0 || end < start {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad range {start:#x}-{end:#x}")));
    }
    let pages = (end - start) / page_size;
    let first_index = start / page_size;
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let mut buf = vec![0u8; (BATCH * 8) as usize];
    let mut done = 0;
    while done < pages {
        let want = (BATCH.min(pages - done) * 8) as usize;
        let mut got = 0;
        while got < want {
            match pagemap.read_at(&mut buf[got..want], (first_index + done) * 8 + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for (i, e) in buf[..got - got % 8].chunks_exact(8).enumerate() {
            let entry = u64::from_le_bytes(e.try_into().unwrap_or([0; 8]));
            if entry & (PM_PRESENT | PM_SWAPPED) != 0 {
                push_page(&mut runs, done + i as u64);
            }
        }
        if got < want {
            break; // end of what the kernel maps: no data beyond
        }
        done += (want / 8) as u64;
    }
    Ok(runs)
}

/// Whether `page` is all zero; word-at-a-time, since it runs on every present page.
pub fn is_zero_page(page: &[u8]) -> bool {
    // SAFETY: u8 to u128 reinterpretation: every bit pattern is a valid u128; align_to picks the
    // aligned middle.
    let (head, words, tail) = unsafe { page.align_to::<u128>() };
    head.iter().all(|&b| b == 0) && tail.iter().all(|&b| b == 0) && words.chunks(8).all(|c| c.iter().fold(0, |acc, &w| acc | w) == 0)
}

/// Drop the pages for which `is_zero(page_index)` holds, splitting runs around them.
pub fn drop_zero_pages(runs: &[(u64, u64)], _page_size: u64, mut is_zero: impl FnMut(u64) -> bool) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(first, count) in runs {
        for p in first..first + count {
            if !is_zero(p) {
                push_page(&mut out, p);
            }
        }
    }
    out
}

/// [`drop_zero_pages`] through a memory reader: `read_page(page_index, buf)` fills `buf` (one
/// page) with that page of the area. For callers that cannot simply point at the memory.
pub fn drop_zero_pages_read(
    runs: &[(u64, u64)],
    page_size: u64,
    mut read_page: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<Vec<(u64, u64)>> {
    let mut buf = vec![0u8; page_size as usize];
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(first, count) in runs {
        for p in first..first + count {
            read_page(p, &mut buf)?;
            if !is_zero_page(&buf) {
                push_page(&mut out, p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_pages_split_runs() {
        let runs = [(0, 4), (10, 2)];
        let kept = drop_zero_pages(&runs, 4096, |p| p == 1 || p == 11);
        assert_eq!(kept, vec![(0, 1), (2, 2), (10, 1)]);
        assert_eq!(drop_zero_pages(&runs, 4096, |_| true), vec![]);
        assert_eq!(drop_zero_pages(&[(3, 2), (5, 1)], 4096, |_| false), vec![(3, 3)]);
    }

    #[test]
    fn zero_pages_found_through_a_reader() {
        let page = 4096usize;
        let mut mem = vec![0u8; 6 * page];
        mem[page * 2 + 17] = 1; // page 2
        mem[page * 5 - 1] = 9; // page 4, last byte
        let kept = drop_zero_pages_read(&[(0, 6)], page as u64, |p, buf| {
            buf.copy_from_slice(&mem[p as usize * page..(p as usize + 1) * page]);
            Ok(())
        })
        .unwrap();
        assert_eq!(kept, vec![(2, 1), (4, 1)]);
    }

    #[test]
    fn is_zero_page_sees_every_byte_at_any_alignment() {
        let mut v = vec![0u8; 4096 + 64];
        for shift in [0, 1, 7, 15] {
            let page = &mut v[shift..shift + 4096];
            assert!(is_zero_page(page));
            for i in [0, 1, 15, 16, 2047, 4080, 4095] {
                page[i] = 0x80;
                assert!(!is_zero_page(page), "byte {i} at shift {shift}");
                page[i] = 0;
            }
        }
    }

    fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
    }

    #[test]
    fn touched_pages_are_present_untouched_are_not() {
        let page = page_size();
        // A fresh anonymous mapping: no page is present until written.
        // SAFETY: a private anonymous mapping unmapped at the end of the test.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                1100 * page as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // A transparent huge page would make 512 pages present at the first touch.
        // SAFETY: advice on the mapping above.
        unsafe { libc::madvise(base, 1100 * page as usize, libc::MADV_NOHUGEPAGE) };
        let touch = [3u64, 4, 600, 1099];
        for p in touch {
            // SAFETY: inside the mapping above.
            unsafe { *(base as *mut u8).add((p * page) as usize) = 1 };
        }
        let f = File::open("/proc/self/pagemap").unwrap();
        let start = base as u64;
        let runs = present_runs(&f, start, start + 1100 * page, page).unwrap();
        assert_eq!(runs, vec![(3, 2), (600, 1), (1099, 1)]);
        assert_eq!(present_runs(&f, start, start, page).unwrap(), vec![]);
        assert!(present_runs(&f, start + page, start, page).is_err());
        // SAFETY: unmapping the mapping made above.
        unsafe { libc::munmap(base, 1100 * page as usize) };
    }

    #[test]
    fn addresses_beyond_user_space_have_no_pages() {
        let f = File::open("/proc/self/pagemap").unwrap();
        let page = page_size();
        // Above every process's user space, whatever its word size: the kernel returns nothing.
        let top = 0xffff_ffff_ff60_0000u64;
        assert_eq!(present_runs(&f, top, top + page, page).unwrap(), vec![]);
    }
}
