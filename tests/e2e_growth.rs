//! After restart the program grows: many small mallocs and the program break (sbrk), 64 MiB
//! blocks, a new mmap, deep recursion (the stack grows by ~4.7 MiB), the vdso time functions, and
//! fork + exec of /bin/true with waitpid. The checkpoint is taken before any of that starts
//! (step 20 of 40), so all of it runs in the restored process.

mod common;

use common::*;

#[test]
fn growth_after_restart() {
    // Checkpoint after 4 lines: the heavy steps start at step 20.
    roundtrip("growth", "growth", &["40"], 4);
}

#[test]
fn growth_after_kcheckpoint() {
    let t = TempDir::new("growth-kc");
    let prog = fixture("growth");
    let expected = run_plain_bg(&prog, &["40"], &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["40"]);
    run.wait_lines(6);
    coord.kcheckpoint();
    let st = run.proc.wait();
    assert!(!st.success(), "the program survived dmtcp_command -kc: {st}");
    let before = run.out();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "growth"), "restart");
    let code = r.wait_code();
    let (exp, exp_code) = expected.join().expect("uninterrupted run");
    assert_eq!(code, exp_code, "exit code after restart\n--- stderr ---\n{}", r.err());
    assert!(exp.contains("child /bin/true waited=1 exited=1 status=0"), "uninterrupted run:\n{exp}");
    assert_concat(&before, &r.out(), &exp);
}

/// The cross-kernel path, on this kernel: with DMTCP_RESTART_REDIRECT_VDSO=1 the loader treats
/// the live vdso as another kernel's: it moves it out of the way, maps the image's copy of the old
/// vdso where the program expects it and makes each function of the copy jump to the live one.
/// The time functions (step 24) run through it. A checkpoint of that restarted process (the copy
/// is now ordinary memory) restarts again on the plain path and finishes.
#[test]
fn growth_through_a_redirected_vdso_then_restart_again() {
    let t = TempDir::new("growth-redirect");
    let Checkpointed { coord, before, image: img, expected: exp, expected_code: exp_code } = checkpointed_and_killed(&t, "growth", &["40"], 4);
    let mut c = dmtcp(RESTART);
    c.env("DMTCP_RESTART_REDIRECT_VDSO", "1").arg("--coord-port").arg(coord.port.to_string()).arg(&img);
    let mut r1 = restart_with(&t.path, c, "restart-redirected");
    let mut n = 1;
    while !r1.out().contains("step 26\n") {
        r1.wait_lines(n);
        n += 1;
    }
    assert!(r1.out().contains("time monotonic=1 realtime=1 gettimeofday=1 time=1"), "time functions after the redirected restart:\n{}", r1.out());
    coord.checkpoint();
    r1.kill();
    let after1 = r1.out();
    let mut r2 = restart(&t.path, Some(coord.port), &[], &image(&t.path, "growth"), "restart-plain");
    let code = r2.wait_code();
    assert_eq!(code, exp_code, "exit code of the second restart\n--- stderr ---\n{}", r2.err());
    let k1 = assert_partial_continuation(&before, &after1, &exp);
    let rest: String = exp.lines().skip(k1).map(|l| format!("{l}\n")).collect();
    assert_continuation(&after1, &r2.out(), &rest);
}
