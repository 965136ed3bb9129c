//! dmtcp_coordinator and dmtcp_command end to end, with a fake worker speaking the protocol.
//!
//! Every test owns its coordinator (port 0 + --port-file, so parallel tests never collide) and
//! its temporary directory; guards kill and remove them even when an assertion fails.

use dmtcp_engine::protocol::{self, FromCoord, ToCoord};
use std::io::Read;
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

const COORD: &str = env!("CARGO_BIN_EXE_dmtcp_coordinator");
const CMD: &str = env!("CARGO_BIN_EXE_dmtcp_command");
const LONG: Duration = Duration::from_secs(30);

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("dmtcp-coord-test-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn wait_for_port_file(path: &Path) -> u16 {
    let deadline = Instant::now() + LONG;
    loop {
        if let Some(p) = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok()) {
            return p;
        }
        assert!(Instant::now() < deadline, "no port file {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A coordinator child, killed when dropped.
struct Coord {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Coord {
    fn start(extra: &[&str]) -> Coord {
        let dir = TempDir::new("coord");
        let pf = dir.0.join("port");
        let child = Command::new(COORD)
            .args(["--port", "0", "--port-file"])
            .arg(&pf)
            // A safety net against leaks, unless the test sets its own.
            .args(if extra.contains(&"--timeout") { &[][..] } else { &["--timeout", "120"][..] })
            .args(extra)
            .env_remove("DMTCP_CHECKPOINT_DIR")
            .env_remove("DMTCP_CHECKPOINT_INTERVAL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn dmtcp_coordinator");
        let mut c = Coord { child, port: 0, _dir: dir };
        c.port = wait_for_port_file(&pf);
        c
    }

    /// Wait (up to 30 s) for the coordinator to exit on its own; its exit code.
    fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(port: u16, args: &[&str]) -> Output {
    Command::new(CMD)
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .env_remove("DMTCP_COORD_HOST")
        .env_remove("DMTCP_COORD_PORT")
        .env_remove("DMTCP_FAIL_RC")
        .stdin(Stdio::null())
        .output()
        .expect("run dmtcp_command")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", stdout(o)))
}

/// How a fake worker answers DoCheckpoint.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// With an image (CheckpointDone).
    Image,
    /// It reports itself suspended, then nothing (as a process that dies while writing).
    Suspended,
    /// Nothing at all (as a process that exits before it stops).
    Nothing,
}

/// A fake libdmtcp checkpoint thread: joins, answers DoCheckpoint with an image file it creates
/// (after `delay`), and forwards every message it gets to `rx`.
struct Worker {
    stream: TcpStream,
    rx: Receiver<FromCoord>,
    answered: Arc<AtomicBool>,
}

impl Worker {
    fn join(port: u16, image_dir: &Path, prog: &str, interval: u32, delay: Duration) -> Worker {
        Self::join_with(port, image_dir, prog, interval, delay, Answer::Image)
    }

    fn join_with(port: u16, image_dir: &Path, prog: &str, interval: u32, delay: Duration, answer: Answer) -> Worker {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to coordinator");
        let hello =
            ToCoord::Hello { unique_pid: format!("{prog}-uid"), pid: 4242, prog: prog.into(), hostname: hostname(), restarted: false, interval };
        protocol::send(&mut stream, &hello).expect("send Hello");
        match protocol::recv::<_, FromCoord>(&mut stream).expect("Welcome") {
            FromCoord::Welcome { .. } => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
        let (tx, rx) = channel();
        let answered = Arc::new(AtomicBool::new(false));
        let mut r = stream.try_clone().expect("clone");
        let dir = image_dir.to_path_buf();
        let prog = prog.to_string();
        let flag = Arc::clone(&answered);
        std::thread::spawn(move || {
            while let Ok(msg) = protocol::recv::<_, FromCoord>(&mut r) {
                if let FromCoord::DoCheckpoint { generation, ref ckpt_dir } = msg {
                    let d = ckpt_dir.as_ref().map(PathBuf::from).unwrap_or_else(|| dir.clone());
                    let image = d.join(format!("ckpt_{prog}_{generation}.dmtcp"));
                    if answer == Answer::Suspended {
                        let _ = protocol::send(&mut r, &ToCoord::Suspended { generation, tcp: Vec::new() });
                    }
                    if answer == Answer::Image {
                        std::thread::sleep(delay);
                        let _ = std::fs::write(&image, b"fake image");
                        flag.store(true, Ordering::SeqCst);
                        let done = ToCoord::CheckpointDone { generation, image: image.to_string_lossy().into_owned(), error: None };
                        if protocol::send(&mut r, &done).is_err() {
                            break;
                        }
                    }
                }
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        Worker { stream, rx, answered }
    }

    /// The next message that matches, within 30 s.
    fn expect(&self, what: &str, pred: impl Fn(&FromCoord) -> bool) -> FromCoord {
        let deadline = Instant::now() + LONG;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(m) if pred(&m) => return m,
                Ok(_) => {}
                Err(e) => panic!("worker did not receive {what}: {e}"),
            }
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn hostname() -> String {
    dmtcp_rs::coordinator::local_hostname()
}

#[test]
fn status_and_list_text_and_json() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let out = command(coord.port, &["--status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("Coordinator:"), "{text}");
    assert!(text.contains(&format!("Port: {}", coord.port)), "{text}");
    assert!(text.contains("NUM_PEERS=0"), "{text}");

    let _w = Worker::join(coord.port, &images.0, "fakeprog", 0, Duration::ZERO);
    let text = stdout(&command(coord.port, &["-s"]));
    assert!(text.contains("Status..."), "{text}");
    assert!(text.contains("NUM_PEERS=1"), "{text}");
    assert!(text.contains("RUNNING=yes"), "{text}");
    assert!(text.contains("Checkpoint Interval: 0 (checkpoint on demand)"), "{text}");

    let out = command(coord.port, &["--status", "--json"]);
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["command"], "DMT_STATUS");
    assert_eq!(v["command_status"], "DMT_COORD_SUCCESS");
    assert_eq!(v["coordinator_port"], coord.port);
    assert_eq!(v["coordinator_host"], "localhost");
    assert_eq!(v["num_peers"], 1);
    assert_eq!(v["running"], true);
    assert_eq!(v["checkpoint_interval"], 0);

    // The old one-word form.
    let out = command(coord.port, &["l"]);
    assert!(out.status.success());
    assert!(stdout(&out).contains("fakeprog[4242]@"), "{}", stdout(&out));
    let v = json(&command(coord.port, &["--list", "--json"]));
    assert_eq!(v["command"], "DMT_LIST");
    assert_eq!(v["peers"][0]["prog"], "fakeprog");

    let out = command(coord.port, &["-i", "30"]);
    assert!(out.status.success());
    assert!(stdout(&command(coord.port, &["-s"])).contains("Checkpoint Interval: 30"));
    let v = json(&command(coord.port, &["--interval", "0", "--json"]));
    assert_eq!(v["command"], "DMT_INTERVAL");
    assert_eq!(v["checkpoint_interval"], 0);
}

#[test]
fn blocking_checkpoint_writes_the_restart_script() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "prog1", 0, Duration::from_millis(500));
    let out = command(coord.port, &["-bc", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(w.answered.load(Ordering::SeqCst), "-bc returned before the worker answered");
    let v = json(&out);
    assert_eq!(v["command"], "DMT_BLOCKING_CKPT");
    assert_eq!(v["command_status"], "DMT_COORD_SUCCESS");
    let image = images.0.join("ckpt_prog1_1.dmtcp");
    assert_eq!(v["images"][0], image.to_string_lossy().as_ref());

    match w.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. })) {
        FromCoord::DoCheckpoint { generation, ckpt_dir } => {
            assert_eq!(generation, 1);
            assert_eq!(ckpt_dir, None);
        }
        _ => unreachable!(),
    }
    w.expect("Resume", |m| *m == FromCoord::Resume);

    let script = images.0.join("dmtcp_restart_script.sh");
    let meta = std::fs::metadata(&script).expect("restart script exists");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(meta.permissions().mode() & 0o111, 0o111, "restart script is executable");
    let text = std::fs::read_to_string(&script).expect("read script");
    assert!(text.starts_with("#!/bin/sh"));
    assert!(text.contains("ckpt_prog1_1.dmtcp"), "{text}");
    assert!(text.contains("dmtcp_restart"), "{text}");

    // A second checkpoint: non-blocking, generation 2.
    let out = command(coord.port, &["--checkpoint"]);
    assert!(out.status.success(), "{}", stderr(&out));
    w.expect("DoCheckpoint 2", |m| matches!(m, FromCoord::DoCheckpoint { generation: 2, .. }));
    w.expect("Resume", |m| *m == FromCoord::Resume);
}

#[test]
fn ckptdir_is_sent_and_holds_the_script() {
    let ck = TempDir::new("ckptdir");
    let coord = Coord::start(&["--ckptdir", ck.0.to_str().expect("utf8 temp dir")]);
    let elsewhere = TempDir::new("img");
    let w = Worker::join(coord.port, &elsewhere.0, "p2", 0, Duration::ZERO);
    let out = command(coord.port, &["--bcheckpoint"]);
    assert!(out.status.success(), "{}", stderr(&out));
    match w.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. })) {
        FromCoord::DoCheckpoint { ckpt_dir, .. } => assert_eq!(ckpt_dir.as_deref(), ck.0.to_str()),
        _ => unreachable!(),
    }
    assert!(ck.0.join("dmtcp_restart_script.sh").exists());
    assert!(ck.0.join("ckpt_p2_1.dmtcp").exists());
}

#[test]
fn kcheckpoint_kills_the_workers() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "victim", 0, Duration::ZERO);
    let out = command(coord.port, &["-kc", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["command"], "DMT_KILL_AFTER_CKPT");
    w.expect("Kill", |m| *m == FromCoord::Kill);
    assert!(images.0.join("dmtcp_restart_script.sh").exists());
}

/// `--json` names each command as DMTCP does: DMT_CHECKPOINT for -c, DMT_KILL for -k and the old
/// `k`, DMT_KILL_AFTER_CKPT for the long --kcheckpoint; and a command against a closed port
/// reports DMT_COORD_NOT_RUNNING (still naming the command it was).
#[test]
fn json_command_names_and_statuses() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "named", 0, Duration::ZERO);
    let out = command(coord.port, &["-c", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["command"], "DMT_CHECKPOINT", "{v}");
    assert_eq!(v["command_status"], "DMT_COORD_SUCCESS", "{v}");
    w.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    w.expect("Resume", |m| *m == FromCoord::Resume);
    for form in ["-k", "k"] {
        let out = command(coord.port, &[form, "--json"]);
        assert!(out.status.success(), "{form}: {}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["command"], "DMT_KILL", "{form}: {v}");
        assert_eq!(v["command_status"], "DMT_COORD_SUCCESS", "{form}: {v}");
        w.expect("Kill", |m| *m == FromCoord::Kill);
    }

    // The long form of -kc: checkpoint (the worker writes its image), then kill.
    let coord2 = Coord::start(&[]);
    let w2 = Worker::join(coord2.port, &images.0, "longkc", 0, Duration::ZERO);
    let out = command(coord2.port, &["--kcheckpoint", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["command"], "DMT_KILL_AFTER_CKPT", "{v}");
    assert_eq!(v["command_status"], "DMT_COORD_SUCCESS", "{v}");
    assert_eq!(v["images"][0], images.0.join("ckpt_longkc_1.dmtcp").to_string_lossy().as_ref(), "{v}");
    w2.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    w2.expect("Kill", |m| *m == FromCoord::Kill);

    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed = l.local_addr().expect("addr").port();
    drop(l);
    for (args, name) in [
        (&["-s"][..], "DMT_STATUS"),
        (&["-c"][..], "DMT_CHECKPOINT"),
        (&["k"][..], "DMT_KILL"),
        (&["--quit"][..], "DMT_QUIT"),
        (&["-kc"][..], "DMT_KILL_AFTER_CKPT"),
    ] {
        let mut a = args.to_vec();
        a.push("--json");
        let out = command(closed, &a);
        assert_eq!(out.status.code(), Some(99), "{args:?} against a closed port");
        let v = json(&out);
        assert_eq!(v["schema_version"], 1, "{v}");
        assert_eq!(v["command"], name, "{args:?}: {v}");
        assert_eq!(v["command_status"], "DMT_COORD_NOT_RUNNING", "{args:?}: {v}");
        assert_eq!(v["coordinator_port"], closed, "{v}");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    }
}

#[test]
fn kill_sends_kill() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "victim", 0, Duration::ZERO);
    let out = command(coord.port, &["k"]);
    assert!(out.status.success(), "{}", stderr(&out));
    w.expect("Kill", |m| *m == FromCoord::Kill);
}

