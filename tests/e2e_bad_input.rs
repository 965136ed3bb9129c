//! Bad input never crashes and never leaves a process behind: a missing, truncated, corrupted or
//! foreign-CPU image, an unknown flag, a program that does not exist, or an unreachable
//! coordinator with --join-coordinator each give exactly one line on stderr and exit code 99 (or
//! DMTCP_FAIL_RC). A checkpoint that cannot be written leaves the previous image intact and the
//! program running.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A real raw image and a real gzip image of `counter`, made once per test binary. Tests copy
/// them before changing them. The program was launched with `marker` (KEY=value) in its
/// environment: a process restored from either image, even half-way, carries it.
struct Images {
    raw: PathBuf,
    gz: PathBuf,
    marker: String,
}

/// Held while a process restored from [`Images`] may run on purpose (a restart that must
/// succeed) and while [`expect_fail`] looks for leftovers carrying the images' marker: the two
/// never overlap, so a leftover is always the failed command's.
static IMAGE_RUNS: Mutex<()> = Mutex::new(());

fn image_runs() -> MutexGuard<'static, ()> {
    IMAGE_RUNS.lock().unwrap_or_else(|e| e.into_inner())
}

fn images_once() -> &'static Images {
    static IMGS: OnceLock<Images> = OnceLock::new();
    IMGS.get_or_init(|| {
        let (key, value) = unique_marker();
        let marker = format!("{key}={value}");
        let make = |name: &'static str, opts: Vec<&'static str>| {
            let (key, value) = (key.clone(), value.clone());
            std::thread::spawn(move || {
                let t = TempDir::new(name);
                let prog = fixture("counter");
                let coord = Coord::start();
                let o = LaunchOpts { port: Some(coord.port), opts, env: vec![(key.as_str(), value)], ..Default::default() };
                let mut run = launch(&t.path, &o, &prog, &["200"]);
                run.wait_lines(3);
                coord.checkpoint();
                run.kill();
                let img = image(&t.path, "counter");
                let keep = shared_dir().join(format!("{name}.dmtcp"));
                copy(&img, &keep);
                keep
            })
        };
        let raw = make("raw-image", vec!["--no-gzip"]);
        let gz = make("gzip-image", vec![]);
        let imgs = Images { raw: raw.join().expect("raw image"), gz: gz.join().expect("gzip image"), marker };
        assert!(is_raw(&imgs.raw), "--no-gzip image is not raw");
        assert!(is_gzip(&imgs.gz), "default image is not gzip");
        imgs
    })
}

/// A copy of `src` named like an image, in `dir`, changed by `edit`.
fn edited_image(dir: &Path, src: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = fs::read(src).expect("read image");
    edit(&mut bytes);
    let p = dir.join("ckpt_counter_edited.dmtcp");
    fs::write(&p, bytes).expect("write edited image");
    p
}

