//! Kernel timers and pending signals survive checkpoint and restart (preload/src/timers.rs): an
//! interval timer (ITIMER_REAL), POSIX timers signalling the process and one thread with their
//! sigev_value, a SIGEV_NONE timer still counting down, every timer under its old id, and a
//! signal pending on the process and one pending on the main thread, both delivered when the
//! program unblocks them at step 30 (tests/fixtures/timers.c). A SIGEV_THREAD timer goes on
//! running its function on new threads (tests/fixtures/threadtimer.c). The checkpoints are taken before
//! step 30; the restarted program must print exactly what an uninterrupted run prints.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;

const STEPS: &str = "40"; // 100 ms each

/// Lines `k..` of `s`, each with its newline.
fn from_line(s: &str, k: usize) -> String {
    s.lines().skip(k).map(|l| format!("{l}\n")).collect()
}

/// What the restarted program said about timers it could not restore.
fn timer_warnings(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains("[dmtcp]") && (l.contains("timer") || l.contains("signal"))).collect()
}

#[test]
fn timers_and_pending_signals_survive_restart() {
    // The id line and 4 steps (~0.5 s): far from step 30.
    roundtrip("timers", "timers", &[STEPS], 5);
}

/// Checkpoint, kill, restart; checkpoint the restarted process (its timers are the recreated
/// ones), kill it, restart again: the second restart finishes the run exactly.
#[test]
fn timers_survive_restart_of_restart() {
    let t = TempDir::new("timers-twice");
    let Checkpointed { coord, before, image: img, expected: exp, expected_code } = checkpointed_and_killed(&t, "timers", &[STEPS], 5);

    let mut r1 = restart(&t.path, Some(coord.port), &[], &img, "restart-1");
    // A few steps of the restored process, still well before step 30.
    let k0 = before.lines().count();
    r1.wait_lines(5);
    assert!(k0 + 5 < 28, "the first checkpoint came too late to test pending signals: {k0} lines");
    let old: Vec<(PathBuf, std::time::SystemTime)> = images(&t.path, "timers")
        .into_iter()
        .map(|p| {
            let m = fs::metadata(&p).and_then(|m| m.modified()).expect("image mtime");
            (p, m)
        })
        .collect();
    coord.checkpoint();
    let img2 = images(&t.path, "timers")
        .into_iter()
        .find(|p| {
            let m = fs::metadata(p).and_then(|m| m.modified()).expect("image mtime");
            !old.iter().any(|(q, t)| q == p && *t == m)
        })
        .unwrap_or_else(|| panic!("checkpointing the restarted process wrote no new image: {:?}", listing(&t.path)));
    r1.kill();
    let after1 = r1.out();
    assert!(!after1.contains("pending usr1 delivered"), "the second checkpoint came after step 30:\n{after1}");

    let mut r2 = restart(&t.path, Some(coord.port), &[], &img2, "restart-2");
    let code = r2.wait_code();
    assert_eq!(code, expected_code, "exit code of the second restart\n--- stderr ---\n{}", r2.err());
    let k1 = assert_partial_continuation(&before, &after1, &exp);
    assert_continuation(&after1, &r2.out(), &from_line(&exp, k1));
    for (name, err) in [("first", r1.err()), ("second", r2.err())] {
        assert!(timer_warnings(&err).is_empty(), "the {name} restart warned about timers or signals:\n{err}");
    }
}

/// A SIGEV_THREAD timer (libdmtcp's own, preload/src/thread_timers.rs: glibc's helper thread
/// could not be checkpointed) keeps calling its function with its value after the restart, and
/// timer_gettime and timer_delete on it still work.
#[test]
fn sigev_thread_timer_runs_its_function_after_restart() {
    let k = launch_and_kcheckpoint("threadtimer", "threadtimer", &["30"], 4);
    assert!(k.expected.ends_with("step 30 ticked=1 armed=1\ndeleted=1\n"), "uninterrupted run:\n{}", k.expected);
    assert!(!k.expected.contains("ticked=0"), "uninterrupted run:\n{}", k.expected);
    let err = restart_script_continues(&k);
    assert!(timer_warnings(&err).is_empty(), "the restart warned about timers:\n{err}");
}
