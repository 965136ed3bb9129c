//! Writer/reader round trips on synthetic memory, and every way a file can be damaged.

use super::reader::{open_raw_for_restart, read_image_info, verify_image};
use super::writer::{write_image_file, write_raw, AreaToWrite, Compression, ImageContents};
use super::ImageError;
use crate::meta::ProcessMeta;
use dmtcp_layout::*;
use std::io::Read;
use std::path::PathBuf;

const PAGE: u64 = 4096;
const BASE: u64 = 0x10_0000;

/// Fake process memory: 8 pages at BASE, page i filled with byte i (page 3 all zero).
fn memory() -> Vec<u8> {
    let mut m = vec![0u8; 8 * PAGE as usize];
    for (i, p) in m.chunks_mut(PAGE as usize).enumerate() {
        if i != 3 {
            p.fill(i as u8 + 1);
        }
    }
    m
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dmtcp-image-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(path: &std::path::Path, compression: Compression, fail_at: Option<u64>) -> Result<FileHeader, ImageError> {
    let mem = memory();
    let threads = [ThreadRecord { tid: 7, flags: THREAD_IS_MAIN, resume_sp: 0x1234, ..Default::default() }];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let mut areas = vec![
        AreaToWrite {
            record: AreaRecord { start: BASE, end: BASE + 4 * PAGE, prot: PROT_READ | PROT_WRITE, ..Default::default() },
            path: "[heap]".into(),
            runs: vec![Run { first_page: 0, num_pages: 3 }],
        },
        AreaToWrite {
            record: AreaRecord { start: BASE + 4 * PAGE, end: BASE + 8 * PAGE, prot: PROT_READ, ..Default::default() },
            path: "/lib/libx.so".into(),
            runs: vec![Run { first_page: 1, num_pages: 2 }],
        },
    ];
    let meta = ProcessMeta { prog: "prog".into(), pid: 7, ..Default::default() };
    let mut header = FileHeader::new_for(Cpu::X86_64, 64, PAGE as u32);
    header.restart_info_addr = 0x5000;
    let mut img = ImageContents { header, threads: &threads, sigactions: &sigs, areas: &mut areas, meta: &meta };
    let mut read_mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
        if fail_at.is_some_and(|f| addr >= f) {
            return Err(std::io::Error::other("simulated failure"));
        }
        let off = (addr - BASE) as usize;
        buf.copy_from_slice(&mem[off..off + buf.len()]);
        Ok(())
    };
    write_image_file(path, compression, &mut img, &mut read_mem)
}