/// Run `cmd` (stdout and stderr to files, a unique marker in its environment) and check: exit
/// code `rc` (not a signal), exactly one non-empty line on stderr, and no process left that
/// inherited the marker or was restored from [`Images`] (a restored process has the image's
/// environment, not dmtcp_restart's). Returns the stderr line.
fn expect_fail(t: &TempDir, what: &str, mut cmd: Command, rc: i32) -> String {
    let imgs = images_once();
    let _no_image_runs = image_runs();
    let (k, v) = unique_marker();
    let tag: String = what.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let out = t.join(format!("{tag}.out"));
    let err = t.join(format!("{tag}.err"));
    cmd.env(&k, &v)
        .current_dir(&t.path)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).expect("stdout file"))
        .stderr(fs::File::create(&err).expect("stderr file"));
    let mut p = spawn(what, &mut cmd);
    let st = p.wait();
    let stderr = fs::read_to_string(&err).unwrap_or_default();
    let stdout = fs::read_to_string(&out).unwrap_or_default();
    // Checked before the guard kills the process group: nothing may survive the failure.
    let marker = format!("{k}={v}");
    let leftovers = || {
        let mut v = processes_with_env(&marker);
        v.extend(processes_with_env(&imgs.marker));
        v
    };
    let mut left = leftovers();
    if !left.is_empty() {
        std::thread::sleep(std::time::Duration::from_secs(2));
        left = leftovers();
    }
    let left_desc: Vec<String> = left
        .iter()
        .map(|pid| {
            let cl = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!("{pid}: {}", String::from_utf8_lossy(&cl).replace('\0', " "))
        })
        .collect();
    for pid in &left {
        // SAFETY: kill(2) on a process that carries this test's unique marker.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
    drop(p);
    reap_orphans();
    assert!(left.is_empty(), "{what}: processes left behind: {left_desc:?}");
    assert_eq!(st.code(), Some(rc), "{what}: exit status {st} (want {rc})\n--- stderr ---\n{stderr}--- stdout ---\n{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() == 1 && !lines[0].trim().is_empty(), "{what}: want exactly one line on stderr, got {}:\n{stderr}", lines.len());
    eprintln!("{what}: {}", lines[0]);
    lines[0].to_string()
}

fn restart_cmd(port: u16, img: &Path) -> Command {
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(port.to_string()).arg(img);
    c
}

#[test]
fn missing_image() {
    let t = TempDir::new("missing");
    let coord = Coord::start();
    expect_fail(&t, "restart missing image", restart_cmd(coord.port, &t.join("ckpt_counter_nothere.dmtcp")), 99);
    let mut c = restart_cmd(coord.port, &t.join("ckpt_counter_nothere.dmtcp"));
    c.env("DMTCP_FAIL_RC", "42");
    expect_fail(&t, "restart missing image with DMTCP_FAIL_RC=42", c, 42);
    let mut c = dmtcp(INSPECT);
    c.arg(t.join("ckpt_counter_nothere.dmtcp"));
    expect_fail(&t, "inspect missing image", c, 99);
}

#[test]
fn truncated_images() {
    let t = TempDir::new("truncated");
    let imgs = images_once();
    let coord = Coord::start();
    for (kind, src) in [("raw", &imgs.raw), ("gzip", &imgs.gz)] {
        let img = edited_image(&t.path, src, |b| b.truncate(b.len() / 2));
        expect_fail(&t, &format!("restart truncated {kind} image"), restart_cmd(coord.port, &img), 99);
        // Cut inside the header too.
        let img = edited_image(&t.path, src, |b| b.truncate(100));
        expect_fail(&t, &format!("restart {kind} image cut at 100 bytes"), restart_cmd(coord.port, &img), 99);
    }
    let img = edited_image(&t.path, &imgs.raw, |b| b.clear());
    expect_fail(&t, "restart empty image", restart_cmd(coord.port, &img), 99);
}

#[test]
fn corrupted_images() {
    let t = TempDir::new("corrupted");
    let imgs = images_once();
    let coord = Coord::start();
    let raw = fs::read(&imgs.raw).expect("raw image");
    let h = dmtcp_layout::FileHeader::decode(&raw).expect("the raw image's header decodes");
    // A byte in the middle of the page data (covered by the per-block checksums).
    let mid_data = (h.data_off + h.data_len / 2) as usize;
    // A byte in the middle of the process metadata.
    let mid_meta = (h.meta_off + h.meta_len / 2) as usize;
    for (what, off) in [("page data", mid_data), ("metadata", mid_meta), ("header", 40usize)] {
        assert!(off < raw.len(), "{what} offset {off} beyond the image ({} bytes)", raw.len());
        let img = edited_image(&t.path, &imgs.raw, |b| b[off] ^= 0x5a);
        expect_fail(&t, &format!("restart raw image with a flipped byte in the {what}"), restart_cmd(coord.port, &img), 99);
    }
    // A flipped byte in the middle of a gzip stream.
    let img = edited_image(&t.path, &imgs.gz, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x5a;
    });
    expect_fail(&t, "restart gzip image with a flipped byte", restart_cmd(coord.port, &img), 99);
    // Not an image at all.
    let img = t.join("ckpt_counter_text.dmtcp");
    fs::write(&img, "this is not a checkpoint image\n").expect("write");
    expect_fail(&t, "restart a text file", restart_cmd(coord.port, &img), 99);
}