#[test]
fn interval_checkpoints() {
    // From dmtcp_command --interval.
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "ticker", 0, Duration::ZERO);
    assert!(command(coord.port, &["--interval", "1"]).status.success());
    w.expect("interval DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    w.expect("second interval DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { generation: 2, .. }));

    // From the coordinator's own flag.
    let coord2 = Coord::start(&["--interval", "1"]);
    let w2 = Worker::join(coord2.port, &images.0, "ticker2", 0, Duration::ZERO);
    w2.expect("interval DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));

    // Adopted from the worker's Hello (dmtcp_launch --interval).
    let coord3 = Coord::start(&[]);
    let w3 = Worker::join(coord3.port, &images.0, "ticker3", 1, Duration::ZERO);
    w3.expect("interval DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    assert!(stdout(&command(coord3.port, &["-s"])).contains("Checkpoint Interval: 1"));
}

#[test]
fn worker_request_checkpoint() {
    let coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let mut w = Worker::join(coord.port, &images.0, "self", 0, Duration::ZERO);
    protocol::send(&mut w.stream, &ToCoord::RequestCheckpoint).expect("send");
    w.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    w.expect("Resume", |m| *m == FromCoord::Resume);
}

#[test]
fn checkpoint_without_peers_and_failed_checkpoint() {
    let coord = Coord::start(&[]);
    let out = command(coord.port, &["-c", "--json"]);
    assert_eq!(out.status.code(), Some(99));
    assert_eq!(json(&out)["command_status"], "DMT_COORD_NO_PEERS");

    // A worker that vanishes mid-checkpoint (suspended, before its image) fails the checkpoint;
    // the others resume.
    let images = TempDir::new("img");
    let good = Worker::join(coord.port, &images.0, "good", 0, Duration::ZERO);
    let bad = Worker::join_with(coord.port, &images.0, "bad", 0, Duration::ZERO, Answer::Suspended);
    let port = coord.port;
    let bc = std::thread::spawn(move || command(port, &["-bc", "--json"]));
    bad.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    // The round waits for `bad`: not running, and a second request is refused.
    let v = json(&command(coord.port, &["-s", "--json"]));
    assert_eq!(v["running"], false);
    let out = command(coord.port, &["-c", "--json"]);
    assert_eq!(out.status.code(), Some(99));
    assert_eq!(json(&out)["command_status"], "DMT_COORD_BUSY");
    drop(bad);
    let out = bc.join().expect("dmtcp_command thread");
    assert_eq!(out.status.code(), Some(99), "{}", stdout(&out));
    assert_eq!(json(&out)["command_status"], "DMT_COORD_CKPT_FAILED");
    good.expect("Resume", |m| *m == FromCoord::Resume);
    assert!(!images.0.join("dmtcp_restart_script.sh").exists());
    // And the coordinator still works.
    assert!(stdout(&command(coord.port, &["-s"])).contains("NUM_PEERS=1"));

    // One that ends before it stops for the round (exit, exec) is just not in the checkpoint.
    let gone = Worker::join_with(coord.port, &images.0, "gone", 0, Duration::ZERO, Answer::Nothing);
    let bc = std::thread::spawn(move || command(port, &["-bc", "--json"]));
    gone.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    drop(gone);
    let out = bc.join().expect("dmtcp_command thread");
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    good.expect("Resume", |m| *m == FromCoord::Resume);
    assert!(images.0.join("dmtcp_restart_script.sh").exists());
}

#[test]
fn closed_port_unknown_flag_and_fail_rc() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let out = command(port, &["-s"]);
    assert_eq!(out.status.code(), Some(99));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.trim(), format!("dmtcp_command: coordinator not found at localhost:{port}"));

    let out = Command::new(CMD).args(["-p", &port.to_string(), "--status"]).env("DMTCP_FAIL_RC", "42").output().expect("run");
    assert_eq!(out.status.code(), Some(42));

    let out = Command::new(CMD).env("DMTCP_COORD_PORT", port.to_string()).arg("s").env_remove("DMTCP_FAIL_RC").output().expect("run");
    assert_eq!(out.status.code(), Some(99));
    assert!(stderr(&out).contains(&format!(":{port}")));

    let out = Command::new(CMD).arg("--no-such-flag").env_remove("DMTCP_FAIL_RC").output().expect("run");
    assert_eq!(out.status.code(), Some(99));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    let out = Command::new(COORD).arg("--no-such-flag").env_remove("DMTCP_FAIL_RC").output().expect("run");
    assert_eq!(out.status.code(), Some(99));
}

