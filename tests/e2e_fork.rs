//! A program that forks: the child joins the computation with its own unique pid, is
//! checkpointed together with its parent, and the restart script brings both back.

mod common;

use common::*;
use std::fs;

const LINES: &str = "100"; // ~5 s

#[test]
fn forked_child_is_checkpointed_and_restarted_with_its_parent() {
    let t = TempDir::new("fork");
    let prog = fixture("forker");
    let plain = t.subdir("plain");
    let (exp_parent, code) = run_plain(&prog, &[LINES], &plain);
    assert_eq!(code, 0);
    // The child may still be writing when the parent exits.
    let exp_child: String = (1..=100).map(|i| format!("child {i}\n")).collect();
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[LINES]);
    run.wait_lines(5);
    let status = coord.command(&["-s", "--json"]);
    let json = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(json.contains("\"num_peers\":2") || json.contains("\"num_peers\": 2"), "parent and child are both peers: {json}");
    coord.kcheckpoint();
    let _ = run.proc.wait();
    let before_parent = run.out();
    let before_child = fs::read_to_string(t.join("child.txt")).expect("child.txt");
    let imgs = images(&t.path, "forker");
    assert_eq!(imgs.len(), 2, "one image per process: {:?}", listing(&t.path));

    let mut r = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    let deadline = std::time::Instant::now() + TIMEOUT;
    while fs::read_to_string(t.join("child.txt")).unwrap_or_default() != exp_child && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let after_child = fs::read_to_string(t.join("child.txt")).unwrap_or_default();
    assert!(before_child.lines().count() >= 3 && after_child == exp_child, "child.txt before the kill:\n{before_child}\nat the end:\n{after_child}");
    let parent_lines = |s: &str| s.lines().filter(|l| l.starts_with("parent ")).map(|l| format!("{l}\n")).collect::<String>();
    assert_concat(&before_parent, &parent_lines(&r.out()), &exp_parent);
}

/// The restart recreates the parent/child link with the old pids: the restarted parent's
/// waitpid() on the child it forked before the checkpoint reports the child's exit code, the
/// parent's getpid() is what it was (dmtcp_restart stays in front of it, passing on its exit
/// code), and the child leads its own session again.
#[test]
fn restarted_parent_waits_for_its_restarted_child() {
    let t = TempDir::new("tree");
    let prog = fixture("forker");
    let (exp_parent, code) = run_plain(&prog, &[LINES, "wait"], &t.subdir("plain"));
    assert_eq!(code, 0);
    assert!(exp_parent.ends_with("waited=1 exited=1 status=3 same_pid=1\n"), "uninterrupted run:\n{exp_parent}");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[LINES, "wait"]);
    run.wait_lines(5);
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans(); // the killed child, so that its pid is free again
    let before = run.out();
    assert_eq!(images(&t.path, "forker").len(), 2, "{:?}", listing(&t.path));
    let mut r = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    assert_concat(&before, &r.out(), &exp_parent);
    // The child made a session of its own before the checkpoint; it leads one again.
    let child = fs::read_to_string(t.join("child.txt")).unwrap_or_default();
    assert!(child.ends_with("child 100\nsession leader=1 group leader=1\n"), "child.txt:\n{child}");
}

/// dmtcp_command --kill and --quit end every process of the computation, the forked child too,
/// before and after a restart; nothing is left, zombies included.
#[test]
fn kill_and_quit_leave_no_process_of_the_computation() {
    let t = TempDir::new("fork-kill");
    let prog = fixture("forker");
    let (key, value) = unique_marker();
    let marker = format!("{key}={value}");
    // The computation's processes, by pid and start time: once killed they must not even stay
    // zombies (processes_with_env no longer sees a zombie: it has no environment left).
    let computation = || -> Vec<(i32, u64)> {
        processes_with_env(&marker).into_iter().filter_map(|pid| proc_stat(pid).map(|(_, _, start)| (pid, start))).collect()
    };
    let wait_gone = |procs: &[(i32, u64)], what: &str| {
        wait_gone_with_zombies(procs, what, TIMEOUT);
        assert_eq!(processes_with_env(&marker), Vec::<i32>::new(), "{what}: processes of the computation are left");
    };
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), env: vec![(key.as_str(), value.clone())], ..Default::default() };
    let mut run = launch(&t.path, &o, &prog, &["400"]);
    run.wait_lines(5);
    assert_eq!(processes_with_env(&marker).len(), 2, "parent and child run");
    let launched = computation();
    coord.checkpoint();
    coord.command(&["--kill"]);
    let _ = run.proc.wait();
    wait_gone(&launched, "after --kill");

    let mut r = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    r.wait_lines(3);
    let deadline = std::time::Instant::now() + TIMEOUT;
    while processes_with_env(&marker).len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    assert_eq!(processes_with_env(&marker).len(), 2, "parent and child restarted");
    // dmtcp_restart too, when it stays in front of the restored process.
    let mut restarted = computation();
    restarted.extend(proc_stat(r.proc.pid()).map(|(_, _, start)| (r.proc.pid(), start)));
    let quit = coord.command(&["--quit"]);
    assert!(quit.status.success(), "{}", describe(&quit));
    let _ = r.proc.wait();
    wait_gone(&restarted, "after --quit");
}

