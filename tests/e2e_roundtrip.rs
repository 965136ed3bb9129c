//! The basic round trip with DMTCP's command names: launch, checkpoint, kill, restart, and the
//! output continues exactly where the checkpoint was taken. Covers the default port (7779) with an
//! automatically started coordinator, the checkpoint directory options, gzip and raw images, and
//! periodic checkpoints.

mod common;

use common::*;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LINES: &str = "100"; // 100 lines, 50 ms apart: ~5 s

/// Kills, when dropped, a coordinator that dmtcp_launch or dmtcp_restart started by itself on
/// `port` (it is re-parented to this process, a subreaper).
struct AutoCoord {
    port: u16,
}

impl AutoCoord {
    fn quit(&self) {
        let o = command(self.port, &["-q"]);
        let _ = o;
        let deadline = Instant::now() + Duration::from_secs(10);
        while port_in_use(self.port) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for AutoCoord {
    fn drop(&mut self) {
        if port_in_use(self.port) {
            self.quit();
        }
        kill_our_coordinators(self.port);
    }
}

/// SIGKILL every dmtcp_coordinator among our children whose command line names `port`.
fn kill_our_coordinators(port: u16) {
    let p = port.to_string();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
        let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|s| s.parse::<u32>().ok());
        if ppid != Some(std::process::id()) {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let is_coord = args.first().is_some_and(|a| a.ends_with("dmtcp_coordinator"));
        let on_port = args.contains(&p) || (port == 7779 && !args.iter().any(|a| a == "--port" || a == "-p"));
        if is_coord && on_port {
            // SAFETY: kill(2) on a child of ours.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    reap_orphans();
}

/// The flow shared by most tests here: `counter 100` under dmtcp_launch, checkpoint with
/// `dmtcp_command -bc` once 5 lines are out, check the image in `ckdir`, SIGKILL, restart with
/// `restart_cmd(image)`, and compare with an uninterrupted run. Returns the image path.
fn counter_flow(
    t: &TempDir,
    o: &LaunchOpts,
    ckdir: &Path,
    checkpoint: impl FnOnce(),
    restart_cmd: impl FnOnce(&Path) -> Command,
) -> std::path::PathBuf {
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let mut run = launch(&t.path, o, &prog, &[LINES]);
    run.wait_lines(5);
    checkpoint();
    // -bc returns once the images and the restart script are written.
    let img = image(ckdir, "counter");
    restart_script(ckdir);
    run.kill();
    let before = run.out();
    let mut r = restart_with(&t.path, restart_cmd(&img), "restart");
    let code = r.wait_code();
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(code, 0, "restart exit code\n--- restart stderr ---\n{}", r.err());
    assert_continuation(&before, &r.out(), &exp);
    img
}

fn restart_cmd(port: Option<u16>) -> impl FnOnce(&Path) -> Command {
    move |img| {
        let mut c = dmtcp(RESTART);
        if let Some(p) = port {
            c.arg("--coord-port").arg(p.to_string());
        }
        c.arg(img);
        c
    }
}

/// (a) No coordinator running: dmtcp_launch starts one on 7779; `dmtcp_command --bcheckpoint`
/// with no port; `dmtcp_restart ckpt_counter_*.dmtcp` with no port.
#[test]
fn default_port_7779_auto_coordinator() {
    // The only test that uses the fixed port: serialized across threads and test binaries.
    let _lock = GlobalLock::take("port-7779");
    let deadline = Instant::now() + TIMEOUT;
    while port_in_use(7779) {
        assert!(Instant::now() < deadline, "something keeps listening on port 7779; this test needs it free");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _coord = AutoCoord { port: 7779 };
    let t = TempDir::new("default-port");
    let dir = t.path.clone();
    let img = counter_flow(
        &t,
        &LaunchOpts::default(),
        &dir,
        || {
            let o = output("dmtcp_command --bcheckpoint", dmtcp(COMMAND).arg("--bcheckpoint"));
            assert!(o.status.success(), "dmtcp_command --bcheckpoint failed: {}", describe(&o));
        },
        restart_cmd(None),
    );
    let name = img.file_name().and_then(|n| n.to_str()).expect("image name");
    assert!(name.starts_with("ckpt_counter_") && name.ends_with(".dmtcp"), "{name}");
    // The auto-started coordinator runs with --exit-on-last, so it may be gone already; quit it
    // in case it is not, and the port must be free afterwards.
    _coord.quit();
    assert!(!port_in_use(7779), "the coordinator on 7779 did not quit");
}

/// (b) --ckptdir on dmtcp_launch; restart through ./dmtcp_restart_script.sh -p PORT.
#[test]
fn ckptdir_option_and_restart_script() {
    let t = TempDir::new("ckptdir-opt");
    let ck = t.subdir("ckpt");
    let coord = Coord::start();
    let ck_s = ck.to_str().expect("utf-8 path").to_string();
    let o = LaunchOpts { port: Some(coord.port), opts: vec!["--ckptdir", &ck_s], ..Default::default() };
    let port = coord.port;
    let ck2 = ck.clone();
    counter_flow(
        &t,
        &o,
        &ck,
        || coord.checkpoint(),
        move |_img| {
            // Literally `cd CKPTDIR && ./dmtcp_restart_script.sh -p PORT`; exec keeps the pid.
            let mut c = dmtcp("/bin/sh");
            c.args(["-c", "cd \"$1\" && exec ./dmtcp_restart_script.sh -p \"$2\"", "sh"]).arg(&ck2).arg(port.to_string());
            c
        },
    );
    assert!(images(&t.path, "counter").is_empty(), "an image was written into the cwd despite --ckptdir");
}

/// (b) DMTCP_CHECKPOINT_DIR; restart through the script with --coord-port.
#[test]
fn checkpoint_dir_env_and_restart_script() {
    let t = TempDir::new("ckptdir-env");
    let ck = t.subdir("ckpt-env");
    let coord = Coord::start();
    let o = LaunchOpts {
        port: Some(coord.port),
        env: vec![("DMTCP_CHECKPOINT_DIR", ck.to_str().expect("utf-8 path").to_string())],
        ..Default::default()
    };
    let port = coord.port;
    let script = ck.join("dmtcp_restart_script.sh");
    counter_flow(
        &t,
        &o,
        &ck,
        || coord.checkpoint(),
        move |_img| {
            // Run it by absolute path from another directory: it must not depend on the cwd.
            let mut c = dmtcp(script.to_str().expect("utf-8 path"));
            c.arg("--coord-port").arg(port.to_string());
            c
        },
    );
    assert!(images(&t.path, "counter").is_empty(), "an image was written into the cwd despite DMTCP_CHECKPOINT_DIR");
}

fn compression_case(name: &str, opts: Vec<&str>, env: Vec<(&str, String)>, want_gzip: bool) {
    let t = TempDir::new(name);
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), opts, env, ..Default::default() };
    let dir = t.path.clone();
    let seen = std::cell::Cell::new(None);
    counter_flow(
        &t,
        &o,
        &dir,
        || {
            coord.checkpoint();
            let img = image(&dir, "counter");
            seen.set(Some((is_gzip(&img), is_raw(&img), magic(&img))));
        },
        restart_cmd(Some(coord.port)),
    );
    let (gz, raw, m) = seen.take().expect("checked the image");
    if want_gzip {
        assert!(gz, "{name}: the image is not gzip (first bytes {m:02x?})");
    } else {
        assert!(raw, "{name}: the image is not raw DMTCPRS (first bytes {m:02x?})");
    }
}

/// (c) Images are gzip by default and restart.
#[test]
fn gzip_image_by_default() {
    compression_case("gzip-default", vec![], vec![], true);
}

/// (c) --no-gzip writes a raw image, which restarts.
#[test]
fn no_gzip_option_writes_raw_image() {
    compression_case("no-gzip", vec!["--no-gzip"], vec![], false);
}

/// (c) DMTCP_GZIP=0 writes a raw image, which restarts.
#[test]
fn dmtcp_gzip_0_writes_raw_image() {
    compression_case("gzip-env-0", vec![], vec![("DMTCP_GZIP", "0".to_string())], false);
}

fn interval_flow(t: &TempDir, o: &LaunchOpts, port: u16) {
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let mut run = launch(&t.path, o, &prog, &[LINES]);
    // No dmtcp_command at all: the interval alone must produce an image (and the script).
    let img = wait_for_image(&t.path, "counter", &mut run);
    let deadline = Instant::now() + TIMEOUT;
    while !t.join("dmtcp_restart_script.sh").exists() {
        assert!(Instant::now() < deadline, "no dmtcp_restart_script.sh after a periodic checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill();
    let before = run.out();
    let mut r = restart(&t.path, Some(port), &[], &img, "restart");
    let code = r.wait_code();
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(code, 0, "restart exit code\n--- restart stderr ---\n{}", r.err());
    assert_continuation(&before, &r.out(), &exp);
}

/// (d) `dmtcp_launch --interval 1` (starting its own coordinator) checkpoints with no command.
#[test]
fn interval_on_launch() {
    let t = TempDir::new("interval-launch");
    let port = free_port();
    let _auto = AutoCoord { port };
    let o = LaunchOpts { port: Some(port), opts: vec!["--interval", "1"], ..Default::default() };
    interval_flow(&t, &o, port);
}

/// (d) `dmtcp_coordinator --interval 1` checkpoints its computation with no command.
#[test]
fn interval_on_coordinator() {
    let t = TempDir::new("interval-coord");
    let coord = Coord::start_with(&["--interval", "1"]);
    let o = LaunchOpts { port: Some(coord.port), ..Default::default() };
    interval_flow(&t, &o, coord.port);
}

/// DMTCP job-script options of dmtcp_launch: `--new-coordinator --coord-port 0 --port-file F`
/// starts a coordinator on a free port and writes it to F; `-v` says which coordinator and
/// libraries the program gets; `--rm` is accepted with a note.
#[test]
fn launch_port_file_verbose_and_rm() {
    let t = TempDir::new("port-file");
    let prog = fixture("counter");
    let port_file = t.join("port");
    let pf = port_file.display().to_string();
    let o = LaunchOpts { port: Some(0), opts: vec!["-v", "--rm", "--new-coordinator", "--port-file", &pf], ..Default::default() };
    let mut run = launch(&t.path, &o, &prog, &[LINES]);
    run.wait_lines(3);
    let port: u16 = fs::read_to_string(&port_file).expect("port file").trim().parse().expect("a port number");
    let _auto = AutoCoord { port };
    let status = command(port, &["-s"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("NUM_PEERS=1"), "{}", describe(&status));
    let err = run.err();
    assert!(err.contains(&format!("coordinator localhost:{port}")) && err.contains("libdmtcp.so"), "-v output:\n{err}");
    assert!(err.contains("--rm"), "--rm note:\n{err}");
    command(port, &["-k"]);
    let _ = run.proc.wait();
}

/// `--gzip` asks for gzip images even where the environment says DMTCP_GZIP=0.
#[test]
fn gzip_option_overrides_dmtcp_gzip_0() {
    compression_case("gzip-option", vec!["--gzip"], vec![("DMTCP_GZIP", "0".to_string())], true);
}

/// `--disable-unique-checkpoint-filenames` after `--enable-...`: two checkpoints write one
/// image under the name without a generation, and it restarts.
#[test]
fn disable_unique_checkpoint_filenames() {
    let t = TempDir::new("no-unique");
    let coord = Coord::start();
    let o = LaunchOpts {
        port: Some(coord.port),
        opts: vec!["--enable-unique-checkpoint-filenames", "--disable-unique-checkpoint-filenames"],
        ..Default::default()
    };
    let dir = t.path.clone();
    let img = counter_flow(
        &t,
        &o,
        &dir,
        || {
            coord.checkpoint();
            let first = image(&dir, "counter");
            coord.checkpoint();
            assert_eq!(images(&dir, "counter"), vec![first], "the second checkpoint wrote another image: {:?}", listing(&dir));
        },
        restart_cmd(Some(coord.port)),
    );
    let name = img.file_name().and_then(|n| n.to_str()).expect("image name");
    let id = name.strip_prefix("ckpt_counter_").and_then(|r| r.strip_suffix(".dmtcp")).expect("ckpt_counter_*.dmtcp");
    assert!(!id.contains('_'), "the image name carries a generation: {name}");
}

/// The environment of the one process that carries `marker` (KEY=value), as KEY=value strings.
fn environment_of_marked(marker: &str) -> Vec<String> {
    let pids = processes_with_env(marker);
    assert_eq!(pids.len(), 1, "processes with {marker}: {pids:?}");
    let env = fs::read(format!("/proc/{}/environ", pids[0])).unwrap_or_default();
    env.split(|b| *b == 0).map(|kv| String::from_utf8_lossy(kv).into_owned()).collect()
}

/// `--coord-host 127.0.0.1` wins over DMTCP_COORD_HOST (here a name that does not resolve), and
/// the program is told that host.
#[test]
fn coord_host_option() {
    let t = TempDir::new("coord-host");
    let coord = Coord::start();
    let (key, value) = unique_marker();
    let marker = format!("{key}={value}");
    let o = LaunchOpts {
        port: Some(coord.port),
        opts: vec!["--coord-host", "127.0.0.1"],
        env: vec![("DMTCP_COORD_HOST", "no-such-host.invalid".to_string()), (key.as_str(), value.clone())],
        ..Default::default()
    };
    let dir = t.path.clone();
    counter_flow(
        &t,
        &o,
        &dir,
        || {
            let env = environment_of_marked(&marker);
            assert!(env.iter().any(|kv| kv == "DMTCP_COORD_HOST=127.0.0.1"), "the program's environment: {env:?}");
            coord.checkpoint();
        },
        restart_cmd(Some(coord.port)),
    );
}

/// DMTCP_COORD_PORT in dmtcp_launch's environment instead of --coord-port: the program joins
/// the coordinator on that port (were it ignored, dmtcp_launch would start one on 7779, so the
/// test holds the 7779 lock and cleans up there).
#[test]
fn coord_port_from_environment() {
    let _lock = GlobalLock::take("port-7779");
    let _guard = AutoCoord { port: 7779 };
    let t = TempDir::new("coord-port-env");
    let coord = Coord::start();
    let o = LaunchOpts { port: None, env: vec![("DMTCP_COORD_PORT", coord.port.to_string())], ..Default::default() };
    let dir = t.path.clone();
    // Had the variable been ignored, the program would have joined 7779 and -bc here found no peer.
    counter_flow(&t, &o, &dir, || coord.checkpoint(), restart_cmd(Some(coord.port)));
}

/// `-q`: dmtcp_launch and the program's libdmtcp.so print nothing (not even the --rm note).
#[test]
fn quiet_launch_prints_nothing() {
    let t = TempDir::new("quiet-launch");
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), opts: vec!["-q", "--rm"], ..Default::default() };
    let dir = t.path.clone();
    counter_flow(&t, &o, &dir, || coord.checkpoint(), restart_cmd(Some(coord.port)));
    let err = fs::read_to_string(t.join("launch.err")).unwrap_or_default();
    assert!(err.is_empty(), "dmtcp_launch -q printed on stderr:\n{err}");
}

/// `dmtcp_restart --new-coordinator`: with a coordinator already on the port, one line and exit
/// 99 (nothing restored); on a free port it starts one and the program continues.
#[test]
fn restart_new_coordinator() {
    let t = TempDir::new("restart-new");
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[LINES]);
    run.wait_lines(5);
    coord.checkpoint();
    let img = image(&t.path, "counter");
    run.kill();
    let before = run.out();

    let mut r = restart(&t.path, Some(coord.port), &["--new-coordinator"], &img, "refused");
    assert_eq!(r.wait_code(), 99, "--new-coordinator with a coordinator on the port\n{}", r.err());
    let err = r.err();
    assert_eq!(err.lines().count(), 1, "want one line:\n{err}");
    assert!(err.contains("already running"), "{err}");
    assert!(r.out().is_empty(), "something was restored:\n{}", r.out());

    let port = free_port();
    let _auto = AutoCoord { port };
    let mut r = restart(&t.path, Some(port), &["--new-coordinator"], &img, "restart");
    let code = r.wait_code();
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(code, 0, "--new-coordinator on a free port\n{}", r.err());
    assert_continuation(&before, &r.out(), &exp);
}

/// `dmtcp_restart --restartdir DIR NAME`: the images moved to DIR, restarted by bare name from a
/// directory where they are not.
#[test]
fn restart_from_restartdir() {
    let t = TempDir::new("restartdir");
    let coord = Coord::start();
    let moved = t.subdir("moved");
    let o = LaunchOpts { port: Some(coord.port), ..Default::default() };
    let dir = t.path.clone();
    let port = coord.port;
    let m = moved.clone();
    counter_flow(
        &t,
        &o,
        &dir,
        || coord.checkpoint(),
        move |img| {
            let name = img.file_name().expect("image name").to_owned();
            fs::rename(img, m.join(&name)).expect("move the image");
            let mut c = dmtcp(RESTART);
            c.arg("--coord-port").arg(port.to_string()).arg("--restartdir").arg(&m).arg(name);
            c
        },
    );
    assert!(images(&t.path, "counter").is_empty(), "{:?}", listing(&t.path));
}

/// A raw image's checkpoint signal (header field).
fn image_ckpt_signal(img: &Path) -> u32 {
    let b = fs::read(img).expect("read image");
    dmtcp_layout::FileHeader::decode(&b).expect("raw image header").ckpt_signal
}

fn ckpt_signal_case(name: &str, opts: Vec<&str>, env: Vec<(&str, String)>) {
    let t = TempDir::new(name);
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), opts, env, ..Default::default() };
    let dir = t.path.clone();
    counter_flow(
        &t,
        &o,
        &dir,
        || {
            coord.checkpoint();
            assert_eq!(image_ckpt_signal(&image(&dir, "counter")), 10, "{name}: the checkpoint signal recorded in the image");
        },
        restart_cmd(Some(coord.port)),
    );
}

