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
    let h = write_raw(&mut out, &mut img, &mut read_mem, std::path::Path::new("mem")).unwrap();
    assert_eq!(out.len() as u64, h.file_len());
    assert_eq!(h.data_off % FILE_ALIGN, 0);
}