#[test]
fn raw_round_trip_restores_exact_pages() {
    let d = scratch("raw");
    let p = d.join("a.dmtcp");
    let h = write(&p, Compression::None, None).unwrap();
    let info = verify_image(&p).unwrap();
    assert!(!info.compressed);
    assert_eq!(info.header, h);
    assert_eq!(info.file_len, h.file_len());
    assert_eq!(info.meta.prog, "prog");
    assert_eq!(info.threads[0].tid, 7);
    assert_eq!(info.area_path(&info.areas[1]), "/lib/libx.so");
    assert_eq!(info.areas[0].data_off % PAGE, 0);
    // Page data sits at data_off: area 1's run starts with page 5 of memory (byte 6).
    let raw = std::fs::read(&p).unwrap();
    let a = &info.areas[1];
    assert!(raw[a.data_off as usize..(a.data_off + PAGE) as usize].iter().all(|&b| b == 6));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn gzip_round_trip_and_decompressed_copy_for_restart() {
    let d = scratch("gz");
    let p = d.join("a.dmtcp");
    write(&p, Compression::Gzip { level: 1 }, None).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes[..2], GZIP_MAGIC);
    let info = verify_image(&p).unwrap();
    assert!(info.compressed);
    let (mut raw, info2) = open_raw_for_restart(&p, &d).unwrap();
    let mut all = Vec::new();
    raw.read_to_end(&mut all).unwrap();
    assert_eq!(all.len() as u64, info2.header.file_len());
    assert_eq!(all[..8], MAGIC);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn every_truncation_is_an_error() {
    let d = scratch("trunc");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    let full = std::fs::read(&p).unwrap();
    let cut = d.join("cut.dmtcp");
    for len in [0, 1, 7, 100, HEADER_SIZE - 1, HEADER_SIZE + 10, full.len() / 2, full.len() - 4, full.len() - 1] {
        std::fs::write(&cut, &full[..len]).unwrap();
        assert!(verify_image(&cut).is_err(), "truncated to {len} bytes was accepted");
    }
    let mut longer = full.clone();
    longer.push(0);
    std::fs::write(&cut, &longer).unwrap();
    assert!(verify_image(&cut).is_err(), "trailing garbage was accepted");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn every_flipped_byte_is_detected_and_nothing_panics() {
    let d = scratch("flip");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    let full = std::fs::read(&p).unwrap();
    let info = read_image_info(&p).unwrap();
    let bad = d.join("bad.dmtcp");
    // Every byte that carries meaning: header, tables, metadata, each page of data, trailer.
    let mut offsets: Vec<usize> = (0..(info.header.meta_off + info.header.meta_len) as usize).step_by(7).collect();
    offsets.extend(info.areas.iter().map(|a| a.data_off as usize + 123));
    offsets.extend((info.header.trailer_off() as usize..full.len()).step_by(3));
    for off in offsets {
        let mut b = full.clone();
        b[off] ^= 0x5a;
        std::fs::write(&bad, &b).unwrap();
        assert!(verify_image(&bad).is_err(), "flip at {off} was accepted");
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn failed_write_keeps_the_previous_image() {
    let d = scratch("atomic");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    let before = std::fs::read(&p).unwrap();
    let err = write(&p, Compression::Gzip { level: 1 }, Some(BASE + 4 * PAGE)).unwrap_err();
    assert!(err.to_string().contains("simulated failure"), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), before);
    assert!(!d.join("a.dmtcp.temp").exists());
    verify_image(&p).unwrap();
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn missing_and_foreign_files_have_distinct_errors() {
    let d = scratch("missing");
    assert!(matches!(read_image_info(&d.join("nope")), Err(ImageError::NotFound { .. })));
    let junk = d.join("junk");
    std::fs::write(&junk, b"#!/bin/sh\necho not an image\n").unwrap();
    let e = read_image_info(&junk).unwrap_err();
    assert!(e.to_string().contains("not a dmtcp-rs checkpoint image"), "{e}");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn write_raw_to_memory_matches_planned_size() {
    let mem = memory();
    let threads = [ThreadRecord { tid: 1, resume_sp: 8, ..Default::default() }];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let mut areas = vec![AreaToWrite {
        record: AreaRecord { start: BASE, end: BASE + 8 * PAGE, prot: PROT_READ, ..Default::default() },
        path: String::new(),
        runs: vec![Run { first_page: 0, num_pages: 8 }],
    }];
    let meta = ProcessMeta::default();
    let mut img = ImageContents {
        header: FileHeader::new_for(Cpu::X86_64, 64, PAGE as u32),
        threads: &threads,
        sigactions: &sigs,
        areas: &mut areas,
        meta: &meta,
    };
    let mut out = Vec::new();
    let mut read_mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
        let off = (addr - BASE) as usize;
        buf.copy_from_slice(&mem[off..off + buf.len()]);
        Ok(())
    };
    let h = write_raw(&mut out, &mut img, &mut read_mem).unwrap();
    assert_eq!(out.len() as u64, h.file_len());
    assert_eq!(h.data_off % FILE_ALIGN, 0);
}

/// Deterministic pseudo-random numbers (xorshift64*), so failures reproduce.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Every reader entry point on `bytes`: must return, never panic; returns whether the full
/// verification and the restart path accepted it (they must agree).
fn accepted(d: &std::path::Path, bytes: &[u8]) -> bool {
    let p = d.join("probe.dmtcp");
    std::fs::write(&p, bytes).unwrap();
    let _ = read_image_info(&p);
    let verified = verify_image(&p).is_ok();
    let restart = open_raw_for_restart(&p, d).is_ok();
    assert_eq!(verified, restart, "verify_image and open_raw_for_restart disagree");
    verified
}

#[test]
fn random_damage_to_raw_and_gzip_images_is_rejected_without_panics() {
    let d = scratch("random");
    for (name, compression) in [("raw", Compression::None), ("gz", Compression::DEFAULT_GZIP)] {
        let p = d.join(format!("{name}.dmtcp"));
        write(&p, compression, None).unwrap();
        let full = std::fs::read(&p).unwrap();
        assert!(accepted(&d, &full));
        let mut next = rng(0x5eed ^ full.len() as u64);
        for _ in 0..300 {
            let mut b = full.clone();
            let flips = 1 + next() % 3;
            for _ in 0..flips {
                let off = (next() % b.len() as u64) as usize;
                b[off] ^= 1 << (next() % 8);
            }
            // A raw image has zero padding whose damage is harmless but caught by no checksum
            // (the loader never reads it); every other byte is covered.
            if accepted(&d, &b) {
                let diff: Vec<usize> = (0..b.len()).filter(|&i| b[i] != full[i]).collect();
                // Harmless damage: gzip's MTIME/XFL/OS header fields, or a deflate code that
                // still decodes to the same bytes (a back-reference into a run of equal bytes).
                if name == "gz" {
                    let mut same = Vec::new();
                    flate2::read::MultiGzDecoder::new(&b[..]).read_to_end(&mut same).unwrap();
                    let mut orig = Vec::new();
                    flate2::read::MultiGzDecoder::new(&full[..]).read_to_end(&mut orig).unwrap();
                    assert!(same == orig, "damaged gzip image accepted: {diff:?}");
                    continue;
                }
                let info = read_image_info(&p).unwrap();
                let in_padding = |i: usize| {
                    let i = i as u64;
                    (info.header.meta_off + info.header.meta_len..info.header.data_off).contains(&i)
                };
                assert!(diff.iter().all(|&i| in_padding(i)), "damage at {diff:?} accepted");
            }
        }
        for len in (0..full.len()).step_by(97).chain([full.len() - 1]) {
            assert!(!accepted(&d, &full[..len]), "{name} image cut to {len} bytes accepted");
        }
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn each_kind_of_damage_has_its_own_error() {
    let d = scratch("kinds");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    let full = std::fs::read(&p).unwrap();
    let q = d.join("b.dmtcp");

    std::fs::write(&q, &full[..full.len() - 100]).unwrap();
    let e = read_image_info(&q).unwrap_err();
    assert!(matches!(e, ImageError::Truncated { .. }), "{e:?}");
    assert!(e.to_string().starts_with(&q.display().to_string()), "{e}");

    std::fs::write(&q, &full[..3]).unwrap();
    assert!(matches!(read_image_info(&q), Err(ImageError::Truncated { .. })));

    let mut h = FileHeader::decode(&full).unwrap();
    h.minor = FORMAT_MINOR + 1;
    let mut b = full.clone();
    let hb: &mut [u8; HEADER_SIZE] = (&mut b[..HEADER_SIZE]).try_into().unwrap();
    h.encode(hb);
    std::fs::write(&q, &b).unwrap();
    let e = read_image_info(&q).unwrap_err();
    assert!(matches!(e, ImageError::UnsupportedVersion { major: FORMAT_MAJOR, .. }), "{e:?}");

    let mut b = full.clone();
    b[HEADER_SIZE + 3] ^= 1;
    std::fs::write(&q, &b).unwrap();
    let e = read_image_info(&q).unwrap_err();
    assert!(matches!(e, ImageError::Corrupted { .. }), "{e:?}");
    assert!(e.to_string().contains("checksum"), "{e}");

    assert!(matches!(read_image_info(&d), Err(ImageError::NotAnImage { .. })));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn restart_copy_holds_the_exact_pages() {
    let d = scratch("restart");
    let mem = memory();
    for compression in [Compression::None, Compression::Gzip { level: 6 }] {
        let p = d.join("a.dmtcp");
        write(&p, compression, None).unwrap();
        let (mut f, info) = open_raw_for_restart(&p, &d).unwrap();
        let mut raw = Vec::new();
        f.read_to_end(&mut raw).unwrap();
        assert_eq!(raw.len() as u64, info.header.file_len());
        for a in &info.areas {
            let mut off = a.data_off as usize;
            for r in info.area_runs(a) {
                let n = (r.num_pages * PAGE) as usize;
                let addr = (a.start - BASE + r.first_page * PAGE) as usize;
                assert_eq!(raw[off..off + n], mem[addr..addr + n]);
                off += n;
            }
        }
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn concatenated_gzip_members_read_as_one_image() {
    use std::io::Write;
    let d = scratch("members");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    let raw = std::fs::read(&p).unwrap();
    // What a parallel compressor would produce: independent members, one per slice.
    let mut out = Vec::new();
    for part in raw.chunks(5000) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).unwrap();
        out.extend(gz.finish().unwrap());
    }
    std::fs::write(&p, &out).unwrap();
    let info = verify_image(&p).unwrap();
    assert!(info.compressed);
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn writer_refuses_contents_the_reader_would_reject() {
    let d = scratch("invalid");
    let p = d.join("a.dmtcp");
    let threads = [ThreadRecord { tid: 1, resume_sp: 8, ..Default::default() }];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let meta = ProcessMeta::default();
    let area = |start: u64, pages: u64, runs: Vec<Run>| AreaToWrite {
        record: AreaRecord { start, end: start + pages * PAGE, prot: PROT_READ, ..Default::default() },
        path: String::new(),
        runs,
    };
    let cases: Vec<(&[ThreadRecord], Vec<AreaToWrite>)> = vec![
        (&[], vec![area(BASE, 1, vec![])]),
        (&threads, vec![area(BASE + PAGE, 1, vec![]), area(BASE, 1, vec![])]),
        (&threads, vec![area(BASE, 2, vec![Run { first_page: 1, num_pages: 2 }])]),
        (&threads, vec![area(BASE, 4, vec![Run { first_page: 2, num_pages: 1 }, Run { first_page: 1, num_pages: 1 }])]),
        (&threads, vec![area(BASE + 1, 1, vec![])]),
    ];
    for (threads, mut areas) in cases {
        let mut img =
            ImageContents { header: FileHeader::new_for(Cpu::X86_64, 64, PAGE as u32), threads, sigactions: &sigs, areas: &mut areas, meta: &meta };
        let e = write_image_file(&p, Compression::None, &mut img, &mut |_, _| Ok(())).unwrap_err();
        assert!(matches!(e, ImageError::InvalidContents { .. }), "{e:?}");
        assert!(!p.exists() && !d.join("a.dmtcp.temp").exists());
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn image_files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let d = scratch("mode");
    let p = d.join("a.dmtcp");
    write(&p, Compression::None, None).unwrap();
    assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::remove_dir_all(d).unwrap();
}

/// The byte offsets docs/image-format.md documents.
#[test]
fn documented_offsets_hold() {
    let d = scratch("offsets");
    let p = d.join("a.dmtcp");
    let h = write(&p, Compression::None, None).unwrap();
    let b = std::fs::read(&p).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(b[..8], MAGIC);
    assert_eq!(u32_at(16), h.page_size);
    assert_eq!(u32_at(20), h.num_threads);
    assert_eq!(u64_at(36), HEADER_SIZE as u64);
    assert_eq!(u32_at(84), h.tables_crc);
    assert_eq!(u64_at(88), h.meta_off);
    assert_eq!(u32_at(104), h.meta_crc);
    assert_eq!(u64_at(108), h.data_off);
    assert_eq!(u64_at(124), h.restart_info_addr);
    assert_eq!(u32_at(4092), crc32(&b[..4092]));
    assert_eq!(h.data_off % FILE_ALIGN, 0);
    let info = read_image_info(&p).unwrap();
    let t = h.threads_off as usize;
    assert_eq!(u32_at(t), info.threads[0].tid);
    assert_eq!(u64_at(t + 8), info.threads[0].resume_sp);
    let a = h.areas_off as usize + AREA_SIZE;
    assert_eq!(u64_at(a + 44), info.areas[1].data_off);
    assert_eq!(u64_at(a + 60), info.areas[1].runs_index);
    assert_eq!(info.areas[0].data_off, h.data_off);
    let trailer = h.trailer_off() as usize;
    let mem = memory();
    let run = &info.runs[info.areas[0].runs_index as usize];
    assert_eq!(u32_at(trailer), crc32(&mem[(run.first_page * PAGE) as usize..((run.first_page + run.num_pages) * PAGE) as usize]));
    std::fs::remove_dir_all(d).unwrap();
}

/// An image written by format 1.0 (gzip, from `write` above). Readers must keep reading it:
/// regenerate only with a format change, and then keep the old file next to the new one.
/// `DMTCP_BLESS_GOLDEN=1 cargo test -p dmtcp-engine golden` rewrites it.
const GOLDEN_V1_0: &[u8] = include_bytes!("golden/v1.0-gzip.image");

#[test]
fn golden_v1_0_image_still_reads() {
    let d = scratch("golden");
    let p = d.join("golden.dmtcp");
    if std::env::var_os("DMTCP_BLESS_GOLDEN").is_some() {
        write(&p, Compression::Gzip { level: 9 }, None).unwrap();
        std::fs::copy(&p, concat!(env!("CARGO_MANIFEST_DIR"), "/src/image/golden/v1.0-gzip.image")).unwrap();
    }
    std::fs::write(&p, GOLDEN_V1_0).unwrap();
    let info = verify_image(&p).unwrap();
    assert_eq!((info.header.major, info.header.minor), (1, 0));
    assert_eq!(info.meta.prog, "prog");
    assert_eq!(info.threads[0].tid, 7);
    assert_eq!(info.area_path(&info.areas[0]), "[heap]");
    let (mut raw, _) = open_raw_for_restart(&p, &d).unwrap();
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).unwrap();
    let a = &info.areas[1];
    assert!(bytes[a.data_off as usize..(a.data_off + 2 * PAGE) as usize]
        .chunks(PAGE as usize)
        .zip([6u8, 7])
        .all(|(pg, v)| pg.iter().all(|&b| b == v)));
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_full_disk_is_reported_as_such() {
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full in this sandbox
    };
    let mem = memory();
    let threads = [ThreadRecord { tid: 1, resume_sp: 8, ..Default::default() }];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let mut areas = vec![AreaToWrite {
        record: AreaRecord { start: BASE, end: BASE + 8 * PAGE, prot: PROT_READ, ..Default::default() },
        path: String::new(),
        runs: vec![Run { first_page: 0, num_pages: 8 }],
    }];
    let meta = ProcessMeta::default();
    let mut img = ImageContents {
        header: FileHeader::new_for(Cpu::X86_64, 64, PAGE as u32),
        threads: &threads,
        sigactions: &sigs,
        areas: &mut areas,
        meta: &meta,
    };
    let mut read_mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
        let off = (addr - BASE) as usize;
        buf.copy_from_slice(&mem[off..off + buf.len()]);
        Ok(())
    };
    let e = super::writer::write_raw_named(full, &mut img, &mut read_mem, std::path::Path::new("/ckpt/a.dmtcp")).unwrap_err();
    assert!(matches!(e, ImageError::DiskFull { .. }), "{e:?}");
    assert_eq!(e.to_string(), "/ckpt/a.dmtcp: no space left on the device; the previous image is unchanged");
}