#[test]
fn foreign_cpu_image() {
    let t = TempDir::new("foreign-cpu");
    let imgs = images_once();
    let coord = Coord::start();
    // Another CPU than the one the tests run on: aarch64 (4), or x86_64 (1) on aarch64.
    let foreign: u16 = if cfg!(target_arch = "aarch64") { 1 } else { 4 };
    let img = edited_image(&t.path, &imgs.raw, |b| {
        // cpu: u16 LE at offset 12. Then a valid header CRC over [0, 4092).
        b[12..14].copy_from_slice(&foreign.to_le_bytes());
        let n = dmtcp_layout::HEADER_SIZE;
        let crc = dmtcp_layout::crc32(&b[..n - 4]);
        b[n - 4..n].copy_from_slice(&crc.to_le_bytes());
    });
    // The edited header is valid: only the CPU is wrong.
    let h = dmtcp_layout::FileHeader::decode(&fs::read(&img).expect("read")).expect("edited header decodes");
    assert_eq!(h.cpu, foreign);
    let line = expect_fail(&t, "restart a foreign-CPU image", restart_cmd(coord.port, &img), 99);
    let l = line.to_lowercase();
    assert!(l.contains("aarch64") || l.contains("x86_64"), "the message should name the image's CPU: {line}");
}

/// An image of another page size than this system's is refused with one line. A real image with
/// only its header's page size changed trips the layout checks first (its areas are not aligned
/// to the larger page), so the page-size rule itself is checked with an image the engine's writer
/// lays out for 16 KiB pages, for this CPU; the edited real image must fail cleanly too.
#[test]
fn other_page_size_is_refused() {
    use dmtcp_engine::image::writer::{write_image_file, AreaToWrite, Compression, ImageContents};
    use dmtcp_layout::{AreaRecord, Cpu, FileHeader, SigactionRecord, ThreadRecord, NUM_SIGNALS, PROT_READ, PROT_WRITE, THREAD_IS_MAIN};
    let t = TempDir::new("page-size");
    let imgs = images_once();
    let coord = Coord::start();
    let host = FileHeader::decode(&fs::read(&imgs.raw).expect("raw image")).expect("the raw image's header decodes");
    let page: u32 = if host.page_size == 16384 { 65536 } else { 16384 };

    let img = edited_image(&t.path, &imgs.raw, |b| {
        // page_size: u32 LE at offset 16. Then a valid header CRC over [0, 4092).
        b[16..20].copy_from_slice(&page.to_le_bytes());
        let n = dmtcp_layout::HEADER_SIZE;
        let crc = dmtcp_layout::crc32(&b[..n - 4]);
        b[n - 4..n].copy_from_slice(&crc.to_le_bytes());
    });
    assert_eq!(FileHeader::decode(&fs::read(&img).expect("read")).expect("edited header decodes").page_size, page);
    expect_fail(&t, "restart a real image with another page size in its header", restart_cmd(coord.port, &img), 99);

    let base = 0x5555_0000_0000u64;
    let cpu = Cpu::from_u16(host.cpu).expect("the host's CPU");
    let threads = [ThreadRecord { tid: 4242, flags: THREAD_IS_MAIN, resume_sp: base + page as u64, ..Default::default() }];
    let sigs = [SigactionRecord::default(); NUM_SIGNALS];
    let mut areas = vec![AreaToWrite {
        record: AreaRecord { start: base, end: base + 4 * page as u64, prot: PROT_READ | PROT_WRITE, ..Default::default() },
        path: "[heap]".into(),
        runs: vec![dmtcp_layout::Run { first_page: 0, num_pages: 1 }],
    }];
    let meta = dmtcp_engine::meta::ProcessMeta {
        unique_pid: "pagesize-4242-1".into(),
        prog: "counter".into(),
        pid: 4242,
        ppid: 1,
        hostname: dmtcp_rs::coordinator::local_hostname(),
        ..Default::default()
    };
    let mut contents = ImageContents {
        header: FileHeader::new_for(cpu, host.word_bits, page),
        threads: &threads,
        sigactions: &sigs,
        areas: &mut areas,
        meta: &meta,
    };
    let img = t.join("ckpt_counter_pagesize.dmtcp");
    write_image_file(&img, Compression::None, &mut contents, &mut |_, buf: &mut [u8]| {
        buf.fill(0x11);
        Ok(())
    })
    .expect("write a 16 KiB-page image");
    let line = expect_fail(&t, "restart an image of another page size", restart_cmd(coord.port, &img), 99);
    assert!(line.contains("page size") && line.contains(&page.to_string()), "the message should name the page sizes: {line}");
}