/// `--ckpt-signal 10` (SIGUSR1, which counter does not use): checkpoint and restart work with
/// it, and the image records it.
#[test]
fn ckpt_signal_option() {
    ckpt_signal_case("ckpt-signal", vec!["--ckpt-signal", "10", "--no-gzip"], vec![]);
}

/// DMTCP_SIGCKPT=10 does the same.
#[test]
fn dmtcp_sigckpt_env() {
    ckpt_signal_case("sigckpt-env", vec!["--no-gzip"], vec![("DMTCP_SIGCKPT", "10".to_string())]);
}

/// `dmtcp_launch --no-coordinator --interval 1`: no shared coordinator (nothing answers on the
/// default or any given port), yet the program checkpoints itself every second, and the image
/// restarts.
#[test]
fn no_coordinator_with_interval_checkpoints_itself() {
    let t = TempDir::new("no-coord");
    let port = free_port(); // for the restart's coordinator
    let _auto = AutoCoord { port };
    let o = LaunchOpts { port: Some(port), opts: vec!["--no-coordinator", "--interval", "1"], ..Default::default() };
    let prog = fixture("counter");
    let expected = run_plain_bg(&prog, &[LINES], &t.subdir("plain"));
    let mut run = launch(&t.path, &o, &prog, &[LINES]);
    let img = wait_for_image(&t.path, "counter", &mut run);
    assert!(!port_in_use(port), "--no-coordinator started or joined a coordinator on the given port {port}");
    run.kill();
    let before = run.out();
    let mut r = restart(&t.path, Some(port), &[], &img, "restart");
    let code = r.wait_code();
    let (exp, _) = expected.join().expect("uninterrupted run");
    assert_eq!(code, 0, "restart exit code\n--- restart stderr ---\n{}", r.err());
    assert_continuation(&before, &r.out(), &exp);
}
