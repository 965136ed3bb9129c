//! Pipes, socketpairs and shared file descriptions between a parent and its forked child, with
//! data in flight at the checkpoint: nothing queued is lost or repeated after the restart, each
//! socket keeps its message boundaries, and a file both write through one description keeps a
//! single offset (no line overwrites another).

mod common;

use common::*;
use std::fs;

const RECORDS: &str = "60"; // the child takes one record per 40 ms: ~2.5 s

/// log.txt's lines, sorted (parent and child interleave in any order).
fn sorted_lines(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Every fd entry of every image of `prog` in `dir`, as dmtcp_inspect --json shows them.
fn fd_entries(dir: &std::path::Path, prog: &str) -> Vec<serde_json::Value> {
    images(dir, prog).iter().flat_map(|i| fds_of(&inspect_json(i))).collect()
}

#[test]
fn pipe_socketpairs_and_shared_file_survive_with_data_in_flight() {
    let k = launch_and_kcheckpoint("ipc", "ipc", &[RECORDS], 10);
    let expected_log = sorted_lines(&fs::read_to_string(k.t.join("plain/log.txt")).expect("plain log.txt"));
    assert!(k.expected.ends_with("ack 60\nend\n"), "uninterrupted run:\n{}", k.expected);
    let imgs = images(&k.t.path, "ipc");
    assert_eq!(imgs.len(), 2, "one image per process: {:?}", listing(&k.t.path));

    // The images hold what was in flight: records in the pipe (read end, in the child), acks on
    // the parent's end of the stream socketpair; and the child's log fd shares the parent's.
    let all = fd_entries(&k.t.path, "ipc");
    let queued_on = |kind: &str| all.iter().filter(|f| f["kind"] == kind).map(|f| f["queued_bytes"].as_u64().unwrap_or(0)).sum::<u64>();
    assert!(queued_on("Pipe") >= 4096, "no record queued in the pipe: {all:?}");
    assert!(queued_on("Socket") >= 16, "no ack queued on the socketpair: {all:?}");
    assert!(
        all.iter().any(|f| f["path"].as_str().is_some_and(|p| p.ends_with("/log.txt")) && !f["shares"].is_null()),
        "the child's log.txt fd is not marked as shared with the parent's: {all:?}"
    );

    let _ = restart_script_continues(&k);
    let log = fs::read_to_string(k.t.join("log.txt")).expect("log.txt");
    assert_eq!(sorted_lines(&log), expected_log, "log.txt (one offset shared by parent and child):\n{log}");
}

/// Restart the restarted computation: the recreated pipe and sockets are checkpointed again.
#[test]
fn restarted_pipes_checkpoint_again() {
    let k = launch_and_kcheckpoint("ipc-twice", "ipc", &["80"], 8);
    let mut r = restart_with(&k.t.path, std::process::Command::new(restart_script(&k.t.path)), "restart1");
    r.wait_lines(8);
    k.coord.kcheckpoint();
    let _ = r.proc.wait();
    reap_orphans();
    let second = r.out();

    let mut r2 = restart_with(&k.t.path, std::process::Command::new(restart_script(&k.t.path)), "restart2");
    assert_eq!(r2.wait_code(), 0, "second restart\n{}", r2.err());
    assert_concat(&format!("{}{second}", k.before), &r2.out(), &k.expected);
}

/// An event loop on epoll (watching a periodic timerfd and a signalfd) with an eventfd counter:
/// after the restart the new instances are in the old state (count, period, mask) and epoll
/// watches the same fds with the same user data.
#[test]
fn epoll_timerfd_eventfd_and_signalfd_continue() {
    roundtrip("anonfds", "anonfds", &["60"], 12);
}

/// TCP and UNIX listeners and connections between a parent and its child: data queued on the
/// connections at the checkpoint arrives after the restart, and connections made after the
/// restart reach the listeners, which are back at their old port and path.
#[test]
fn listeners_and_connections_between_processes_survive() {
    let k = launch_and_kcheckpoint("sockets", "sockets", &["25"], 8);
    assert!(k.expected.ends_with("got t 2 25\ngot d 2\nend\n"), "uninterrupted run:\n{}", k.expected);
    let all = fd_entries(&k.t.path, "sockets");
    // The TCP stream (one chunk) and the round's datagram.
    let queued_messages = all.iter().filter(|f| f["kind"] == "Socket").map(|f| f["queued_messages"].as_u64().unwrap_or(0)).sum::<u64>();
    assert!(queued_messages >= 2, "not both the TCP stream and the datagram are queued: {all:?}");
    let _ = restart_script_continues(&k);
}

/// A TCP connection between parent and child, full both ways (receive queues and send queues),
/// loses no byte: through the checkpoint the program goes on after (drained, then refilled),
/// and through the restart (the drained bytes are in the image).
#[test]
fn tcp_connection_full_both_ways_is_drained_and_refilled() {
    let t = TempDir::new("tcpflood");
    let prog = fixture("tcpflood");
    let expected = run_plain_bg(&prog, &["150"], &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &["150"]);
    run.wait_lines(25);
    coord.checkpoint();
    let code = run.wait_code();
    let (exp, exp_code) = expected.join().expect("uninterrupted run");
    assert!(exp.ends_with("150 ok\nchild exit=0\n") && exp_code == 0, "uninterrupted run:\n{exp}");
    assert_eq!((run.out(), code), (exp.clone(), 0), "the run that went on after the checkpoint\n--- stderr ---\n{}", run.err());
    let mut again = restart_with(&t.path, std::process::Command::new(restart_script(&t.path)), "restart");
    assert_eq!(again.wait_code(), 0, "the restart\n--- stdout ---\n{}--- stderr ---\n{}", again.out(), again.err());
    assert_continuation(&run.out(), &again.out(), &exp);
}

/// MAP_SHARED anonymous memory, a memfd and a file mapped by a parent and its child stay shared
/// after the restart: the two go on in lockstep through it (each with a copy, the parent would stop).
#[test]
fn shared_memory_between_parent_and_child_stays_shared() {
    let k = launch_and_kcheckpoint("shm", "shm", &["60"], 10);
    assert!(k.expected.ends_with("step 60\nmemfd 60\nmemfd fd 60\nfile 60\nfile read 60\n"), "uninterrupted run:\n{}", k.expected);
    let _ = restart_script_continues(&k);
}

/// A SysV shared memory segment between a parent and its child comes back as that segment:
/// the two count through it in lockstep, and at the end the parent attaches it again by its old
/// id, sees the same memory, and removes it (shmat, shmctl on the id work after the restart).
/// Restarted onto the segment the killed processes left, then onto one made again.
#[test]
fn sysv_shared_memory_segment_keeps_its_id() {
    let k = launch_and_kcheckpoint("sysvshm", "sysvshm", &["40"], 6);
    assert!(k.expected.ends_with("count 40\nreattach same=1 nattch=1 rmid=0\n"), "uninterrupted run:\n{}", k.expected);
    let id = fs::read_to_string(k.t.join("id.txt")).expect("id.txt");
    sysv_restarts_kept_then_removed(&k, &["-m", id.trim()]);
}

/// Restart the SysV objects' computation twice: once with the objects the killed processes
/// left (a restart killed half-way, which changes them), then after `ipcrm ipcrm_args`
/// removed them: the second restart makes them again under their old ids and goes on exactly
/// from the image, without a word about SysV objects.
fn sysv_restarts_kept_then_removed(k: &Killed, ipcrm_args: &[&str]) {
    let mut r = restart_with(&k.t.path, std::process::Command::new(restart_script(&k.t.path)), "restart-kept");
    r.wait_lines(4);
    r.kill();
    reap_orphans();
    let o = output("ipcrm", std::process::Command::new("ipcrm").args(ipcrm_args));
    assert!(o.status.success(), "ipcrm: {}", describe(&o));
    let err = restart_script_continues(k);
    assert!(!err.contains("SysV"), "{err}");
}

/// The pty fixture's flow: launch, checkpoint with -kc, restart script; output compared.
fn pty_roundtrip(name: &str, args: &[&str], min_lines: usize) {
    let _ = restart_script_continues(&launch_and_kcheckpoint(name, "pty", args, min_lines));
}

/// A parent driving its child through a pseudo-terminal: after the restart the child has a new
/// pty as its controlling terminal, stdin, stdout and stderr, with the old settings (echo off)
/// and window size, and is its foreground group.
#[test]
fn pseudo_terminal_between_parent_and_child_survives() {
    pty_roundtrip("pty", &["50"], 8);
}

/// The same with bash reading commands from the terminal (stty size and tty run in it).
#[test]
fn bash_in_a_pseudo_terminal_survives() {
    pty_roundtrip("pty-bash", &["30", "bash"], 6);
}

/// GNU screen (where DMTCP has trouble): `screen -D -m` with a job in its window. After the
/// checkpoint, kill and restart script, the job goes on where it was (no line lost or
/// repeated) and `screen -ls` still finds the session, detached, through its restored socket.
#[test]
fn gnu_screen_session_survives() {
    assert!(
        std::process::Command::new("screen").arg("-v").output().is_ok(),
        "GNU screen is not installed (apt-get install screen; .ci/run installs it)"
    );
    let t = TempDir::new("screen");
    let screendir = t.join("sockets");
    fs::create_dir_all(&screendir).expect("SCREENDIR");
    fs::set_permissions(&screendir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod SCREENDIR");
    fs::write(t.join("job.sh"), "for i in $(seq 1 80); do echo $i >> out.txt; sleep 0.05; done\n").expect("job.sh");
    let screendir_s = screendir.display().to_string();
    let env = vec![("SCREENDIR", screendir_s.clone())];
    let coord = Coord::start();
    let screen = std::path::Path::new("screen");
    let mut run = launch(
        &t.path,
        &LaunchOpts { port: Some(coord.port), env: env.clone(), ..Default::default() },
        screen,
        &["-D", "-m", "-S", "job", "bash", "job.sh"],
    );
    let lines = || fs::read_to_string(t.join("out.txt")).unwrap_or_default();
    let deadline = std::time::Instant::now() + TIMEOUT;
    while lines().lines().count() < 10 {
        assert!(std::time::Instant::now() < deadline && run.proc.running(), "the job in screen did not start:\n{}", run.err());
        std::thread::sleep(POLL);
    }
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();
    let mut c = std::process::Command::new(restart_script(&t.path));
    c.env("SCREENDIR", &screendir_s);
    let mut r = restart_with(&t.path, c, "restart");
    let ls = || {
        let o = std::process::Command::new("screen").arg("-ls").env("SCREENDIR", &screendir_s).output().expect("screen -ls");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // While the job runs: the session is listed, detached (screen keeps that in the socket's
    // mode), once the restarted screen listens again.
    let expected: String = (1..=80).map(|i| format!("{i}\n")).collect();
    let mut listed = ls();
    while !listed.contains("(Detached)") && lines() != expected && std::time::Instant::now() < deadline {
        std::thread::sleep(POLL);
        listed = ls();
    }
    assert!(listed.contains(".job") && listed.contains("(Detached)"), "screen -ls after the restart:\n{listed}");
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    assert_eq!(lines(), expected, "the job's output across the restart");
}

/// A POSIX message queue between a parent and its child, full at the checkpoint: after the
/// restart it has the same messages in the same order (priorities kept).
#[test]
fn posix_message_queue_keeps_its_messages() {
    let k = launch_and_kcheckpoint("mq", "mq", &["40"], 8);
    assert!(
        k.expected.starts_with("got first 5 prio 5\ngot first 4 prio 4\n") && k.expected.ends_with("got msg 40 prio 0\ndone\n"),
        "uninterrupted run:\n{}",
        k.expected
    );
    let all = fd_entries(&k.t.path, "mq");
    assert_eq!(all.iter().filter(|f| f["path"].as_str().is_some_and(|p| p.starts_with("/dmtcp-test-mq-"))).count(), 2, "{all:?}");
    let _ = restart_script_continues(&k);
}

/// SysV semaphores and a message queue between a parent and its child, with messages waiting
/// at the checkpoint. Restarted twice: once with the objects still there (the killed processes
/// leave them), once after they were removed (ipcrm): then they are made again under their old
/// ids, with the values and messages of the image.
#[test]
fn sysv_semaphores_and_message_queue_survive() {
    let k = launch_and_kcheckpoint("sysv", "sysv", &["30"], 6);
    assert!(k.expected.ends_with("got 1 m 30 sem=33,10\nend sem=33,10\n"), "uninterrupted run:\n{}", k.expected);
    let ids = fs::read_to_string(k.t.join("ids.txt")).expect("ids.txt");
    let (sem, q) = ids.trim().split_once(' ').expect("two ids");
    // A first restart killed half-way leaves the objects as that run changed them: the second
    // restart must not see those changes either.
    sysv_restarts_kept_then_removed(&k, &["-s", sem, "-q", q]);
}