#[test]
fn quit_stops_the_coordinator() {
    let mut coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "q", 0, Duration::ZERO);
    let out = command(coord.port, &["-q", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["command"], "DMT_QUIT");
    w.expect("Kill", |m| *m == FromCoord::Kill);
    assert_eq!(coord.wait_exit(), Some(0));
}

#[test]
fn exit_on_last() {
    let mut coord = Coord::start(&["--exit-on-last"]);
    let images = TempDir::new("img");
    // Nobody joined yet: a command client coming and going changes nothing.
    assert!(command(coord.port, &["-s"]).status.success());
    std::thread::sleep(Duration::from_millis(200));
    assert!(coord.alive(), "exited before any process joined");
    let w1 = Worker::join(coord.port, &images.0, "a", 0, Duration::ZERO);
    let w2 = Worker::join(coord.port, &images.0, "b", 0, Duration::ZERO);
    drop(w1);
    assert!(stdout(&command(coord.port, &["-s"])).contains("NUM_PEERS=1"));
    assert!(coord.alive());
    drop(w2);
    assert_eq!(coord.wait_exit(), Some(0));
}

#[test]
fn exit_after_ckpt() {
    let mut coord = Coord::start(&["--exit-after-ckpt"]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "once", 0, Duration::ZERO);
    let out = command(coord.port, &["-bc"]);
    assert!(out.status.success(), "{}", stderr(&out));
    w.expect("Kill", |m| *m == FromCoord::Kill);
    assert_eq!(coord.wait_exit(), Some(0));
    assert!(images.0.join("dmtcp_restart_script.sh").exists());
}

