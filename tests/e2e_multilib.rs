//! Multilib on x86_64: the 64-bit dmtcp_launch / dmtcp_restart of an install made by
//! ci/install.sh handle 32-bit programs (choosing lib/dmtcp/32 by ELF class), and programs that
//! exec across ELF classes stay checkpointed (one LD_PRELOAD through ld.so's `$LIB`).
//!
//! Needs a 32-bit build (cargo build --workspace --target i686-unknown-linux-gnu) and the i686
//! cross gcc: ci/cross.sh runs this with DMTCP_TEST_LIB32_DIR set. Without that variable the
//! tests only say they were not run.
#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use dmtcp_engine::image::reader::read_image_info;
use dmtcp_engine::layout::Cpu;
use std::path::{Path, PathBuf};
use std::process::Command;

const CC32: &str = "i686-linux-gnu-gcc";

/// An install prefix with 32-bit support, or None when the 32-bit build was not provided.
fn install() -> Option<(TempDir, PathBuf)> {
    let Ok(lib32) = std::env::var("DMTCP_TEST_LIB32_DIR") else {
        eprintln!("NOTE: multilib tests not run: set DMTCP_TEST_LIB32_DIR to a 32-bit build (ci/cross.sh does)");
        return None;
    };
    let t = TempDir::new("multilib-prefix");
    let prefix = t.subdir("prefix");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("ci/install.sh");
    let o = output("ci/install.sh", Command::new(&script).arg(&prefix).arg(bin_dir()).arg(&lib32));
    assert!(o.status.success(), "ci/install.sh failed:\n{}", describe(&o));
    Some((t, prefix))
}

fn image_cpu(img: &Path) -> Cpu {
    read_image_info(img).expect("image header").header.cpu().expect("known CPU")
}

/// Launch `prog args` with the installed 64-bit dmtcp_launch, checkpoint-and-kill mid-run,
/// restart with the installed dmtcp_restart, and compare with an uninterrupted run.
fn round_trip(prefix: &Path, name: &str, image_prog: &str, want_cpu: Cpu, prog: &Path, args: &[&str]) {
    let t = TempDir::new(name);
    let (expected, code) = run_plain(prog, args, &t.subdir("plain"));
    assert_eq!(code, 0);
    let coord = Coord::start();
    let launch_bin = prefix.join("bin/dmtcp_launch");
    let o = LaunchOpts { port: Some(coord.port), launch_bin: Some(&launch_bin), ..Default::default() };
    let mut run = launch(&t.path, &o, prog, args);
    run.wait_lines(6);
    coord.kcheckpoint();
    run.proc.wait();
    let before = run.out();
    let img = image(&t.path, image_prog);
    assert_eq!(image_cpu(&img), want_cpu, "CPU recorded in {}", img.display());
    let mut c = dmtcp(prefix.join("bin/dmtcp_restart").to_str().expect("utf-8 path"));
    c.arg("--coord-port").arg(coord.port.to_string()).arg(&img);
    let mut r = restart_with(&t.path, c, "restart");
    assert_eq!(r.wait_code(), 0, "restart\n{}", r.err());
    assert_concat(&before, &r.out(), &expected);
}

#[test]
fn a_32bit_program_under_the_64bit_commands() {
    let Some((_t, prefix)) = install() else { return };
    let counter32 = fixture_with("counter", CC32);
    round_trip(&prefix, "multilib-32", "counter", Cpu::X86, &counter32, &["60"]);
}

#[test]
fn a_64bit_program_that_execs_a_32bit_one() {
    let Some((_t, prefix)) = install() else { return };
    let exec64 = fixture("exec_into");
    let counter32 = fixture_with("counter", CC32);
    round_trip(&prefix, "multilib-64-to-32", "counter", Cpu::X86, &exec64, &[counter32.to_str().expect("utf-8"), "60"]);
}

#[test]
fn a_32bit_program_that_execs_a_64bit_one() {
    let Some((_t, prefix)) = install() else { return };
    let exec32 = fixture_with("exec_into", CC32);
    let counter64 = fixture("counter");
    round_trip(&prefix, "multilib-32-to-64", "counter", Cpu::X86_64, &exec32, &[counter64.to_str().expect("utf-8"), "60"]);
}
