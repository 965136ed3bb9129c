//! Pid virtualization: a parent, its thread and its child keep the pids and tids they saw when
//! their old pids are taken by other processes at restart time (the restart gives them new
//! ones), through a second checkpoint and restart too; a program executed without the
//! checkpoint library after the restart still runs and is waited for, and so does a set-user-id
//! program (which the dynamic loader runs without LD_PRELOAD).

mod common;

use common::*;

/// 64-bit time on 32-bit CPUs too: the fixture's wait4 is then glibc's __wait4_time64.
const VPIDS_FLAGS: &[&str] = &["-D_FILE_OFFSET_BITS=64", "-D_TIME_BITS=64"];

/// Processes that hold pids (tests/fixtures/squat.c) until dropped.
struct Squatters(Vec<i32>);

impl Squatters {
    fn take(pids: &[i32]) -> Squatters {
        let args: Vec<String> = pids.iter().map(|p| p.to_string()).collect();
        let o = output("squat", std::process::Command::new(fixture("squat")).args(&args));
        if o.status.code() == Some(2) {
            return Squatters(Vec::new()); // no clone3 (qemu-user): no restart gets an old pid back
        }
        assert!(o.status.success(), "cannot hold the old pids {pids:?} (needs root):\n{}", describe(&o));
        let held: Vec<i32> = String::from_utf8_lossy(&o.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
        assert_eq!(held, pids, "{}", describe(&o));
        Squatters(held)
    }
}

impl Drop for Squatters {
    fn drop(&mut self) {
        for &pid in &self.0 {
            // SAFETY: SIGKILL to the sleepers this test made.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = std::time::Instant::now() + TIMEOUT;
        while self.0.iter().any(|&p| alive(p)) && std::time::Instant::now() < deadline {
            reap_orphans();
            std::thread::sleep(POLL);
        }
    }
}

/// The only child of `pid`.
fn child_of(pid: i32) -> i32 {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        if let Some(c) = children.split_whitespace().next().and_then(|c| c.parse().ok()) {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "{pid} has no child");
        std::thread::sleep(POLL);
    }
}

#[test]
fn pids_survive_restarts_onto_new_pids() {
    let t = TempDir::new("vpids");
    let prog = fixture_against_header("vpids", "vpids", VPIDS_FLAGS);
    let nocheckpoint = bin_dir().join("dmtcp_nocheckpoint");
    let helper = [nocheckpoint.to_str().unwrap(), "/bin/sh", "-c", "exit 9"];
    let args: Vec<&str> = ["150"].into_iter().chain(helper).collect();
    let (exp, code) = run_plain(&prog, &args, &t.subdir("plain"));
    assert_eq!(code, 0, "uninterrupted run:\n{exp}");
    assert!(exp.ends_with("150 ok\nchild waited=1\nhelper waited=1 status=9\n"), "uninterrupted run:\n{exp}");

    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &args);
    run.wait_lines(5);
    let (parent, child) = (run.proc.pid(), child_of(run.proc.pid()));
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();
    let before = run.out();
    assert!(!before.contains("FAIL"), "before the checkpoint:\n{before}");

    // The old pids are someone else's now: the restart must give new ones.
    let _held = Squatters::take(&[parent, child]);
    let mut first = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart1");
    first.wait_lines(10);
    // Without its old pid the root is dmtcp_restart itself (the script executes it).
    let now = [first.proc.pid(), child_of(first.proc.pid())];
    assert!(!now.contains(&parent) && !now.contains(&child), "the restart had new pids {now:?}, not the old {parent} and {child}");
    let after_first = first.out();

    // Checkpoint the restarted computation: its images keep the pids the program knows.
    coord.kcheckpoint();
    let _ = first.proc.wait();
    reap_orphans();
    let after_first = first.out().get(after_first.len()..).map(|rest| format!("{after_first}{rest}")).unwrap_or(after_first);
    let mut second = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart2");
    let code = second.wait_code();
    let all = format!("{before}{after_first}{}", second.out());
    assert!(!all.contains("FAIL"), "a pid check failed after a restart:\n{all}\n--- stderr ---\n{}{}", first.err(), second.err());
    assert_eq!(code, 0, "the restarted program's exit code\n--- stderr ---\n{}", second.err());
    assert_concat(&format!("{before}{after_first}"), &second.out(), &exp);
}

/// A set-user-id program executed by a process of the computation runs without the library (the
/// dynamic loader ignores LD_PRELOAD for it), before the checkpoint and after the restart, and
/// its parent waits for it. Needs root (to make a program set-user-id to nobody).
#[test]
fn a_setuid_program_runs_without_the_library() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("note: not root: the set-user-id case is not tested");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = TempDir::new("setuid");
    let prog = fixture_against_header("vpids", "vpids", VPIDS_FLAGS);
    let helper = t.path.join("secure_exit");
    std::fs::copy(fixture("secure_exit"), &helper).expect("copy the helper");
    std::os::unix::fs::chown(&helper, Some(65534), Some(65534)).expect("chown nobody");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o4755)).expect("chmod u+s");
    if std::process::Command::new(&helper).arg("9").status().ok().and_then(|s| s.code()) != Some(9) {
        // qemu-user through binfmt_misc without the C flag runs it with the caller's credentials.
        eprintln!("note: set-user-id programs do not run set-user-id here: the case is not tested");
        return;
    }
    let args = ["40", helper.to_str().unwrap(), "9"];
    let (exp, code) = run_plain(&prog, &args, &t.subdir("plain"));
    assert!(code == 0 && exp.ends_with("helper waited=1 status=9\n"), "uninterrupted run ({code}):\n{exp}");

    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &args);
    run.wait_lines(5);
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();
    let before = run.out();
    let mut again = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    let code = again.wait_code();
    assert_eq!(code, 0, "the restart\n--- stdout ---\n{}--- stderr ---\n{}", again.out(), again.err());
    assert_concat(&before, &again.out(), &exp);
}