/// Quits a daemon coordinator (we have no child handle for it).
struct DaemonGuard(u16);

impl Drop for DaemonGuard {
    fn drop(&mut self) {
        let _ = command(self.0, &["--quit"]);
    }
}

#[test]
fn daemon_with_port_file() {
    let dir = TempDir::new("daemon");
    let pf = dir.0.join("port");
    let log = dir.0.join("coord.log");
    // output() returns only once every holder of our pipes closed them: the daemon must not
    // keep them.
    let out = Command::new(COORD)
        .args(["--daemon", "--port", "0", "--timeout", "120", "--port-file"])
        .arg(&pf)
        .arg("--coord-logfile")
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .expect("run daemon");
    assert!(out.status.success(), "{}", stderr(&out));
    let port = wait_for_port_file(&pf);
    let _guard = DaemonGuard(port);
    let out = command(port, &["-s", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["num_peers"], 0);
    assert!(command(port, &["-q"]).status.success());
    let deadline = Instant::now() + LONG;
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "daemon still answers after --quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut text = String::new();
    std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text)).expect("log file");
    assert!(text.contains("listening on port"), "{text}");
}

#[test]
fn garbage_clients_are_dropped() {
    use std::io::Write;
    let coord = Coord::start(&[]);
    let mut s = TcpStream::connect(("127.0.0.1", coord.port)).expect("connect");
    let _ = s.write_all(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    drop(s);
    let mut s = TcpStream::connect(("127.0.0.1", coord.port)).expect("connect");
    let _ = s.write_all(&[3, 0, 0, 0, 0xff, 0xff, 0xff]);
    drop(s);
    assert!(command(coord.port, &["-s"]).status.success());
}

#[test]
fn ensure_coordinator_starts_and_joins() {
    use dmtcp_engine::protocol::{Command as C, CommandStatus};
    use dmtcp_rs::coord_client::{ensure_coordinator, send_command, CoordAddr, CoordError, CoordMode};
    // ensure_coordinator finds dmtcp_coordinator beside the running exe or on PATH; a test
    // binary lives in target/*/deps, so put the built commands on PATH.
    let bin_dir = Path::new(COORD).parent().expect("bin dir").to_path_buf();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin_dir];
    dirs.extend(std::env::split_paths(&path));
    std::env::set_var("PATH", std::env::join_paths(dirs).expect("PATH"));

    let addr = CoordAddr { host: "127.0.0.1".into(), port: 0 };
    let actual = ensure_coordinator(&addr, CoordMode::New, Some(7), None).expect("start coordinator");
    assert_ne!(actual.port, 0);
    let _guard = DaemonGuard(actual.port);
    let r = send_command(&actual, C::Status).expect("status");
    assert_eq!(r.status, CommandStatus::Success);
    assert_eq!(r.interval, 7);
    assert_eq!(ensure_coordinator(&actual, CoordMode::Join, None, None).expect("join"), actual);
    assert_eq!(ensure_coordinator(&actual, CoordMode::Default, None, None).expect("default"), actual);
    assert!(matches!(ensure_coordinator(&actual, CoordMode::New, None, None), Err(CoordError::AlreadyRunning { .. })));

    // Racing starters (one dmtcp_restart per image) all end up at the one coordinator.
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let fixed = CoordAddr { host: "localhost".into(), port };
    let _guard2 = DaemonGuard(port);
    let racers: Vec<_> = (0..3)
        .map(|_| {
            let a = fixed.clone();
            std::thread::spawn(move || ensure_coordinator(&a, CoordMode::Default, None, None))
        })
        .collect();
    for r in racers {
        let got = r.join().expect("racer thread").expect("ensure_coordinator");
        assert_eq!(got, fixed);
    }
    assert_eq!(send_command(&fixed, C::Status).expect("status").num_peers, 0);
    assert_eq!(send_command(&actual, C::Quit).expect("quit").status, CommandStatus::Success);
}

