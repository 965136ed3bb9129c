//! dmtcp_inspect on images made with the engine's writer: text, JSON, verification, and one-line
//! errors with DMTCP's exit code for missing and damaged files.

use dmtcp_engine::image::writer::{write_image_file, AreaToWrite, Compression, ImageContents};
use dmtcp_engine::meta::{FdEntry, FdKind, ProcessMeta};
use dmtcp_layout::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PAGE: u64 = 4096;
const BASE: u64 = 0x5555_0000_0000;

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dmtcp-inspect-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A two-thread image with a heap, a file mapping and three fds; memory is byte (addr / PAGE).
fn make_image(path: &Path, compression: Compression) {
    let mut comm = [0u8; 16];
    comm[..7].copy_from_slice(b"counter");
    let threads = [
        ThreadRecord { tid: 4242, flags: THREAD_IS_MAIN, resume_sp: 0x7ffd_0000, tls: 0x7f00_1234_5000, comm, ..Default::default() },
        ThreadRecord { tid: 4243, flags: THREAD_IS_CKPT, resume_sp: 0x7ffc_0000, tls: 0x7f00_1234_9000, ..Default::default() },
    ];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let mut areas = vec![
        AreaToWrite {
            record: AreaRecord { start: BASE, end: BASE + 4 * PAGE, prot: PROT_READ | PROT_EXEC, file_offset: 0, ..Default::default() },
            path: "/usr/bin/my counter".into(),
            runs: vec![Run { first_page: 0, num_pages: 4 }],
        },
        AreaToWrite {
            record: AreaRecord {
                start: BASE + 16 * PAGE,
                end: BASE + 48 * PAGE,
                prot: PROT_READ | PROT_WRITE,
                flags: AREA_HEAP,
                ..Default::default()
            },
            path: "[heap]".into(),
            runs: vec![Run { first_page: 1, num_pages: 2 }, Run { first_page: 10, num_pages: 1 }],
        },
        AreaToWrite {
            record: AreaRecord {
                start: BASE + 64 * PAGE,
                end: BASE + 65 * PAGE,
                prot: PROT_READ | PROT_WRITE,
                kind: AreaKind::SharedFile as u32,
                ..Default::default()
            },
            path: "/dev/shm/data".into(),
            runs: vec![],
        },
    ];
    let fd = |fd, kind, path: &str, flags, offset| FdEntry::basic(fd, kind, path.into(), flags, offset, false);
    let meta = ProcessMeta {
        unique_pid: "abc-4242-1700000000".into(),
        prog: "counter".into(),
        argv: vec!["./counter".into(), "5".into()],
        pid: 4242,
        ppid: 1,
        hostname: "node17".into(),
        cwd: "/home/user/run".into(),
        exe: "/usr/bin/my counter".into(),
        ckpt_time: 1_700_000_000,
        generation: 3,
        kernel_release: "6.1.0-test".into(),
        libc_version: "2.36".into(),
        fds: vec![
            fd(0, FdKind::CharDevice, "/dev/null", 0, 0),
            fd(1, FdKind::File, "/home/user/run/out.txt", libc::O_WRONLY | libc::O_APPEND, 1234),
            fd(5, FdKind::Pipe, "pipe:[777]", 0, 0),
        ],
        coord_fd: 821,
        ..Default::default()
    };
    let mut header = FileHeader::new_for(Cpu::X86_64, 64, PAGE as u32);
    header.kernel_release[..10].copy_from_slice(b"6.1.0-test");
    let mut img = ImageContents { header, threads: &threads, sigactions: &sigs, areas: &mut areas, meta: &meta };
    let mut read_mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
        for (i, page) in buf.chunks_mut(PAGE as usize).enumerate() {
            page.fill(((addr / PAGE + i as u64) % 251) as u8 + 1);
        }
        Ok(())
    };
    write_image_file(path, compression, &mut img, &mut read_mem).unwrap();
}

