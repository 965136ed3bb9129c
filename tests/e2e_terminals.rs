//! Programs on a pseudo-terminal, driven through its master by the ptydrive fixture (a terminal
//! with a scripted user, part of the computation): dash and vim go on after checkpoint, kill and
//! restart, on a new terminal with the old settings and window size, and keystrokes typed after
//! the restart reach them.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The keystroke file ptydrive follows (see tests/fixtures/ptydrive.c).
struct Keys(PathBuf);

impl Keys {
    fn new(dir: &Path) -> Keys {
        Keys(dir.join("keys"))
    }

    fn record(&self, line: &str) {
        let mut f = fs::OpenOptions::new().create(true).append(true).open(&self.0).expect("keys file");
        // One write per record: ptydrive takes a record once its line is complete.
        f.write_all(format!("{line}\n").as_bytes()).expect("append to the keys file");
    }

    /// Type `bytes` on the terminal.
    fn typed(&self, bytes: &[u8]) {
        self.record(&format!("K {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()));
    }

    /// Resize the terminal's window (SIGWINCH for its foreground group).
    fn resize(&self, rows: u16, cols: u16) {
        self.record(&format!("W {rows} {cols}"));
    }
}

/// Wait until `cond` holds; fails the test after [`TIMEOUT`] or if `run` exits first.
fn wait_until(run: &mut Run, what: &str, cond: impl Fn(&Run) -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond(run) {
        if let Some(st) = run.proc.try_wait() {
            panic!("{} exited ({st}) before {what}\n--- stdout ---\n{}--- stderr ---\n{}", run.proc.name, run.out(), run.err());
        }
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}\n--- stdout ---\n{}--- stderr ---\n{}", run.out(), run.err());
        std::thread::sleep(POLL);
    }
}

fn installed(prog: &str) {
    assert!(
        std::process::Command::new(prog).arg("--version").output().is_ok(),
        "{prog} is not installed (apt-get install {prog}; .ci/run installs it)"
    );
}

/// dash running a loop on the terminal (`dash -c`), the window size and whether its stdin is a
/// terminal printed each round (stty and tty run in it): after the restart it goes on where it
/// was on a terminal of the same size, and the output is what an uninterrupted run prints.
#[test]
fn dash_loop_in_a_pseudo_terminal_survives() {
    let script = "i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo count $i $(stty size) $(tty -s && echo tty); sleep 0.05; done";
    let k = launch_and_kcheckpoint("pty-dash", "ptydrive", &["keys", "37", "101", "dash", "-c", script], 8);
    assert!(k.expected.ends_with("count 40 37 101 tty\n[exit 0]\n"), "uninterrupted run:\n{}", k.expected);
    let _ = restart_script_continues(&k);
}

/// vim editing a file on the terminal: text typed before the checkpoint (part written, part only
/// in the buffer) is there after the restart, keys typed after the restart are taken, the
/// window has its old size (stty size from vim), and a resize after the restart (SIGWINCH)
/// makes vim redraw its screen at the new size. `:wq` then writes all of it.
#[test]
fn vim_in_a_pseudo_terminal_survives_and_redraws_after_a_resize() {
    installed("vim");
    let t = TempDir::new("pty-vim");
    let coord = Coord::start();
    let args = ["keys", "37", "101", "vim", "-u", "NONE", "-i", "NONE", "-n", "-N", "notes.txt"];
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &fixture("ptydrive"), &args);
    let keys = Keys::new(&t.path);
    let notes = || fs::read_to_string(t.join("notes.txt")).unwrap_or_default();
    wait_for_output(&mut run, "\"notes.txt\"");
    keys.typed(b"ibefore the checkpoint\x1b:w\r");
    wait_until(&mut run, "vim writes notes.txt", |_| notes() == "before the checkpoint\n");
    keys.typed(b"oalso before, not saved\x1b");
    wait_for_output(&mut run, "not saved");
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();