#[test]
fn unknown_flags() {
    let t = TempDir::new("flags");
    let imgs = images_once();
    let prog = fixture("counter");
    let port = free_port();
    let mut c = dmtcp(LAUNCH);
    c.arg("--coord-port").arg(port.to_string()).arg("--no-such-flag").arg(&prog).arg("3");
    expect_fail(&t, "dmtcp_launch --no-such-flag", c, 99);
    let mut c = dmtcp(LAUNCH);
    c.arg("--coord-port").arg(port.to_string()).arg("--no-such-flag").arg(&prog).arg("3").env("DMTCP_FAIL_RC", "42");
    expect_fail(&t, "dmtcp_launch --no-such-flag with DMTCP_FAIL_RC=42", c, 42);
    assert!(!port_in_use(port), "dmtcp_launch with a bad flag started a coordinator");
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(port.to_string()).arg("--no-such-flag").arg(&imgs.raw);
    expect_fail(&t, "dmtcp_restart --no-such-flag", c, 99);
    let mut c = dmtcp(COMMAND);
    c.arg("-p").arg(port.to_string()).arg("--no-such-flag");
    expect_fail(&t, "dmtcp_command --no-such-flag", c, 99);
    let mut c = dmtcp(COORDINATOR);
    c.args(["--port", "0", "--no-such-flag"]);
    expect_fail(&t, "dmtcp_coordinator --no-such-flag", c, 99);
    let mut c = dmtcp(INSPECT);
    c.arg("--no-such-flag").arg(&imgs.raw);
    expect_fail(&t, "dmtcp_inspect --no-such-flag", c, 99);
}

#[test]
fn nonexistent_program() {
    let t = TempDir::new("noprog");
    // No coordinator on this port: a failed launch must not leave one behind either.
    let port = free_port();
    for (what, prog) in [("absolute path", "/nonexistent/dir/prog"), ("not in PATH", "no-such-program-dmtcp-e2e")] {
        let mut c = dmtcp(LAUNCH);
        c.arg("--coord-port").arg(port.to_string()).arg(prog);
        expect_fail(&t, &format!("dmtcp_launch of a nonexistent program ({what})"), c, 99);
    }
    let mut c = dmtcp(LAUNCH);
    c.arg("--coord-port").arg(port.to_string()).arg("/nonexistent/dir/prog").env("DMTCP_FAIL_RC", "42");
    expect_fail(&t, "dmtcp_launch of a nonexistent program with DMTCP_FAIL_RC=42", c, 42);
    assert!(!port_in_use(port), "a coordinator was left listening on {port}");
    // With a coordinator running, the same.
    let coord = Coord::start();
    let mut c = dmtcp(LAUNCH);
    c.arg("--coord-port").arg(coord.port.to_string()).arg("/nonexistent/dir/prog");
    expect_fail(&t, "dmtcp_launch of a nonexistent program (coordinator running)", c, 99);
}

#[test]
fn join_coordinator_with_nothing_listening() {
    let t = TempDir::new("join");
    let imgs = images_once();
    let prog = fixture("counter");
    let port = free_port();
    let mut c = dmtcp(LAUNCH);
    c.arg("--join-coordinator").arg("--coord-port").arg(port.to_string()).arg(&prog).arg("3");
    expect_fail(&t, "dmtcp_launch --join-coordinator (nothing listening)", c, 99);
    let mut c = dmtcp(RESTART);
    c.arg("--join-coordinator").arg("--coord-port").arg(port.to_string()).arg(&imgs.raw);
    expect_fail(&t, "dmtcp_restart --join-coordinator (nothing listening)", c, 99);
    assert!(!port_in_use(port), "--join-coordinator started a coordinator on {port}");
}