fn inspect(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmtcp_inspect")).args(args).env_remove("DMTCP_FAIL_RC").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn text_summary_of_raw_and_gzip_images() {
    let d = scratch("text");
    for (name, compression, label) in [("raw.dmtcp", Compression::None, "uncompressed"), ("gz.dmtcp", Compression::DEFAULT_GZIP, "gzip")] {
        let p = d.join(name);
        make_image(&p, compression);
        let out = inspect(&[p.as_os_str()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let s = text(&out.stdout);
        for want in [
            label,
            "format 1.",
            "cpu x86_64 (64-bit), page size 4096, kernel 6.1.0-test, libc 2.36",
            "program counter (pid 4242, ppid 1, unique pid abc-4242-1700000000) on node17",
            "cwd /home/user/run",
            "generation 3 at 2023-11-14 22:13:20 UTC",
            "threads (2)",
            "4242",
            "main",
            "counter",
            "checkpoint",
            "tls 0x7f0012345000",
            "memory areas (3, 28672 bytes stored)",
            "555500010000-555500030000",
            "r-xp",
            "/usr/bin/my counter",
            "rw-s",
            "shared-file",
            "[heap]",
            "(3 pages)",
            "file descriptors (3)",
            "/home/user/run/out.txt",
            "offset 1234",
            "pipe:[777]",
        ] {
            assert!(s.contains(want), "{name}: {want:?} missing from:\n{s}");
        }
    }
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn json_is_one_object_per_image() {
    let d = scratch("json");
    let raw = d.join("raw.dmtcp");
    let gz = d.join("gz.dmtcp");
    make_image(&raw, Compression::None);
    make_image(&gz, Compression::DEFAULT_GZIP);
    let out = inspect(&["--json".as_ref(), "--verify".as_ref(), raw.as_os_str(), gz.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let docs: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(docs.len(), 2);
    for (v, compressed) in docs.iter().zip([false, true]) {
        assert_eq!(v["compressed"], compressed);
        assert_eq!(v["cpu"], "x86_64");
        assert_eq!(v["word_bits"], 64);
        assert_eq!(v["page_size"], 4096);
        assert_eq!(v["program"], "counter");
        assert_eq!(v["pid"], 4242);
        assert_eq!(v["unique_pid"], "abc-4242-1700000000");
        assert_eq!(v["hostname"], "node17");
        assert_eq!(v["generation"], 3);
        assert_eq!(v["kernel"], "6.1.0-test");
        assert_eq!(v["threads"][0]["role"], "main");
        assert_eq!(v["threads"][1]["role"], "checkpoint");
        assert_eq!(v["threads"][0]["name"], "counter");
        let areas = v["areas"].as_array().unwrap();
        assert_eq!(areas.len(), 3);
        assert_eq!(areas[1]["path"], "[heap]");
        assert_eq!(areas[1]["perms"], "rw-p");
        assert_eq!(areas[1]["stored_pages"], 3);
        assert_eq!(areas[1]["size"], 32 * PAGE);
        assert_eq!(areas[1]["start"], format!("{:#x}", BASE + 16 * PAGE));
        assert_eq!(areas[1]["end"], format!("{:#x}", BASE + 48 * PAGE));
        assert_eq!(areas[0]["start"], format!("{BASE:#x}"));
        assert_eq!(areas[0]["path"], "/usr/bin/my counter");
        assert_eq!(areas[2]["kind"], "shared-file");
        assert_eq!(areas[2]["stored_bytes"], 0);
        assert_eq!(v["fds"][1]["offset"], 1234);
        assert_eq!(v["fds"][1]["kind"], "File");
        assert_eq!(v["file_size"], std::fs::metadata(if compressed { &gz } else { &raw }).unwrap().len());
    }
    std::fs::remove_dir_all(d).unwrap();
}

/// Exit code 99 and exactly one line on stderr, naming the file.
fn assert_one_line_failure(out: &Output, file: &Path, reason: &str) {
    assert_eq!(out.status.code(), Some(99), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    let want = format!("dmtcp_inspect: {}: ", file.display());
    assert!(err.starts_with(&want), "{err}");
    assert!(err.contains(reason), "{reason:?} missing from {err}");
}

#[test]
fn missing_truncated_and_foreign_files_fail_with_one_line() {
    let d = scratch("errors");
    let missing = d.join("nope.dmtcp");
    assert_one_line_failure(&inspect(&[missing.as_os_str()]), &missing, "no such file");

    let good = d.join("good.dmtcp");
    make_image(&good, Compression::None);
    let bytes = std::fs::read(&good).unwrap();
    let cut = d.join("cut.dmtcp");
    for len in [10, HEADER_SIZE + 100, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert_one_line_failure(&inspect(&[cut.as_os_str()]), &cut, "truncated");
    }

    let gz = d.join("gz.dmtcp");
    make_image(&gz, Compression::DEFAULT_GZIP);
    let gz_bytes = std::fs::read(&gz).unwrap();
    std::fs::write(&cut, &gz_bytes[..gz_bytes.len() - 20]).unwrap();
    assert_one_line_failure(&inspect(&["--verify".as_ref(), cut.as_os_str()]), &cut, "truncated");

    let foreign = d.join("script.sh");
    std::fs::write(&foreign, "#!/bin/sh\nexit 0\n").unwrap();
    assert_one_line_failure(&inspect(&[foreign.as_os_str()]), &foreign, "not a dmtcp-rs checkpoint image");

    let mut flipped = bytes.clone();
    flipped[HEADER_SIZE + 5] ^= 0x10;
    let bad = d.join("bad.dmtcp");
    std::fs::write(&bad, &flipped).unwrap();
    assert_one_line_failure(&inspect(&[bad.as_os_str()]), &bad, "corrupted");
    std::fs::remove_dir_all(d).unwrap();
}

#[test]
fn good_images_are_still_shown_when_another_fails() {
    let d = scratch("mixed");
    let good = d.join("good.dmtcp");
    make_image(&good, Compression::None);
    let missing = d.join("missing.dmtcp");
    let out = inspect(&[missing.as_os_str(), good.as_os_str()]);
    assert_one_line_failure(&out, &missing, "no such file");
    assert!(text(&out.stdout).contains("program counter"));

    let out = Command::new(env!("CARGO_BIN_EXE_dmtcp_inspect")).arg(&missing).env("DMTCP_FAIL_RC", "7").output().unwrap();
    assert_eq!(out.status.code(), Some(7));
    let out = inspect(&[]);
    assert_eq!(out.status.code(), Some(99));
    std::fs::remove_dir_all(d).unwrap();
}
