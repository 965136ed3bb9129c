//! dmtcp_restart's DMTCP options beyond the basic round trip: a restart while the original still
//! runs is refused; --ckptdir moves the next checkpoints; several images restart at once; and
//! the debugging aids (--debug-restart-pause, DMTCP_GDB_ATTACH_ON_RESTART) pause the restarted
//! process until gdb attaches, and gdb then sees the program's own symbols.

mod common;

use common::*;
use std::process::Command;

const LINES: &str = "100"; // ~5 s

/// Lines of `s` that `keep` selects, each with its newline.
fn select(s: &str, keep: impl Fn(&str) -> bool) -> String {
    s.lines().filter(|l| keep(l)).map(|l| format!("{l}\n")).collect()
}

fn is_number(l: &str) -> bool {
    !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn restart_while_the_original_runs_is_refused() {
    let t = TempDir::new("refuse-running");
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[LINES]);
    run.wait_lines(5);
    coord.checkpoint();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "counter"), "restart-too-early");
    assert_eq!(r.wait_code(), 99, "a restart while the original runs\n{}", r.err());
    let err = r.err();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("still running") && err.contains("dmtcp_command -k"), "{err}");
    assert!(r.out().is_empty(), "the refused restart printed: {}", r.out());
    // The original is untouched and finishes.
    assert_eq!(run.wait_code(), 0);
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(run.out(), exp);
}

#[test]
fn ckptdir_on_restart_moves_the_next_checkpoints() {
    let t = TempDir::new("restart-ckptdir");
    let Checkpointed { coord, before, image: img, expected: exp, .. } = checkpointed_and_killed(&t, "counter", &[LINES], 5);
    let next = t.path.join("next");
    let next_arg = next.display().to_string();
    let mut r1 = restart(&t.path, Some(coord.port), &["--ckptdir", &next_arg], &img, "restart-1");
    r1.wait_lines(10);
    coord.checkpoint();
    let img2 = image(&next, "counter");
    r1.kill();
    let after1 = r1.out();
    let mut r2 = restart(&t.path, Some(coord.port), &[], &img2, "restart-2");
    assert_eq!(r2.wait_code(), 0, "restart from the --ckptdir image\n{}", r2.err());
    let k1 = assert_partial_continuation(&before, &after1, &exp);
    let rest: String = exp.lines().skip(k1).map(|l| format!("{l}\n")).collect();
    assert_continuation(&after1, &r2.out(), &rest);
}

/// Two processes of one computation (a counter and the threads program), checkpointed together,
/// restarted by one dmtcp_restart: both continue (their output shares dmtcp_restart's stdout).
#[test]
fn several_images_restart_at_once() {
    let t = TempDir::new("several-images");
    let (counter, threads) = (fixture("counter"), fixture("threads"));
    let exp_counter = run_plain_bg(&counter, &[LINES], &t.subdir("plain-counter"));
    let exp_threads = run_plain_bg(&threads, &["40"], &t.subdir("plain-threads"));
    let coord = Coord::start();
    let o = |log| LaunchOpts { port: Some(coord.port), log, ..Default::default() };
    let mut a = launch(&t.path, &o("counter"), &counter, &[LINES]);
    let mut b = launch(&t.path, &o("threads"), &threads, &["40"]);
    a.wait_lines(5);
    b.wait_lines(5);
    coord.checkpoint();
    a.kill();
    b.kill();
    let (before_a, before_b) = (a.out(), b.out());
    let imgs = [image(&t.path, "counter"), image(&t.path, "threads")];
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(coord.port.to_string()).args(&imgs);
    let mut r = restart_with(&t.path, c, "restart-both");
    assert_eq!(r.wait_code(), 0, "dmtcp_restart of both images\n{}", r.err());
    // The detached one may still be finishing its last lines.
    let (exp_a, _) = exp_counter.join().expect("uninterrupted counter");
    let (exp_b, _) = exp_threads.join().expect("uninterrupted threads");
    let wanted = |out: &str| select(out, is_number).lines().count() + before_a.lines().count() >= exp_a.lines().count();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !wanted(&r.out()) && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let out = r.out();
    assert_continuation(&before_a, &select(&out, is_number), &exp_a);
    assert_continuation(&before_b, &select(&out, |l| !is_number(l)), &exp_b);
}

