//! The application API (include/dmtcp.h) called from C: dmtcp_checkpoint() before and after a
//! restart, a dmtcp_disable_ckpt() window that holds back a checkpoint, the status calls, and
//! the same program without dmtcp_launch.

mod common;

use common::*;

fn api() -> std::path::PathBuf {
    fixture_against_header("api", "api", &[])
}

/// dmtcp_checkpoint() returns DMTCP_AFTER_CHECKPOINT (1) in the running process once its image
/// is written, and DMTCP_AFTER_RESTART (2) in the process restored from that image.
#[test]
fn checkpoint_returns_after_checkpoint_then_after_restart() {
    let t = TempDir::new("api-ckpt");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &api(), &["checkpoint"]);
    wait_for_output(&mut run, "waiting to be killed");
    let out = run.out();
    assert!(out.contains("generation before: 0\n"), "{out}");
    assert!(out.contains("dmtcp_checkpoint returned 1 (checkpoints 1, restarts 0, generation 1)\n"), "{out}");
    let img = image(&t.path, "api");
    assert!(out.contains(&format!("image {}\n", img.display())), "dmtcp_get_ckpt_filename names the image\n{out}");
    run.kill();

    let mut r = restart(&t.path, Some(coord.port), &[], &img, "restart");
    r.expect_exit(0);
    assert_eq!(r.out(), "dmtcp_checkpoint returned 2 (checkpoints 1, restarts 1, generation 1)\n", "restart\n{}", r.err());
}

/// A `dmtcp_command -c` arriving inside a disable/enable window is held until the (nested)
/// window closes: the program sees the request pending, no checkpoint while inside, one right
/// after; a restart from that image resumes after the window.
#[test]
fn checkpoint_requested_inside_a_window_waits_for_its_end() {
    let t = TempDir::new("api-window");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &api(), &["window"]);
    wait_for_output(&mut run, "window open (1, nested 1)\n");
    let o = coord.command(&["-c"]);
    assert!(o.status.success(), "dmtcp_command -c: {}", describe(&o));
    run.expect_exit(0);
    let out = run.out();
    let want = "enabled\n\
                window open (1, nested 1)\n\
                checkpoint pending inside the window; checkpoints so far: 0\n\
                closing the window; checkpoints so far: 0\n\
                inner window closed; pending: 1\n\
                after the window: checkpoints 1, restarts 0\n";
    assert!(out.starts_with(want), "launch output\n{out}");
    let ticks: String = (1..=20).map(|i| format!("tick {i}\n")).collect();
    assert!(out.ends_with(&ticks), "launch output\n{out}");

    let img = image(&t.path, "api");
    let mut r = restart(&t.path, Some(coord.port), &[], &img, "restart");
    r.expect_exit(0);
    let after = r.out();
    assert!(
        !after.contains("closing the window") && !after.contains("inner window closed"),
        "the checkpoint was taken after the window closed\n{after}"
    );
    assert!(after.starts_with("after the window: checkpoints 1, restarts 1\n"), "restart output\n{after}");
    assert!(after.ends_with(&ticks), "restart output\n{after}");
}

/// The status and path calls answer under dmtcp_launch.
#[test]
fn status_calls_answer() {
    let t = TempDir::new("api-info");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &api(), &["info"]);
    run.expect_exit(0);
    let out = run.out();
    assert!(out.contains("coordinator status 4: peers 1 running 1\n"), "{out}");
    let dir = std::fs::canonicalize(&t.path).expect("canonical dir");
    assert!(out.contains(&format!("ckpt dir {}\n", dir.display())), "{out}");
    assert!(out.contains(&format!("filename {}/ckpt_api_", dir.display())), "{out}");
    assert!(out.contains("signal 12\n"), "{out}");
    assert!(out.contains("enable without disable: 0\n"), "{out}");
}

/// The same program without dmtcp_launch: the weak references are null, the header's macros
/// answer DMTCP_NOT_PRESENT (3) and the program runs normally.
#[test]
fn runs_without_dmtcp_launch() {
    let t = TempDir::new("api-plain");
    for mode in ["checkpoint", "window", "info"] {
        let (out, code) = run_plain(&api(), &[mode], &t.path);
        assert_eq!(code, 0, "{mode}: {out}");
        assert_eq!(out, "not enabled\ndmtcp_checkpoint=3 disable=3 enable=3\nfilename=(null)\n", "{mode}");
    }
}
