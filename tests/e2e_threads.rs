//! A program with 4 pthreads (mutex + condition variable round robin, __thread counters, an
//! application SIGUSR1 handler, SIGUSR1 blocked in two threads) is checkpointed mid-run, killed and
//! restarted: all threads go on, TLS values, the handler and the masks are intact, pthread_join
//! works, and the output equals an uninterrupted run's.

mod common;

use common::*;

#[test]
fn threads_roundtrip_bcheckpoint_and_kill() {
    // 15 steps per thread, 50 ms each: ~3 s. Checkpoint after 8 of the 60 step lines.
    roundtrip("threads-bc", "threads", &["15"], 8);
}

#[test]
fn threads_roundtrip_kcheckpoint() {
    let t = TempDir::new("threads-kc");
    let prog = fixture("threads");
    let expected = run_plain_bg(&prog, &["15"], &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["15"]);
    run.wait_lines(20);
    coord.kcheckpoint();
    // -kc kills the computation once the images are written: the launched program must die.
    let st = run.proc.wait();
    assert!(!st.success(), "the program survived dmtcp_command -kc: {st}");
    let before = run.out();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "threads"), "restart");
    let code = r.wait_code();
    let (exp, exp_code) = expected.join().expect("uninterrupted run");
    assert_eq!(exp_code, 0, "the uninterrupted run failed its own checks:\n{exp}");
    assert_eq!(code, 0, "restarted program failed its own checks\n--- stderr ---\n{}\n--- stdout ---\n{}", r.err(), r.out());
    assert_concat(&before, &r.out(), &exp);
}