    let mut r = run_restart_script(&t.path);
    keys.typed(b":put =system('stty size </dev/tty')\r");
    wait_until(&mut r, "vim shows the window size after the restart", |r| r.out().contains("37 101"));
    let shown = r.out().len();
    keys.resize(30, 90);
    // The whole screen drawn again, from its first line.
    wait_until(&mut r, "vim redraws after the resize", |r| r.out().get(shown..).is_some_and(|s| s.contains("before the checkpoint")));
    keys.typed(b":put ='resized '.&lines.'x'.&columns\r:put =system('stty size </dev/tty')\roafter the restart\x1b:wq\r");
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    assert!(r.out().ends_with("[exit 0]\n"), "vim did not exit 0:\n{}", r.out());
    assert_eq!(notes(), "before the checkpoint\nalso before, not saved\n37 101\nresized 30x90\n30 90\nafter the restart\n");
}

/// `prog args` started in `dir` without DMTCP, stdout and stderr to `dir/plain.out|.err`.
fn start_plain(dir: &Path, prog: &Path, args: &[&str]) -> Run {
    let (stdout, stderr) = (dir.join("plain.out"), dir.join("plain.err"));
    let mut c = std::process::Command::new(prog);
    c.args(args).current_dir(dir).stdout(fs::File::create(&stdout).expect("plain.out")).stderr(fs::File::create(&stderr).expect("plain.err"));
    Run { proc: spawn("uninterrupted run", &mut c), stdout, stderr }
}

/// The typed-ahead session of ptydrive running dash in `dir`: a loop that waits for the file
/// `go` and then reads three lines; two and a half typed while it waits; then `between(run)`
/// gives the run that goes on (the same, or the restart after a checkpoint); the rest of the
/// third line typed, `go` made. Returns the run, which ends by itself.
fn typeahead_session(dir: &Path, mut run: Run, between: impl FnOnce(Run) -> Run) -> Run {
    let keys = Keys::new(dir);
    wait_for_output(&mut run, "$ ");
    keys.typed(b"while [ ! -e go ]; do sleep 0.05; done; read a; read b; read c; echo \"<$a> <$b> <$c>\"; exit\n");
    wait_for_output(&mut run, "exit\n");
    keys.typed(b"first line\nsecond line\npar");
    wait_for_output(&mut run, "second line\npar");
    let mut run = between(run);
    keys.typed(b"tial\n");
    wait_until(&mut run, "the rest of the line is echoed", |r| r.out().ends_with("tial\n"));
    fs::write(dir.join("go"), "").expect("create go");
    run
}

/// Keys typed ahead while the program on the terminal does not read it (interactive dash busy
/// in a loop until a file appears): two lines and the start of a third, echoed once when typed.
/// The image holds them; after the restart dash reads them line by line, the third completed by
/// keys typed after the restart, and nothing is echoed a second time: the output is what an
/// uninterrupted run of the same session prints.
#[test]
fn keys_typed_ahead_survive_in_the_terminal_input_queue() {
    let args = ["keys", "24", "80", "dash"];
    let drive = fixture("ptydrive");
    let t = TempDir::new("pty-typeahead");
    let plain = t.subdir("plain");
    let mut p = typeahead_session(&plain, start_plain(&plain, &drive, &args), |r| r);
    assert_eq!(p.wait_code(), 0, "uninterrupted run\n{}", p.err());
    let expected = p.out();
    assert!(expected.ends_with("<first line> <second line> <partial>\n[exit 0]\n"), "uninterrupted run:\n{expected}");

    let coord = Coord::start();
    let run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &drive, &args);
    let mut before = String::new();
    let mut r = typeahead_session(&t.path, run, |mut run| {
        coord.kcheckpoint();
        let _ = run.proc.wait();
        reap_orphans();
        before = run.out();
        let input: u64 = images(&t.path, "ptydrive")
            .iter()
            .flat_map(|i| inspect_json(i)["pty_input"].as_array().cloned().unwrap_or_default())
            .map(|p| p["bytes"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(input, "first line\nsecond line\npar".len() as u64, "the input queued at the checkpoint, in the image");
        run_restart_script(&t.path)
    });
    assert_eq!(r.wait_code(), 0, "the restart script\n{}", r.err());
    assert_concat(&before, &r.out(), &expected);
}