/// `--timeout S` ends an idle coordinator after S seconds; `--coord-logfile F` keeps its log.
#[test]
fn timeout_and_logfile() {
    let dir = TempDir::new("log");
    let log = dir.0.join("coord.log");
    let log_s = log.display().to_string();
    let mut coord = Coord::start(&["--timeout", "1", "--coord-logfile", &log_s]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "logged", 0, Duration::ZERO);
    drop(w);
    assert_eq!(coord.wait_exit(), Some(0), "--timeout 1 did not end the coordinator");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("logged") && text.contains("timeout"), "log file:\n{text}");
}

/// DMTCP's old one-letter forms: `dmtcp_command s`, `l`, `c`, `q`.
#[test]
fn one_letter_commands() {
    let mut coord = Coord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(coord.port, &images.0, "letters", 0, Duration::ZERO);
    assert!(stdout(&command(coord.port, &["s"])).contains("NUM_PEERS=1"));
    assert!(stdout(&command(coord.port, &["l"])).contains("letters"));
    assert!(command(coord.port, &["c"]).status.success());
    w.expect("DoCheckpoint", |m| matches!(m, FromCoord::DoCheckpoint { .. }));
    assert!(command(coord.port, &["q"]).status.success());
    assert_eq!(coord.wait_exit(), Some(0));
}