#[test]
fn inspect_real_images() {
    let imgs = images_once();
    for img in [&imgs.raw, &imgs.gz] {
        let o = output("dmtcp_inspect", dmtcp(INSPECT).arg(img));
        assert!(o.status.success(), "dmtcp_inspect {}: {}", img.display(), describe(&o));
        assert!(!o.stdout.is_empty(), "dmtcp_inspect printed nothing");
        let o = output("dmtcp_inspect --json", dmtcp(INSPECT).arg("--json").arg(img));
        assert!(o.status.success(), "dmtcp_inspect --json {}: {}", img.display(), describe(&o));
        let v: serde_json::Value =
            serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("dmtcp_inspect --json is not JSON ({e}): {}", describe(&o)));
        assert!(v.is_object(), "dmtcp_inspect --json: not an object");
    }
}

/// Unmounts (lazily) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = output("umount", Command::new("umount").arg("-l").arg(&self.0));
    }
}

/// Fill a file system: write until it refuses.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(path).expect("filler file");
    let chunk = vec![0x55u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let small = [0x55u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.flush();
}

/// A checkpoint into a full file system fails cleanly: the previous image stays intact and
/// restartable, and the program runs on as if nothing happened.
#[test]
fn checkpoint_into_full_filesystem_keeps_previous_image() {
    let t = TempDir::new("full-fs");
    let mnt = t.subdir("small");
    let m = output("mount", Command::new("mount").args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"]).arg(&mnt));
    if !m.status.success() {
        eprintln!("NOTE: skipping the full-file-system test: cannot mount a tmpfs ({})", String::from_utf8_lossy(&m.stderr).trim());
        return;
    }
    let _mount = Mount(mnt.clone());
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &["120"], &t.subdir("plain"));
    let coord = Coord::start();
    let mnt_s = mnt.to_str().expect("utf-8 path").to_string();
    let o = LaunchOpts { port: Some(coord.port), opts: vec!["--ckptdir", &mnt_s], ..Default::default() };
    let mut run = launch(&t.path, &o, &prog, &["120"]);
    run.wait_lines(5);
    coord.checkpoint();
    let img = image(&mnt, "counter");
    let saved = fs::read(&img).expect("first image");
    fill(&mnt.join("filler"));
    let second = coord.command(&["-bc"]);
    eprintln!("checkpoint into a full file system: dmtcp_command -bc -> {}", describe(&second));
    // The program runs on...
    let n = run.out().lines().count();
    run.wait_lines(n + 5);
    // ...to the end, printing exactly what an uninterrupted run prints.
    run.expect_exit(0);
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(run.out(), exp, "the failed checkpoint disturbed the program's output");
    // The previous image is intact and still restarts.
    assert_eq!(images(&mnt, "counter"), vec![img.clone()], "images after the failed checkpoint: {:?}", listing(&mnt));
    assert!(fs::read(&img).expect("image after the failed checkpoint") == saved, "the failed checkpoint changed the previous image");
    let _ = fs::remove_file(mnt.join("filler"));
    let mut r = restart(&t.path, Some(coord.port), &[], &img, "restart");
    assert_eq!(r.wait_code(), 0, "restart from the previous image\n{}", r.err());
    assert_continuation(&run.out(), &r.out(), &exp);
}

/// The static loader run by hand: it must relocate itself (before which it may call nothing
/// out of line), then refuse with one line and DMTCP's code, whatever fd it is given.
#[test]
fn restart_loader_refuses_bad_arguments() {
    init();
    let t = TempDir::new("loader-args");
    let loader = bin_dir().join("mtcp_restart");
    let line = expect_fail(&t, "loader without arguments", Command::new(&loader), 99);
    assert!(line.contains("usage"), "{line}");
    let mut cmd = Command::new(&loader);
    cmd.args(["0", "42"]); // stdin is /dev/null: no image there
    let line = expect_fail(&t, "loader with a non-image fd", cmd, 42);
    assert!(line.contains("image"), "{line}");
}

/// An image taken on a CPU with a feature this host lacks is refused with one line; with
/// --no-strict-checking the restart goes ahead (the program here uses no such feature).
#[test]
fn missing_cpu_feature_is_refused_unless_not_strict() {
    let t = TempDir::new("cpu-feature");
    let imgs = images_once();
    let coord = Coord::start();
    // The top bit of the first feature word is CPUID.1:ECX bit 31 on x86 (never recorded: it
    // says "hypervisor", not a CPU feature) and an unassigned AT_HWCAP bit on ARM.
    let img = edited_image(&t.path, &imgs.raw, |b| {
        let mut h = dmtcp_layout::FileHeader::decode(b).expect("header");
        h.hwcap |= 1 << 63;
        let mut hb = [0u8; dmtcp_layout::HEADER_SIZE];
        h.encode(&mut hb);
        b[..dmtcp_layout::HEADER_SIZE].copy_from_slice(&hb);
    });
    let line = expect_fail(&t, "restart needing a missing CPU feature", restart_cmd(coord.port, &img), 99);
    assert!(line.contains("features") && line.contains("--no-strict-checking"), "{line}");
    let _running = image_runs();
    let mut r = restart(&t.path, Some(coord.port), &["--no-strict-checking"], &img, "not-strict");
    // What expect_fail looks for: a process restored from the shared images shows their marker.
    r.wait_lines(1);
    // Under qemu-user (no PR_SET_MM_MAP) a restored process's /proc/PID/environ does not show
    // its environment: the leftover check is blind there (what ci/cross.sh notes). The ARM
    // builds of this suite run only under qemu-user (a real ARM kernel runs the qemu-system
    // tier's cases), the x86 ones on a real kernel.
    let environ_restored = cfg!(any(target_arch = "x86_64", target_arch = "x86"));
    if environ_restored {
        assert!(!processes_with_env(&imgs.marker).is_empty(), "a restored process does not show the images' marker {}", imgs.marker);
    } else {
        eprintln!("note: /proc/PID/environ of the restarted process is unreadable here (qemu-user): marker check skipped");
    }
    assert_eq!(r.wait_code(), 0, "restart with --no-strict-checking\n{}", r.err());
    assert!(r.out().lines().count() > 3, "the restarted program printed nothing:\n{}", r.out());
}

/// x86: an image from a CPU whose kernel enabled less XSAVE state (XCR0) than this one is
/// refused: ld.so sized its XSAVE buffers for the old state. --no-strict-checking overrides.
#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[test]
fn larger_xsave_state_is_refused_unless_not_strict() {
    let t = TempDir::new("xcr0");
    let imgs = images_once();
    let coord = Coord::start();
    let img = edited_image(&t.path, &imgs.raw, |b| {
        let mut h = dmtcp_layout::FileHeader::decode(b).expect("header");
        assert!(h.hwcap3 >> 32 > 3, "this host enables AVX state at least: XCR0 {:#x}", h.hwcap3 >> 32);
        h.hwcap3 = (3 << 32) | (h.hwcap3 & 0xffff_ffff); // x87 and SSE state only
        let mut hb = [0u8; dmtcp_layout::HEADER_SIZE];
        h.encode(&mut hb);
        b[..dmtcp_layout::HEADER_SIZE].copy_from_slice(&hb);
    });
    let line = expect_fail(&t, "restart on a CPU with more XSAVE state", restart_cmd(coord.port, &img), 99);
    assert!(line.contains("XCR0") && line.contains("--no-strict-checking"), "{line}");
    let _running = image_runs();
    let mut r = restart(&t.path, Some(coord.port), &["--no-strict-checking"], &img, "not-strict");
    assert_eq!(r.wait_code(), 0, "restart with --no-strict-checking\n{}", r.err());
}
