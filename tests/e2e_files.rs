//! Files stay where they were: a file opened for writing, two descriptors opened with O_APPEND on
//! one file, and a file opened for reading continue at the right offsets after restart, so the
//! files' contents and everything printed equal an uninterrupted run's. The restarted process uses
//! dmtcp_restart's stdout: `dmtcp_restart IMG > log` and `dmtcp_restart IMG | reader` capture it.

mod common;

use common::*;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Stdio;

const FILES: [&str; 3] = ["out.txt", "append.txt", "input.txt"];
const STEPS: &str = "50"; // 60 ms apart: ~3 s

fn assert_same_files(got: &Path, want: &Path, when: &str) {
    for f in FILES {
        let g = fs::read_to_string(got.join(f)).unwrap_or_else(|e| panic!("{when}: read {}: {e}", got.join(f).display()));
        let w = fs::read_to_string(want.join(f)).unwrap_or_else(|e| panic!("{when}: read {}: {e}", want.join(f).display()));
        assert!(g == w, "{when}: {f} differs from the uninterrupted run's\n--- got ---\n{g}--- want ---\n{w}");
    }
}

fn snapshot(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("snapshot dir");
    for f in FILES {
        copy(&from.join(f), &to.join(f));
    }
}

#[test]
fn files_continue_at_their_offsets_stdout_to_file_and_pipe() {
    let t = TempDir::new("files");
    let prog = fixture("files");
    let plain = t.subdir("plain");
    let plain_s = plain.to_str().expect("utf-8 path").to_string();
    let expected = run_plain_bg(&prog, &[&plain_s, STEPS], &plain);

    let run_dir = t.subdir("run");
    let run_s = run_dir.to_str().expect("utf-8 path").to_string();
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, &[&run_s, STEPS]);
    run.wait_lines(10);
    // -kc: the program is killed while suspended, so the files are exactly as at the checkpoint.
    coord.kcheckpoint();
    let st = run.proc.wait();
    assert!(!st.success(), "the program survived dmtcp_command -kc: {st}");
    let before = run.out();
    let img = image(&t.path, "files");
    let at_ckpt = t.join("at-checkpoint");
    snapshot(&run_dir, &at_ckpt);
    let (exp, exp_code) = expected.join().expect("uninterrupted run");
    assert_eq!(exp_code, 0, "uninterrupted run failed:\n{exp}");

    // 1. `dmtcp_restart IMG > log` through a shell: the restored program writes into log.
    let log = t.join("restart-shell.log");
    let mut c = dmtcp("/bin/sh");
    c.args(["-c", "exec \"$0\" --coord-port \"$1\" \"$2\" > \"$3\"", RESTART]).arg(coord.port.to_string()).arg(&img).arg(&log);
    let mut r = restart_with(&t.path, c, "restart-shell");
    let code = r.wait_code();
    assert_eq!(code, 0, "restart exit code\n--- stderr ---\n{}", r.err());
    let after = fs::read_to_string(&log).expect("restart log");
    assert_same_files(&run_dir, &plain, "after restart with stdout redirected to a file");
    assert_concat(&drop_first(&before), &after, &drop_first(&exp));

    // 2. The same image again, files put back as they were at the checkpoint, stdout a pipe.
    snapshot(&at_ckpt, &run_dir);
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(coord.port.to_string()).arg(&img).current_dir(&t.path).stdout(Stdio::piped());
    c.stderr(fs::File::create(t.join("restart-pipe.err")).expect("stderr file"));
    let mut p = spawn("dmtcp_restart | pipe", &mut c);
    let mut pipe = p.take_stdout().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = pipe.read_to_string(&mut s);
        s
    });
    let code = p.wait_code();
    let after = reader.join().expect("pipe reader");
    let err = fs::read_to_string(t.join("restart-pipe.err")).unwrap_or_default();
    assert_eq!(code, 0, "restart (pipe) exit code\n--- stderr ---\n{err}");
    assert_same_files(&run_dir, &plain, "after restart with stdout to a pipe");
    assert_concat(&drop_first(&before), &after, &drop_first(&exp));

    // Checked last, so that the offsets above are checked whatever happens here: the program
    // sees the same descriptor numbers as without DMTCP (libdmtcp keeps its own descriptors out
    // of the application's way, as DMTCP does).
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    assert_eq!(first(&before), first(&exp), "the program's open() returned other descriptor numbers under dmtcp_launch than without it");
}

/// Everything after the first line (the descriptor numbers, compared separately).
fn drop_first(s: &str) -> String {
    s.split_once('\n').map(|(_, rest)| rest.to_string()).unwrap_or_default()
}