/// A coordinator whose controlling terminal (and stdin, stdout, stderr) is a pty; what it
/// prints arrives on `rx`, what is written to `master` is typed at its prompt.
struct PtyCoord {
    coord: Coord,
    master: std::fs::File,
    rx: Receiver<String>,
    /// Printed since the last key.
    seen: String,
    /// Printed since the start.
    log: String,
}

impl PtyCoord {
    fn start(extra: &[&str]) -> PtyCoord {
        use std::os::fd::OwnedFd;
        use std::os::unix::process::CommandExt;
        let dir = TempDir::new("tty");
        let pf = dir.0.join("port");
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let mut cmd = Command::new(COORD);
        cmd.args(["--port", "0", "--port-file"]).arg(&pf).args(["--timeout", "60"]).args(extra);
        cmd.stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave.try_clone().expect("dup")));
        // SAFETY: between fork and exec only setsid and ioctl, both async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn dmtcp_coordinator on a pty");
        drop(slave);
        let coord = Coord { child, port: wait_for_port_file(&pf), _dir: dir };
        let master = std::fs::File::from(pty.master);
        let (tx, rx) = channel::<String>();
        let mut reader = master.try_clone().expect("dup master");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(String::from_utf8_lossy(&buf[..n]).into_owned()).is_err() {
                    break;
                }
            }
        });
        PtyCoord { coord, master, rx, seen: String::new(), log: String::new() }
    }

    /// Wait until everything printed since the last [`PtyCoord::key`] contains each of `want`.
    fn until(&mut self, want: &[&str]) {
        let deadline = Instant::now() + LONG;
        while !want.iter().all(|w| self.seen.contains(w)) {
            match self.rx.recv_timeout(Duration::from_millis(100)) {
                Ok(s) => {
                    self.seen.push_str(&s);
                    self.log.push_str(&s);
                }
                Err(_) => assert!(Instant::now() < deadline, "the prompt never printed {want:?}; it printed:\n{}", self.seen),
            }
        }
    }

    /// Forget what was printed so far, then type `key` and Enter.
    fn key(&mut self, key: &str) {
        use std::io::Write;
        while let Ok(s) = self.rx.try_recv() {
            self.log.push_str(&s);
        }
        self.seen.clear();
        self.master.write_all(format!("{key}\n").as_bytes()).expect("write to the pty");
    }
}