/// gdb attached to a paused restarted process sees the program's file and source lines.
fn attach_gdb_to_paused(r: &mut Run, what: &str) -> String {
    let deadline = std::time::Instant::now() + TIMEOUT;
    let pid = loop {
        let err = r.err();
        if let Some(pid) = err.lines().find_map(|l| l.split("restarted process ").nth(1)?.split(' ').next()?.parse::<u32>().ok()) {
            break pid;
        }
        assert!(r.proc.running(), "{what}: the restart ended without pausing\n{err}");
        assert!(std::time::Instant::now() < deadline, "{what}: no pause message\n{err}");
        std::thread::sleep(POLL);
    };
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("exe link");
    assert_eq!(exe.file_name().and_then(|n| n.to_str()), Some("counter"), "{what}: /proc/{pid}/exe");
    let o = output(&format!("gdb -p {pid}"), Command::new("gdb").args(["-nx", "-batch", "-p", &pid.to_string(), "-ex", "thread apply all bt"]));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn debug_pause_waits_for_gdb_which_sees_symbols() {
    let t = TempDir::new("restart-pause");
    let Checkpointed { coord, before, image: img, expected: exp, .. } = checkpointed_and_killed(&t, "counter", &[LINES], 5);
    for (what, flag, env) in [("--debug-restart-pause", true, false), ("DMTCP_GDB_ATTACH_ON_RESTART", false, true)] {
        let mut c = dmtcp(RESTART);
        c.arg("--coord-port").arg(coord.port.to_string());
        if flag {
            c.args(["--debug-restart-pause", "1"]);
        }
        if env {
            c.env("DMTCP_GDB_ATTACH_ON_RESTART", "1");
        }
        c.arg(&img);
        let mut r = restart_with(&t.path, c, what);
        let bt = attach_gdb_to_paused(&mut r, what);
        assert!(bt.contains(" main (") && bt.contains("counter.c:"), "{what}: gdb's backtrace lacks the program's main\n{bt}");
        // The checkpoint thread waits in libdmtcp's pause (apply or wait_for_debugger, by timing).
        assert!(bt.contains("dmtcp::restart_settings::"), "{what}: gdb's backtrace lacks libdmtcp's pause\n{bt}");
        assert_eq!(r.wait_code(), 0, "{what}: after gdb detached\n{}", r.err());
        assert_continuation(&before, &r.out(), &exp);
    }
}

/// The restarted program gets its old pid back (dmtcp_restart then waits in front of it); a
/// `kill -9` of dmtcp_restart's own pid still ends the program, as when the program replaced it.
#[test]
fn killing_dmtcp_restart_ends_the_restarted_program() {
    let t = TempDir::new("kill-restart");
    let prog = fixture("counter");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["400"]);
    run.wait_lines(5);
    let old_pid = run.proc.pid();
    coord.checkpoint();
    run.kill();
    reap_orphans();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "counter"), "restart");
    r.wait_lines(3);
    assert!(alive(old_pid), "the restarted program runs with its old pid {old_pid}");
    // SAFETY: kill(2) of our own child only.
    unsafe { libc::kill(r.proc.pid(), libc::SIGKILL) };
    let _ = r.proc.wait();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while alive(old_pid) && std::time::Instant::now() < deadline {
        reap_orphans();
        std::thread::sleep(POLL);
    }
    assert!(!alive(old_pid), "the restarted program outlived dmtcp_restart");
}

/// DMTCP_RESTART_PAUSE2 in the environment of the original launch (the program's own, so its
/// images carry it) pauses every restart of it the same way, with no option on dmtcp_restart.
#[test]
fn restart_pause2_from_the_launch_environment() {
    let t = TempDir::new("restart-pause2");
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), env: vec![("DMTCP_RESTART_PAUSE2", "1".to_string())], ..Default::default() };
    let mut run = launch(&t.path, &o, &prog, &[LINES]);
    run.wait_lines(5);
    coord.checkpoint();
    run.kill();
    let before = run.out();
    let img = image(&t.path, "counter");
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(coord.port.to_string()).arg(&img).env_remove("DMTCP_RESTART_PAUSE2");
    let mut r = restart_with(&t.path, c, "restart");
    let bt = attach_gdb_to_paused(&mut r, "DMTCP_RESTART_PAUSE2");
    assert!(bt.contains(" main ("), "gdb's backtrace lacks the program's main\n{bt}");
    assert_eq!(r.wait_code(), 0, "after gdb detached\n{}", r.err());
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_continuation(&before, &r.out(), &exp);
}

/// `dmtcp_restart --quiet` keeps its notes to itself: an fd that cannot be reopened (its file was
/// deleted) is reported without it and not with it; the program restarts either way.
#[test]
fn quiet_restart_reports_nothing() {
    let t = TempDir::new("restart-quiet");
    let prog = fixture("counter");
    let data = t.join("data.txt");
    std::fs::write(&data, "x\n").expect("data.txt");
    let coord = Coord::start();
    // The counter inherits fd 7, open on data.txt.
    let held = std::fs::File::open(&data).expect("open data.txt");
    let stdout = t.join("launch.out");
    let mut c = dmtcp(LAUNCH);
    c.arg("--coord-port").arg(coord.port.to_string()).arg(&prog).arg("40").current_dir(&t.path);
    c.stdout(std::fs::File::create(&stdout).expect("launch.out")).stderr(std::fs::File::create(t.join("launch.err")).expect("launch.err"));
    let fd = std::os::fd::AsRawFd::as_raw_fd(&held);
    // SAFETY: dup2 in the child before exec, onto a number nothing else uses there.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(
            &mut c,
            move || if libc::dup2(fd, 7) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) },
        );
    }
    let mut run = Run { proc: spawn("dmtcp_launch counter with fd 7", &mut c), stdout, stderr: t.join("launch.err") };
    drop(held);
    run.wait_lines(5);
    coord.checkpoint();
    run.kill();
    let img = image(&t.path, "counter");
    std::fs::remove_file(&data).expect("rm data.txt");
    for (quiet, log) in [(false, "restart"), (true, "restart-quiet")] {
        let opts: &[&str] = if quiet { &["--quiet"] } else { &[] };
        let mut r = restart(&t.path, Some(coord.port), opts, &img, log);
        assert_eq!(r.wait_code(), 0, "{log}\n{}", r.err());
        let err = r.err();
        if quiet {
            assert!(err.is_empty(), "--quiet restart printed:\n{err}");
        } else {
            assert!(err.contains("fd 7 (") && err.contains("data.txt"), "the lost fd is not reported:\n{err}");
        }
    }
}
