//! Plugins: a third-party plugin written in C against include/dmtcp.h sees its events in order
//! across launch, checkpoint, kill, restart and exit, and its libc wrapper is called; the
//! shipped modify-env plugin updates the environment on restart; --disable-all-plugins.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn plugin(tag: &str) -> PathBuf {
    plugin_fixture("plugin_events", &format!("plugin_{tag}"), &[&format!("-DTAG=\"{tag}\"")])
}

fn wait_for_file_line(path: &Path, line: &str) {
    let deadline = Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(path).unwrap_or_default().lines().any(|l| l == line) {
        assert!(Instant::now() < deadline, "no line {line:?} in {} after {TIMEOUT:?}", path.display());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Two plugins loaded with `--with-plugin a:b`: INIT, the checkpoint's PRESUSPEND,
/// PRECHECKPOINT, RESUME and RUNNING, then (after kill -9 and restart) RESTART, RUNNING and
/// EXIT, each plugin in load order (reverse order before a checkpoint and at exit). Both wrap
/// puts(): every line the program prints passes through a's wrapper, then b's, before and
/// after the restart.
#[test]
fn events_in_order_and_wrappers_across_restart() {
    let t = TempDir::new("plugin-events");
    let app = fixture_against_header("plugin_app", "plugin_app", &[]);
    let expected = run_plain_bg(&app, &[], &t.subdir("plain"));
    let log = t.join("events.log");
    let plugins = format!("{}:{}", plugin("a").display(), plugin("b").display());
    let coord = Coord::start();
    let o = LaunchOpts {
        port: Some(coord.port),
        opts: vec!["--with-plugin", &plugins],
        env: vec![("PLUGIN_LOG", log.display().to_string())],
        ..Default::default()
    };
    let mut run = launch(&t.path, &o, &app, &[]);
    run.wait_lines(5);
    coord.checkpoint();
    // The RUNNING hooks follow the coordinator's go-ahead: wait for them before the kill.
    wait_for_file_line(&log, "b RUNNING");
    run.kill();
    let before = run.out();
    let mut r = restart(&t.path, Some(coord.port), &[], &image(&t.path, "plugin_app"), "restart");
    r.expect_exit(0);

    let (plain, _) = expected.join().expect("uninterrupted run");
    let wrapped: String = plain.lines().map(|l| format!("b:a:{l}\n")).collect();
    assert_continuation(&before, &r.out(), &wrapped);
    let events = std::fs::read_to_string(&log).expect("event log");
    let want = "a INIT\nb INIT\n\
                b PRESUSPEND\na PRESUSPEND\nb PRECHECKPOINT\na PRECHECKPOINT\n\
                a RESUME\nb RESUME\na RUNNING\nb RUNNING\n\
                a RESTART (restart)\nb RESTART (restart)\na RUNNING (restart)\nb RUNNING (restart)\n\
                b EXIT\na EXIT\n";
    assert_eq!(events, want, "plugin events");
}

/// `--modify-env`: a restart without dmtcp_env.txt keeps the checkpointed environment; with one
/// in the working directory, the restored program sees a value set (with quotes), a variable
/// unset (a name alone) and one expanded from a name the file set.
#[test]
fn modify_env_updates_the_environment_on_restart() {
    let t = TempDir::new("modify-env");
    let app = fixture_against_header("plugin_env", "plugin_env", &[]);
    let coord = Coord::start();
    let o = LaunchOpts {
        port: Some(coord.port),
        opts: vec!["--modify-env"],
        env: vec![("DMTCP_TEST_A", "old".into()), ("DMTCP_TEST_B", "kept".into())],
        ..Default::default()
    };
    let mut run = launch(&t.path, &o, &app, &[]);
    run.wait_lines(5);
    coord.checkpoint();
    run.kill();
    assert!(run.out().lines().all(|l| l.ends_with(" A=old B=kept C=-")), "launch output\n{}", run.out());
    let img = image(&t.path, "plugin_env");
    let lines = |out: &str, want: &str| {
        assert!(!out.is_empty() && out.lines().all(|l| l.ends_with(want)), "restart output should end every line with {want:?}\n{out}");
    };

    let mut r1 = restart(&t.path, Some(coord.port), &[], &img, "restart-no-file");
    r1.expect_exit(0);
    lines(&r1.out(), " A=old B=kept C=-");

    std::fs::write(
        t.join("dmtcp_env.txt"),
        "# set with quotes, unset, expand a name set above\n\
         DMTCP_TEST_A=\"new value\"\n\
         DMTCP_TEST_B\n\
         \n\
         DMTCP_TEST_C=$DMTCP_TEST_A-x   # trailing comment\n",
    )
    .expect("write dmtcp_env.txt");
    let mut r2 = restart(&t.path, Some(coord.port), &[], &img, "restart-file");
    r2.expect_exit(0);
    lines(&r2.out(), " A=new value B=- C=new value-x");
    assert_eq!(r1.out().lines().count(), r2.out().lines().count(), "both restarts continue from the same line");

    // dmtcp_restart run elsewhere: its own working directory's dmtcp_env.txt wins, and `$NAME`
    // reads dmtcp_restart's environment (DMTCP's restart-time environment).
    let elsewhere = t.subdir("elsewhere");
    std::fs::write(elsewhere.join("dmtcp_env.txt"), "DMTCP_TEST_A=$DMTCP_TEST_FROM_RESTART\n").expect("write dmtcp_env.txt");
    let mut c = dmtcp(RESTART);
    c.env("DMTCP_TEST_FROM_RESTART", "given-at-restart").arg("--coord-port").arg(coord.port.to_string()).arg(&img);
    let mut r3 = restart_with(&elsewhere, c, "restart-elsewhere");
    r3.expect_exit(0);
    lines(&r3.out(), " A=given-at-restart B=kept C=-");
}

/// `--disable-all-plugins` loads neither --with-plugin libraries nor modify-env: the program's
/// lines are not wrapped and no event is logged. A --with-plugin path that does not exist is a
/// one-line error with DMTCP's exit code.
#[test]
fn disable_all_plugins_and_bad_plugin_path() {
    let t = TempDir::new("no-plugins");
    let app = fixture_against_header("plugin_app", "plugin_app", &[]);
    let log = t.join("events.log");
    let a = plugin("a").display().to_string();
    let coord = Coord::start();
    let o = LaunchOpts {
        port: Some(coord.port),
        opts: vec!["--with-plugin", &a, "--modify-env", "--disable-all-plugins"],
        env: vec![("PLUGIN_LOG", log.display().to_string())],
        ..Default::default()
    };
    let mut run = launch(&t.path, &o, &app, &["5"]);
    run.expect_exit(0);
    assert_eq!(run.out(), "1\n2\n3\n4\n5\n");
    assert!(!log.exists(), "no plugin ran: {}", std::fs::read_to_string(&log).unwrap_or_default());

    // The same launch with the plugin: it runs (so the check above can fail).
    let o = LaunchOpts { log: "with", opts: vec!["--with-plugin", &a], ..o };
    let mut run = launch(&t.path, &o, &app, &["2"]);
    run.expect_exit(0);
    assert_eq!(run.out(), "a:1\na:2\n");
    assert_eq!(std::fs::read_to_string(&log).expect("event log"), "a INIT\na EXIT\n");

    let missing = t.join("libmissing.so").display().to_string();
    let o = LaunchOpts { log: "bad", opts: vec!["--with-plugin", &missing], env: vec![], ..o };
    let mut run = launch(&t.path, &o, &app, &["2"]);
    run.expect_exit(99);
    assert_eq!(run.err().lines().count(), 1, "one line: {}", run.err());
    assert!(run.err().contains("libmissing.so"), "{}", run.err());
}