/// On a terminal the coordinator reads DMTCP's one-letter commands: here a pty is its
/// controlling terminal. Before each key what was printed so far is forgotten, and each check
/// looks for text only that key's answer prints: `h` lists the commands, `s` and `l` answer,
/// `i` prints the interval, `c` checkpoints, `k` kills the computation, `q` quits.
#[test]
fn interactive_prompt_on_a_terminal() {
    let mut p = PtyCoord::start(&[]);
    let images = TempDir::new("img");
    let w = Worker::join(p.coord.port, &images.0, "prompted", 0, Duration::ZERO);
    // The start: the command list, the listening note, the join note (not --quiet).
    p.until(&["? : Show this message", "listening on port", "joined: prompted[4242]@"]);
    p.key("h");
    p.until(&["COMMANDS:", "c : Checkpoint all nodes", "? : Show this message"]);
    p.key("s");
    p.until(&["Status...", "NUM_PEERS=1", "RUNNING=yes", "Checkpoint Interval: 0 (checkpoint on demand)"]);
    p.key("l");
    // The unique pid and the state appear only in the list, not in the join note.
    p.until(&["Client List:", "1, prompted[4242]@", ", prompted-uid, "]);
    assert!(command(p.coord.port, &["-i", "17"]).status.success());
    p.key("i");
    p.until(&["Checkpoint Interval: 17"]);
    p.key("c");
    w.expect("DoCheckpoint", |msg| matches!(msg, FromCoord::DoCheckpoint { .. }));
    w.expect("Resume", |msg| *msg == FromCoord::Resume);
    p.key("k");
    w.expect("Kill", |msg| *msg == FromCoord::Kill);
    p.until(&["killing the computation"]);
    assert!(p.coord.alive(), "k quit the coordinator; it printed:\n{}", p.seen);
    p.key("q");
    assert_eq!(p.coord.wait_exit(), Some(0), "q on the prompt did not quit; it printed:\n{}", p.seen);
}

/// `--quiet` drops the coordinator's notes (listening, joins, kills) but not the prompt's
/// answers.
#[test]
fn quiet_prompt_prints_answers_only() {
    let mut p = PtyCoord::start(&["--quiet"]);
    let images = TempDir::new("img");
    let w = Worker::join(p.coord.port, &images.0, "hushed", 0, Duration::ZERO);
    p.until(&["? : Show this message"]);
    // The join note is printed before the worker counts as a peer: once `s` shows it, the note
    // would have been printed.
    p.key("s");
    p.until(&["NUM_PEERS=1", "Checkpoint Interval:"]);
    p.key("k");
    w.expect("Kill", |msg| *msg == FromCoord::Kill);
    p.key("l");
    p.until(&["Client List:", ", hushed-uid, "]);
    // The kill note comes before the Kill message, the list after it.
    for note in ["listening on port", "joined:", "killing the computation", "dmtcp_coordinator:"] {
        assert!(!p.log.contains(note), "--quiet printed {note:?}:\n{}", p.log);
    }
    p.key("q");
    assert_eq!(p.coord.wait_exit(), Some(0), "q on the prompt did not quit; it printed:\n{}", p.seen);
}