/// posix_spawn and vfork + exec: the children are new program images that join the computation
/// through LD_PRELOAD; all three processes are checkpointed together, restarted as a tree, and
/// the parent's waitpid() reports both children's exit codes.
#[test]
fn spawned_and_vforked_children_are_followed() {
    let t = TempDir::new("spawn");
    let prog = fixture("spawner");
    let (exp, code) = run_plain(&prog, &[LINES], &t.subdir("plain"));
    assert_eq!(code, 0);
    assert!(exp.ends_with("spawned waited=1 status=4; vforked waited=1 status=5\n"), "uninterrupted run:\n{exp}");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[LINES]);
    run.wait_lines(5);
    let peers = || String::from_utf8_lossy(&coord.command(&["-s"]).stdout).contains("NUM_PEERS=3");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !peers() && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    assert!(peers(), "the parent and both children are peers");
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();
    let before = run.out();
    assert_eq!(images(&t.path, "spawner").len(), 3, "{:?}", listing(&t.path));
    let mut r = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    assert_concat(&before, &r.out(), &exp);
    for name in ["spawned", "vforked"] {
        let want: String = (1..=100).map(|i| format!("{name} {i}\n")).collect();
        assert_eq!(fs::read_to_string(t.join(format!("{name}.txt"))).unwrap_or_default(), want, "{name}.txt");
    }
}

/// Children that had ended but were not reaped at the checkpoint are there again after the
/// restart, with their pids and exit status: the restarted parent's waitpid() reaps them.
#[test]
fn unreaped_children_are_reaped_after_restart() {
    let t = TempDir::new("zombies");
    let prog = fixture("zombie");
    let (expected, code) = run_plain(&prog, &["40"], &t.subdir("plain"));
    assert_eq!(code, 0);
    assert!(expected.ends_with("first: reaped=1 exited=1 code=5\nsecond: reaped=1 signaled=1 signal=15\n"), "uninterrupted run:\n{expected}");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["40"]);
    run.wait_lines(8);
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans(); // the killed parent's zombies, so that their pids are free again
    let before = run.out();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "zombie"), "restart");
    assert_eq!(r.wait_code(), 0, "restart\n{}", r.err());
    assert!(!r.err().contains("cannot be made again"), "{}", r.err());
    assert_concat(&before, &r.out(), &expected);
}

/// exec while a checkpoint is under way waits for it (DMTCP's behaviour): the process is in the
/// image as it was before its exec, and executes once the checkpoint is over, and again after a
/// restart. (Without the hold it would leave the round and the checkpoint would have no process.)
#[test]
fn exec_waits_for_a_checkpoint_under_way() {
    let t = TempDir::new("execheld");
    let prog = fixture_against_header("execheld", "execheld", &[]);
    let (exp, code) = run_plain(&prog, &[], &t.subdir("plain"));
    assert_eq!((exp.as_str(), code), ("window\nafter exec\n", 0), "uninterrupted run");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[]);
    run.wait_lines(1);
    coord.checkpoint();
    assert_eq!(run.wait_code(), 0, "the launched run\n--- stderr ---\n{}", run.err());
    assert_eq!(run.out(), exp);
    let img = image(&t.path, "execheld");
    let mut again = restart(&t.path, Some(coord.port), &[], &img, "restart");
    assert_eq!(again.wait_code(), 0, "the restart\n--- stderr ---\n{}", again.err());
    assert_eq!(again.out(), "after exec\n");
}

/// exit while a checkpoint is under way waits it out too: the process is in the image, ends with
/// its code after the checkpoint, and again after a restart.
#[test]
fn exit_waits_out_a_checkpoint_under_way() {
    let t = TempDir::new("exitheld");
    let prog = fixture_against_header("execheld", "execheld", &[]);
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["exit"]);
    run.wait_lines(1);
    coord.checkpoint();
    assert_eq!(run.wait_code(), 3, "the launched run\n--- stderr ---\n{}", run.err());
    let img = image(&t.path, "execheld");
    let mut again = restart(&t.path, Some(coord.port), &[], &img, "restart");
    assert_eq!(again.wait_code(), 3, "the restart\n--- stderr ---\n{}", again.err());
}