/// `dmtcp_launch --ckpt-open-files` saves the open files beside the image: a file deleted after
/// the checkpoint is put back at restart. With `--allow-file-overwrite` too, a file changed after
/// the checkpoint is put back as it was; without it, an existing file is left alone.
#[test]
fn ckpt_open_files_puts_files_back() {
    let t = TempDir::new("open-files");
    let prog = fixture("files");
    let plain = t.subdir("plain");
    let plain_s = plain.to_str().expect("utf-8 path").to_string();
    let (exp, exp_code) = run_plain(&prog, &[&plain_s, STEPS], &plain);
    assert_eq!(exp_code, 0, "uninterrupted run failed:\n{exp}");
    for (case, opts) in [("deleted", vec!["--ckpt-open-files"]), ("changed", vec!["--ckpt-open-files", "--allow-file-overwrite"])] {
        let dir = t.subdir(case);
        let dir_s = dir.to_str().expect("utf-8 path").to_string();
        let coord = Coord::start();
        let o = LaunchOpts { port: Some(coord.port), opts: opts.clone(), log: case, ..Default::default() };
        let mut run = launch(&dir, &o, &prog, &[&dir_s, STEPS]);
        run.wait_lines(10);
        coord.kcheckpoint();
        let _ = run.proc.wait();
        let before = run.out();
        let img = image(&dir, "files");
        let saved = dmtcp_engine::meta::saved_files_dir(&img);
        assert!(saved.is_dir(), "{case}: no saved files beside the image: {:?}", listing(&dir));
        let input = dir.join("input.txt");
        if case == "deleted" {
            fs::remove_file(&input).expect("delete input.txt");
        } else {
            let len = fs::metadata(&input).expect("input.txt").len() as usize;
            fs::write(&input, "x".repeat(len)).expect("change input.txt");
        }
        let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(p).expect("out.txt"));
        let out_before = inode(&dir.join("out.txt"));
        let mut r = restart(&dir, Some(coord.port), &[], &img, "restart");
        assert_eq!(r.wait_code(), 0, "{case}: restart\n{}", r.err());
        // out.txt existed at restart: replaced only with --allow-file-overwrite.
        assert_eq!(inode(&dir.join("out.txt")) == out_before, case == "deleted", "{case}: out.txt replaced or not");
        assert_same_files(&dir, &plain, case);
        assert_concat(&drop_first(&before), &r.out(), &drop_first(&exp));
    }
}

/// dmtcp_restart on a terminal: the restarted program writes to dmtcp_restart's stdout, a
/// pseudo-terminal here, as an interactive user's restart would.
#[test]
fn restart_output_on_a_terminal() {
    use std::os::fd::FromRawFd;
    let t = TempDir::new("restart-tty");
    let Checkpointed { coord, before, image: img, expected, .. } = checkpointed_and_killed(&t, "counter", &["40"], 5);
    // SAFETY: posix_openpt and friends make new fds that the Files below own.
    let (master, slave) = unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(m >= 0 && libc::grantpt(m) == 0 && libc::unlockpt(m) == 0, "ptmx: {}", std::io::Error::last_os_error());
        let name = std::ffi::CStr::from_ptr(libc::ptsname(m)).to_owned();
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        assert!(s >= 0, "pts: {}", std::io::Error::last_os_error());
        (fs::File::from_raw_fd(m), fs::File::from_raw_fd(s))
    };
    let mut c = dmtcp(RESTART);
    c.arg("--coord-port").arg(coord.port.to_string()).arg(&img).current_dir(&t.path);
    c.stdin(Stdio::null()).stdout(slave.try_clone().expect("slave")).stderr(fs::File::create(t.join("restart.err")).expect("stderr"));
    let mut p = spawn("dmtcp_restart on a pty", &mut c);
    // Only the restarted program may hold the slave now: its end is the reader's end of file.
    drop(c);
    drop(slave);
    // Read the terminal until the program is done (EIO once no process holds the slave).
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut m = master;
        let mut buf = [0u8; 4096];
        while let Ok(n) = m.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).replace("\r\n", "\n")
    });
    let code = p.wait().code();
    let after = reader.join().expect("reader");
    assert_eq!(code, Some(0), "dmtcp_restart on a pty\n{}", fs::read_to_string(t.join("restart.err")).unwrap_or_default());
    assert_continuation(&before, &after, &expected);
}

/// A tmpfile() and a memfd that nothing maps keep their contents: through a checkpoint the
/// program survives (it goes on), a restart, and a restart of that restart; without the saved
/// contents beside the image the restart says which fd it could not make and goes on.
#[test]
fn deleted_files_and_memfds_keep_their_contents() {
    let t = TempDir::new("unlinked");
    let Checkpointed { coord, before, image: img, expected, expected_code } = checkpointed_and_killed(&t, "unlinked", &["60"], 10);
    assert_eq!(expected_code, 0, "uninterrupted run:\n{expected}");
    assert!(!expected.contains("WRONG"), "uninterrupted run:\n{expected}");
    let files = dmtcp_engine::meta::saved_files_dir(&img);
    assert!(fs::read_dir(&files).map(|d| d.count()).unwrap_or(0) == 2, "one saved copy each of the tmpfile and the memfd in {}", files.display());

    let mut first = restart(&t.path, Some(coord.port), &[], &img, "restart1");
    first.wait_lines(5);
    coord.checkpoint();
    first.kill();
    let k = assert_partial_continuation(&before, &first.out(), &expected);
    let so_far = format!("{}{}", before.lines().take(k).map(|l| format!("{l}\n")).collect::<String>(), first.out());

    let keep = t.subdir("without-files");
    copy(&img, &keep.join(img.file_name().expect("image name")));
    let mut second = restart(&t.path, Some(coord.port), &[], &img, "restart2");
    assert_eq!(second.wait_code(), 0, "restart of the restart\n--- stderr ---\n{}", second.err());
    assert_continuation(&so_far, &second.out(), &expected);

    let mut bare = restart(&keep, Some(coord.port), &[], &keep.join(img.file_name().expect("image name")), "restart-bare");
    let _ = bare.wait_code();
    assert!(bare.err().contains("whose contents are not beside the image"), "a missing _files directory is reported:\n{}", bare.err());
}
