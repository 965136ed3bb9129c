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
