//! Shared harness of the end-to-end tests: launch real C programs (tests/fixtures/*.c) under
//! dmtcp_launch, checkpoint them with dmtcp_command, kill them, restart them with dmtcp_restart,
//! and compare what they print with an uninterrupted run.
//!
//! Rules every test follows (they run in parallel threads of one process, and several test
//! binaries may run at once):
//! - each test owns its coordinator (`--port 0 --port-file`) and its temporary directory;
//! - every process is started through [`spawn`], in its own process group, and is killed (whole
//!   group) by its guard when the test ends, passing or failing;
//! - the test process is a child subreaper, so daemons and orphans end up as our children and are
//!   reaped here rather than by a slow PID 1; only processes no [`Proc`] owns are reaped that way;
//! - no assertion on time: waits have a generous timeout (60 s) and only fail when it expires.
#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

pub const LAUNCH: &str = env!("CARGO_BIN_EXE_dmtcp_launch");
pub const RESTART: &str = env!("CARGO_BIN_EXE_dmtcp_restart");
pub const COMMAND: &str = env!("CARGO_BIN_EXE_dmtcp_command");
pub const COORDINATOR: &str = env!("CARGO_BIN_EXE_dmtcp_coordinator");
pub const INSPECT: &str = env!("CARGO_BIN_EXE_dmtcp_inspect");

/// How long any single wait may take before the test fails. Generous: the machine may be loaded.
pub const TIMEOUT: Duration = Duration::from_secs(60);
pub const POLL: Duration = Duration::from_millis(20);

/// Environment variables that change what the commands do; removed from every command we run so
/// that the caller's environment cannot leak into a test.
const DMTCP_ENV: &[&str] = &[
    "DMTCP_COORD_HOST",
    "DMTCP_COORD_PORT",
    "DMTCP_CHECKPOINT_DIR",
    "DMTCP_CHECKPOINT_INTERVAL",
    "DMTCP_GZIP",
    "DMTCP_FAIL_RC",
    "DMTCP_TMPDIR",
    "DMTCP_RESTART_PAUSE",
    "DMTCP_GDB_ATTACH_ON_RESTART",
    "DMTCP_ABORT_ON_FAILED_ASSERT",
    "LD_PRELOAD",
];

// ---------------------------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------------------------

/// The directory holding the commands, libdmtcp.so and mtcp_restart.
pub fn bin_dir() -> PathBuf {
    Path::new(LAUNCH).parent().expect("dmtcp_launch has a parent directory").to_path_buf()
}

/// Once per test binary: become a child subreaper, start the orphan reaper, and check that the
/// files the commands need beside themselves were built.
pub fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let dir = bin_dir();
        for f in ["libdmtcp.so", "mtcp_restart"] {
            assert!(
                dir.join(f).exists(),
                "{} is missing beside the commands in {}: run `cargo build --workspace` with the same \
                 CARGO_TARGET_DIR before `cargo test` (ci/test.sh does both)",
                f,
                dir.display()
            );
        }
        // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only changes a flag of this process.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "prctl(PR_SET_CHILD_SUBREAPER): {}", std::io::Error::last_os_error());
        std::thread::Builder::new()
            .name("orphan-reaper".into())
            .spawn(|| loop {
                reap_orphans();
                std::thread::sleep(Duration::from_millis(200));
            })
            .expect("spawn reaper thread");
    });
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// Pids of children that a `Proc` (or a running `output`) will wait for itself. The reaper never
/// touches them; every spawn holds this lock until the new pid is in the set.
static OWNED: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

fn owned() -> MutexGuard<'static, BTreeSet<i32>> {
    OWNED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Our children (of every thread) that no `Proc` owns: orphans re-parented to us. Reap the ones
/// that have exited.
pub fn reap_orphans() {
    let owned = owned();
    for pid in children_of_self() {
        if !owned.contains(&pid) {
            // SAFETY: waitpid on one specific pid with WNOHANG; status is a valid out pointer.
            unsafe {
                let mut st = 0;
                libc::waitpid(pid, &mut st, libc::WNOHANG);
            }
        }
    }
}

fn children_of_self() -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out
}

/// A process we started, in its own process group. Dropping it kills the whole group and reaps it.
pub struct Proc {
    child: Child,
    pub name: String,
    status: Option<ExitStatus>,
}

/// Start `cmd` in a new process group (stdin from /dev/null unless the caller set it).
pub fn spawn(name: &str, cmd: &mut Command) -> Proc {
    init();
    cmd.process_group(0);
    let mut owned = owned();
    let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
    owned.insert(child.id() as i32);
    drop(owned);
    Proc { child, name: name.to_string(), status: None }
}

/// Run `cmd` to completion (stdin /dev/null) and collect its output; never reaped by the reaper.
/// Killed (with its group) if it takes longer than [`TIMEOUT`].
pub fn output(name: &str, cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut p = spawn(name, cmd);
    let mut so = p.child.stdout.take().expect("piped stdout");
    let mut se = p.child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let status = p.wait();
    // A daemon forked by the command may keep the pipes open: kill our group, and do not wait for
    // the readers forever.
    p.kill_group();
    let stdout = join_reader(t_out);
    let stderr = join_reader(t_err);
    Output { status, stdout, stderr }
}

fn join_reader(t: std::thread::JoinHandle<Vec<u8>>) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !t.is_finished() && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    if t.is_finished() {
        t.join().unwrap_or_default()
    } else {
        b"<output still open: a background process kept the pipe>".to_vec()
    }
}

impl Proc {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Its stdout pipe, when it was started with `Stdio::piped()`.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The exit status if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                owned().remove(&self.pid());
            }
        }
        self.status
    }

    pub fn running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Wait up to `t` for it to exit.
    pub fn wait_for(&mut self, t: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(st) = self.try_wait() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Wait (up to [`TIMEOUT`]) for it to exit; on timeout kill it and fail the test.
    pub fn wait(&mut self) -> ExitStatus {
        match self.wait_for(TIMEOUT) {
            Some(st) => st,
            None => {
                self.kill();
                panic!("{} (pid {}) did not exit within {:?}", self.name, self.pid(), TIMEOUT)
            }
        }
    }

    /// Its exit code; fails the test if it was killed by a signal.
    pub fn wait_code(&mut self) -> i32 {
        let st = self.wait();
        match st.code() {
            Some(c) => c,
            None => panic!("{} (pid {}) was killed by signal {:?}", self.name, self.pid(), st.signal()),
        }
    }

    /// SIGKILL to its process group (and to itself, in case it left the group), then reap it.
    pub fn kill(&mut self) {
        self.kill_group();
        if self.status.is_none() {
            if let Some(st) = self.wait_for(TIMEOUT) {
                self.status = Some(st);
            }
        }
    }

    fn kill_group(&mut self) {
        let pid = self.pid();
        // SAFETY: plain kill(2) calls on a pid/pgid we created; failures (ESRCH) are ignored.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            if self.status.is_none() {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }

    /// Send a signal to this process only.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if self.status.is_none() {
            // Could not reap it within the timeout; stop protecting it from the reaper.
            owned().remove(&self.pid());
        }
    }
}

/// A `Command` for one of our binaries with every DMTCP variable of the caller's environment
/// removed and stdin from /dev/null.
pub fn dmtcp(bin: &str) -> Command {
    let mut c = Command::new(bin);
    for v in DMTCP_ENV {
        c.env_remove(v);
    }
    c.stdin(Stdio::null());
    c
}

/// Whether a process still exists (zombies count as gone).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z") | Some("X")),
        Err(_) => false,
    }
}

/// Pids of live processes whose environment contains `marker` (a `KEY=value` string).
pub fn processes_with_env(marker: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    let Ok(rd) = fs::read_dir("/proc") else { return out };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        if let Ok(env) = fs::read(e.path().join("environ")) {
            if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) && alive(pid) {
                out.push(pid);
            }
        }
    }
    out
}

/// A `KEY=value` marker unique to this call, for [`processes_with_env`].
pub fn unique_marker() -> (String, String) {
    static N: AtomicU32 = AtomicU32::new(0);
    let v = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    ("DMTCP_E2E_MARK".to_string(), v)
}

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A directory of its own for one test; removed when the test passes, kept (and its path
/// printed) when it fails.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("dmtcp-e2e-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }

    /// A new subdirectory.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path.join(name);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

static FIXTURE_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_fixture_dir() {
    if let Some(d) = FIXTURE_DIR.get() {
        let _ = fs::remove_dir_all(d);
    }
}

/// A directory shared by the tests of this test binary (compiled fixtures, cached images),
/// removed when the test binary exits.
pub fn shared_dir() -> PathBuf {
    FIXTURE_DIR
        .get_or_init(|| {
            let d = std::env::temp_dir().join(format!("dmtcp-e2e-fixtures-{}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
            // SAFETY: registers a plain extern "C" function to run at exit.
            unsafe {
                libc::atexit(remove_fixture_dir);
            }
            d
        })
        .clone()
}

/// tests/fixtures/<name>.c compiled with `cc -O1 -g -pthread` into a binary called `<name>`
/// (images are named after it), once per test binary.
pub fn fixture(name: &str) -> PathBuf {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    fixture_with(name, &cc)
}

/// A fixture compiled with a given C compiler (e.g. i686-linux-gnu-gcc for 32-bit programs);
/// the program keeps its name, in a directory of its own per compiler.
pub fn fixture_with(name: &str, cc: &str) -> PathBuf {
    init();
    static BUILT: Mutex<Option<HashMap<(String, String), PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    let key = (name.to_string(), cc.to_string());
    if let Some(p) = map.get(&key) {
        return p.clone();
    }
    let dir = shared_dir().join(cc.replace('/', "_"));
    fs::create_dir_all(&dir).expect("fixture directory");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.c"));
    let out = dir.join(name);
    let o = output(&format!("{cc} {name}.c"), Command::new(cc).args(["-O1", "-g", "-pthread", "-o"]).arg(&out).arg(&src));
    assert!(o.status.success(), "compiling {} failed ({}):\n{}", src.display(), o.status, String::from_utf8_lossy(&o.stderr));
    map.insert(key, out.clone());
    out
}

/// Run a fixture without DMTCP, in `cwd`; its stdout and exit code. This is the expected output.
pub fn run_plain(prog: &Path, args: &[&str], cwd: &Path) -> (String, i32) {
    let o = output("uninterrupted run", Command::new(prog).args(args).current_dir(cwd));
    let code = o.status.code().unwrap_or_else(|| panic!("{} killed by {:?}", prog.display(), o.status.signal()));
    (String::from_utf8_lossy(&o.stdout).into_owned(), code)
}

/// [`run_plain`] in a background thread, so the expected output is computed while the test runs.
pub fn run_plain_bg(prog: &Path, args: &[&str], cwd: &Path) -> std::thread::JoinHandle<(String, i32)> {
    let prog = prog.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let cwd = cwd.to_path_buf();
    std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        run_plain(&prog, &a, &cwd)
    })
}

// ---------------------------------------------------------------------------------------------
// Coordinator
// ---------------------------------------------------------------------------------------------

/// A dmtcp_coordinator on a free port (chosen by itself and read from --port-file), killed with
/// everything in its group when dropped.
pub struct Coord {
    pub proc: Proc,
    pub port: u16,
    _dir: TempDir,
}

impl Coord {
    pub fn start() -> Coord {
        Coord::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Coord {
        let dir = TempDir::new("coord");
        let pf = dir.join("port");
        let log = fs::File::create(dir.join("coord.log")).expect("coordinator log");
        let proc = spawn(
            "dmtcp_coordinator",
            dmtcp(COORDINATOR)
                .args(["--port", "0", "--port-file"])
                .arg(&pf)
                // A safety net in case this test process dies without running its guards.
                .args(["--timeout", "600"])
                .args(extra)
                .current_dir(&dir.path)
                .stdout(Stdio::null())
                .stderr(log),
        );
        let mut c = Coord { proc, port: 0, _dir: dir };
        c.port = wait_for_port_file(&pf, &mut c.proc);
        c
    }

    /// `dmtcp_command -p PORT ARGS`.
    pub fn command(&self, args: &[&str]) -> Output {
        command(self.port, args)
    }

    /// `dmtcp_command -bc`; fails the test if it does not succeed.
    pub fn checkpoint(&self) {
        checkpoint(self.port)
    }

    /// `dmtcp_command -kc`; fails the test if it does not succeed.
    pub fn kcheckpoint(&self) {
        let o = self.command(&["-kc"]);
        assert!(o.status.success(), "dmtcp_command -kc failed: {}", describe(&o));
    }
}

fn wait_for_port_file(path: &Path, p: &mut Proc) -> u16 {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(port) = fs::read_to_string(path).ok().and_then(|t| t.trim().parse::<u16>().ok()) {
            if port != 0 {
                return port;
            }
        }
        if let Some(st) = p.try_wait() {
            panic!("{} exited ({st}) before writing its port file", p.name);
        }
        assert!(Instant::now() < deadline, "no port in {} after {:?}", path.display(), TIMEOUT);
        std::thread::sleep(POLL);
    }
}

/// `dmtcp_command -p PORT ARGS` (nothing else from the environment).
pub fn command(port: u16, args: &[&str]) -> Output {
    output("dmtcp_command", dmtcp(COMMAND).arg("-p").arg(port.to_string()).args(args))
}

/// Blocking checkpoint through `dmtcp_command -p PORT -bc`.
pub fn checkpoint(port: u16) {
    let o = command(port, &["-bc"]);
    assert!(o.status.success(), "dmtcp_command -p {port} -bc failed: {}", describe(&o));
}

/// A port nothing listens on (bound then released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

pub fn port_in_use(port: u16) -> bool {
    TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2)).is_ok()
}

pub fn describe(o: &Output) -> String {
    format!("{}\n--- stdout ---\n{}--- stderr ---\n{}", o.status, String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

// ---------------------------------------------------------------------------------------------
// Launch and restart
// ---------------------------------------------------------------------------------------------

/// A program running under dmtcp_launch (the program replaces dmtcp_launch: same pid), or a
/// restored program (it replaces dmtcp_restart). stdout and stderr go to files.
pub struct Run {
    pub proc: Proc,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

impl Run {
    /// Everything it printed so far.
    pub fn out(&self) -> String {
        fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    pub fn err(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until it printed at least `n` lines; fails the test if it exits first.
    pub fn wait_lines(&mut self, n: usize) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let lines = self.out().matches('\n').count();
            if lines >= n {
                return;
            }
            if let Some(st) = self.proc.try_wait() {
                panic!(
                    "{} exited ({st}) after {lines} lines, before printing {n}\n--- stdout ---\n{}--- stderr ---\n{}",
                    self.proc.name,
                    self.out(),
                    self.err()
                );
            }
            assert!(Instant::now() < deadline, "{} printed {lines} lines, not {n}, in {:?}", self.proc.name, TIMEOUT);
            std::thread::sleep(POLL);
        }
    }

    /// Wait for its exit code, failing the test if it was killed or hangs; includes its stderr in
    /// the message.
    pub fn wait_code(&mut self) -> i32 {
        let st = self.proc.wait();
        match st.code() {
            Some(c) => c,
            None => panic!("{} was killed by signal {:?}\n--- stdout ---\n{}--- stderr ---\n{}", self.proc.name, st.signal(), self.out(), self.err()),
        }
    }

    /// Wait for it to exit with code `want`.
    pub fn expect_exit(&mut self, want: i32) {
        let code = self.wait_code();
        assert_eq!(code, want, "{} exit code\n--- stdout ---\n{}--- stderr ---\n{}", self.proc.name, self.out(), self.err());
    }

    /// SIGKILL it (and its process group) and reap it.
    pub fn kill(&mut self) {
        self.proc.kill();
    }
}

/// Options for [`launch`].
#[derive(Default, Clone)]
pub struct LaunchOpts<'a> {
    /// Coordinator port (--coord-port); None passes no port option.
    pub port: Option<u16>,
    /// dmtcp_launch options before the program.
    pub opts: Vec<&'a str>,
    /// Extra environment.
    pub env: Vec<(&'a str, String)>,
    /// Name of the log files (`<log>.out`, `<log>.err`) in `dir`.
    pub log: &'a str,
    /// Another dmtcp_launch than the one cargo built (an installed one).
    pub launch_bin: Option<&'a Path>,
}

/// `dmtcp_launch [--coord-port P] OPTS PROG ARGS` with `dir` as cwd (so the default checkpoint
/// directory), stdout and stderr to `dir/<log>.out|.err`.
pub fn launch(dir: &Path, o: &LaunchOpts, prog: &Path, args: &[&str]) -> Run {
    let log = if o.log.is_empty() { "launch" } else { o.log };
    let stdout = dir.join(format!("{log}.out"));
    let stderr = dir.join(format!("{log}.err"));
    let mut c = dmtcp(o.launch_bin.and_then(Path::to_str).unwrap_or(LAUNCH));
    if let Some(p) = o.port {
        c.arg("--coord-port").arg(p.to_string());
    }
    c.args(&o.opts).arg(prog).args(args).current_dir(dir);
    for (k, v) in &o.env {
        c.env(k, v);
    }
    c.stdout(fs::File::create(&stdout).expect("launch stdout")).stderr(fs::File::create(&stderr).expect("launch stderr"));
    let name = format!("dmtcp_launch {}", prog.file_name().and_then(OsStr::to_str).unwrap_or("?"));
    Run { proc: spawn(&name, &mut c), stdout, stderr }
}

/// `dmtcp_restart [--coord-port P] OPTS IMAGE` in `dir`, stdout and stderr to `dir/<log>.out|.err`.
pub fn restart(dir: &Path, port: Option<u16>, opts: &[&str], image: &Path, log: &str) -> Run {
    let mut c = dmtcp(RESTART);
    if let Some(p) = port {
        c.arg("--coord-port").arg(p.to_string());
    }
    c.args(opts).arg(image);
    restart_with(dir, c, log)
}

/// Run a prepared restart command (dmtcp_restart or dmtcp_restart_script.sh) in `dir` with
/// stdout and stderr to `dir/<log>.out|.err`.
pub fn restart_with(dir: &Path, mut c: Command, log: &str) -> Run {
    let stdout = dir.join(format!("{log}.out"));
    let stderr = dir.join(format!("{log}.err"));
    c.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("restart stdout"))
        .stderr(fs::File::create(&stderr).expect("restart stderr"));
    Run { proc: spawn(&format!("restart ({log})"), &mut c), stdout, stderr }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// Complete images `ckpt_<prog>_*.dmtcp` in `dir`, sorted by name.
pub fn images(dir: &Path, prog: &str) -> Vec<PathBuf> {
    let prefix = format!("ckpt_{prog}_");
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(OsStr::to_str).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".dmtcp")))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The one image of `prog` in `dir`; fails the test if there is none or several.
pub fn image(dir: &Path, prog: &str) -> PathBuf {
    let v = images(dir, prog);
    assert_eq!(v.len(), 1, "expected exactly one ckpt_{prog}_*.dmtcp in {}, found {:?} (dir: {:?})", dir.display(), v, listing(dir));
    v.into_iter().next().expect("one image")
}

/// Wait until an image of `prog` appears in `dir` (complete: images are renamed into place).
pub fn wait_for_image(dir: &Path, prog: &str, run: &mut Run) -> PathBuf {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(p) = images(dir, prog).into_iter().next() {
            return p;
        }
        if let Some(st) = run.proc.try_wait() {
            panic!("{} exited ({st}) before any image of {prog} appeared in {}\n--- stderr ---\n{}", run.proc.name, dir.display(), run.err());
        }
        assert!(Instant::now() < deadline, "no ckpt_{prog}_*.dmtcp in {} after {:?}", dir.display(), TIMEOUT);
        std::thread::sleep(POLL);
    }
}

/// File names in `dir`, for failure messages.
pub fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()).unwrap_or_default();
    v.sort();
    v
}

pub fn magic(path: &Path) -> Vec<u8> {
    let mut f = fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 8];
    let n = f.read(&mut b).expect("read image");
    b[..n].to_vec()
}

pub fn is_gzip(path: &Path) -> bool {
    magic(path).starts_with(&[0x1f, 0x8b])
}

pub fn is_raw(path: &Path) -> bool {
    magic(path) == b"DMTCPRS\0"
}

/// The restart script in `dir`, checked to be there and executable.
pub fn restart_script(dir: &Path) -> PathBuf {
    let s = dir.join("dmtcp_restart_script.sh");
    let meta = fs::metadata(&s).unwrap_or_else(|e| panic!("{}: {e} (dir: {:?})", s.display(), listing(dir)));
    assert!(meta.permissions().mode() & 0o111 != 0, "{} is not executable", s.display());
    s
}

/// Copy a file (for keeping an image aside before the next checkpoint overwrites it).
pub fn copy(from: &Path, to: &Path) {
    fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}

// ---------------------------------------------------------------------------------------------
// Comparing outputs
// ---------------------------------------------------------------------------------------------

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

fn show(label: &str, s: &str) -> String {
    format!("--- {label} ({} lines) ---\n{s}", s.lines().count())
}

/// After `dmtcp_command -kc`, the first run stops exactly at the checkpoint:
/// `before + after == expected`.
pub fn assert_concat(before: &str, after: &str, expected: &str) {
    assert!(!after.is_empty(), "nothing printed after the restart\n{}\n{}", show("before", before), show("expected", expected));
    let joined = format!("{before}{after}");
    if joined != expected {
        panic!(
            "output before the checkpoint + output after restart differs from an uninterrupted run\n{}\n{}\n{}",
            show("before checkpoint", before),
            show("after restart", after),
            show("expected", expected)
        );
    }
}

/// After a blocking checkpoint and SIGKILL, the first run went on past the checkpoint: there
/// must be a k <= lines(before) with `before[..k] ++ after == expected`, and the restart must
/// have printed something (the checkpoint landed mid-run). Returns k.
pub fn assert_continuation(before: &str, after: &str, expected: &str) -> usize {
    continuation(before, after, expected, true)
}

/// Like [`assert_continuation`] for a restarted run that was itself killed before the end:
/// `before[..k] ++ after` must be a prefix of `expected`. Returns k.
pub fn assert_partial_continuation(before: &str, after: &str, expected: &str) -> usize {
    continuation(before, after, expected, false)
}

fn continuation(before: &str, after: &str, expected: &str, complete: bool) -> usize {
    let b = lines(before);
    let a = lines(after);
    let e = lines(expected);
    let fail = |why: &str| -> ! {
        panic!("{why}\n{}\n{}\n{}", show("before kill", before), show("after restart", after), show("expected (uninterrupted)", expected))
    };
    if a.is_empty() {
        fail("nothing printed after the restart (did the checkpoint land after the program finished?)");
    }
    if b.len() > e.len() || b[..] != e[..b.len()] {
        fail("the run before the checkpoint did not print a prefix of the uninterrupted run's output");
    }
    let fits = |k: usize| {
        if complete {
            k + a.len() == e.len() && a[..] == e[k..]
        } else {
            k + a.len() <= e.len() && a[..] == e[k..k + a.len()]
        }
    };
    match (0..=b.len()).rev().find(|&k| fits(k)) {
        Some(k) => k,
        None => fail("the output after restart does not continue the output before the checkpoint (lines lost or repeated)"),
    }
}

/// The common end-to-end flow, with the `-bc` + SIGKILL variant: launch `prog args` under a
/// fresh coordinator, wait for `min_lines` lines, checkpoint, kill, restart, and check that the
/// restart continues the output exactly (and exits with the same code as an uninterrupted run).
pub fn roundtrip(name: &str, prog_name: &str, args: &[&str], min_lines: usize) {
    let t = TempDir::new(name);
    let prog = fixture(prog_name);
    let plain_dir = t.subdir("plain");
    let expected = run_plain_bg(&prog, args, &plain_dir);
    let coord = Coord::start();
    let o = LaunchOpts { port: Some(coord.port), ..Default::default() };
    let mut run = launch(&t.path, &o, &prog, args);
    run.wait_lines(min_lines);
    coord.checkpoint();
    let img = image(&t.path, prog_name);
    run.kill();
    let before = run.out();
    let mut r = restart(&t.path, Some(coord.port), &[], &img, "restart");
    let code = r.wait_code();
    let (exp, exp_code) = expected.join().expect("uninterrupted run");
    assert_eq!(code, exp_code, "exit code after restart\n--- restart stderr ---\n{}", r.err());
    assert_continuation(&before, &r.out(), &exp);
}

/// A program launched under a fresh coordinator, checkpointed and killed, with what an
/// uninterrupted run of it printed.
pub struct Checkpointed {
    pub coord: Coord,
    /// What it printed before the kill (a little past the checkpoint).
    pub before: String,
    pub image: PathBuf,
    pub expected: String,
    pub expected_code: i32,
}

/// Launch fixture `prog_name args` in `t`, wait for `min_lines` lines, checkpoint, kill.
pub fn checkpointed_and_killed(t: &TempDir, prog_name: &str, args: &[&str], min_lines: usize) -> Checkpointed {
    let prog = fixture(prog_name);
    let expected = run_plain_bg(&prog, args, &t.subdir("plain"));
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &prog, args);
    run.wait_lines(min_lines);
    coord.checkpoint();
    run.kill();
    let (expected, expected_code) = expected.join().expect("uninterrupted run");
    Checkpointed { coord, before: run.out(), image: image(&t.path, prog_name), expected, expected_code }
}

// ---------------------------------------------------------------------------------------------
// Kill at the checkpoint (-kc) and the restart script
// ---------------------------------------------------------------------------------------------

/// dmtcp_inspect --json of one image.
pub fn inspect_json(image: &Path) -> serde_json::Value {
    let out = output("dmtcp_inspect", Command::new(INSPECT).arg("--json").arg(image));
    assert!(out.status.success(), "dmtcp_inspect\n{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {text}"));
    v
}

/// The fd entries of an image as dmtcp_inspect --json shows them.
pub fn fds_of(v: &serde_json::Value) -> Vec<serde_json::Value> {
    v["meta"]["fds"].as_array().or_else(|| v["fds"].as_array()).cloned().unwrap_or_default()
}

/// A computation launched from fixture `prog args` under its own coordinator, killed with -kc
/// after `min_lines` lines, beside an uninterrupted run of the same (in `plain/`).
pub struct Killed {
    pub t: TempDir,
    pub coord: Coord,
    /// What it printed up to the kill.
    pub before: String,
    /// What the uninterrupted run printed (it exited 0).
    pub expected: String,
}

pub fn launch_and_kcheckpoint(name: &str, prog: &str, args: &[&str], min_lines: usize) -> Killed {
    let t = TempDir::new(name);
    let exe = fixture(prog);
    let (expected, code) = run_plain(&exe, args, &t.subdir("plain"));
    assert_eq!(code, 0, "uninterrupted run:\n{expected}");
    let coord = Coord::start();
    let mut run = launch(&t.path, &LaunchOpts { port: Some(coord.port), ..Default::default() }, &exe, args);
    run.wait_lines(min_lines);
    coord.kcheckpoint();
    let _ = run.proc.wait();
    reap_orphans();
    Killed { before: run.out(), t, coord, expected }
}

/// `./dmtcp_restart_script.sh` of the checkpoint in `dir`, started there (output in
/// `dir/restart.out|.err`).
pub fn run_restart_script(dir: &Path) -> Run {
    restart_with(dir, Command::new(restart_script(dir)), "restart")
}

/// The restart script of `k` run to its end: exit code 0, no descriptor reopened on /dev/null,
/// and its output continues the killed run's exactly. Returns what it printed on stderr.
pub fn restart_script_continues(k: &Killed) -> String {
    let mut r = run_restart_script(&k.t.path);
    assert_eq!(r.wait_code(), 0, "the restart script\n{}\n{}", r.out(), r.err());
    assert!(!r.err().contains("/dev/null"), "a descriptor was not restored:\n{}", r.err());
    assert_concat(&k.before, &r.out(), &k.expected);
    r.err()
}

/// `flock` on a file in the temp dir, held until dropped: serializes tests that need a fixed
/// resource (the default port 7779) across threads and concurrently running test binaries.
pub struct GlobalLock(fs::File);

impl GlobalLock {
    pub fn take(name: &str) -> GlobalLock {
        use std::os::fd::AsRawFd;
        let p = std::env::temp_dir().join(format!("dmtcp-e2e-{name}.lock"));
        let f = fs::OpenOptions::new().create(true).truncate(false).write(true).open(&p).expect("lock file");
        // SAFETY: flock on a file descriptor we own; blocks until the lock is ours.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}: {}", p.display(), std::io::Error::last_os_error());
        GlobalLock(f)
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures built against include/dmtcp.h (application API, plugins)
// ---------------------------------------------------------------------------------------------

/// tests/fixtures/<name>.c compiled with `cc -O1 -g -pthread -fPIC -I include EXTRA` into
/// `<out>` (a program, or a plugin with `-shared`), once per test binary and `out`.
pub fn fixture_against_header(name: &str, out: &str, extra: &[&str]) -> PathBuf {
    init();
    static BUILT: Mutex<Option<HashMap<String, PathBuf>>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let map = built.get_or_insert_with(HashMap::new);
    if let Some(p) = map.get(out) {
        return p.clone();
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let dir = shared_dir().join(format!("{}-dmtcp-h", cc.replace('/', "_")));
    fs::create_dir_all(&dir).expect("fixture directory");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("tests/fixtures").join(format!("{name}.c"));
    let path = dir.join(out);
    let o = output(
        &format!("{cc} {name}.c"),
        Command::new(&cc)
            .args(["-O1", "-g", "-pthread", "-fPIC", "-Wall", "-I"])
            .arg(root.join("include"))
            .args(extra)
            .arg("-o")
            .arg(&path)
            .arg(&src),
    );
    assert!(o.status.success(), "compiling {} failed ({}):\n{}", src.display(), o.status, String::from_utf8_lossy(&o.stderr));
    map.insert(out.to_string(), path.clone());
    path
}

/// A plugin: tests/fixtures/<name>.c built with `-shared` into `lib<out>.so`.
pub fn plugin_fixture(name: &str, out: &str, extra: &[&str]) -> PathBuf {
    let mut args = vec!["-shared"];
    args.extend_from_slice(extra);
    fixture_against_header(name, &format!("lib{out}.so"), &args)
}

/// Wait until `run`'s output contains `needle`; fails the test if it exits first.
pub fn wait_for_output(run: &mut Run, needle: &str) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if run.out().contains(needle) {
            return;
        }
        if let Some(st) = run.proc.try_wait() {
            panic!("{} exited ({st}) before printing {needle:?}\n--- stdout ---\n{}--- stderr ---\n{}", run.proc.name, run.out(), run.err());
        }
        assert!(Instant::now() < deadline, "{} did not print {needle:?} in {:?}\n--- stdout ---\n{}", run.proc.name, TIMEOUT, run.out());
        std::thread::sleep(POLL);
    }
}

/// A process's state letter (R, S, Z...), parent pid and start time (clock ticks since boot)
/// from /proc/PID/stat; None when there is no such process (reaped zombies included).
pub fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may itself hold ") ": the fields follow the last one.
    let f: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.first()?.chars().next()?, f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// Wait (up to `t`) until none of `procs` (pid, start time from [`proc_stat`]) exists any more,
/// zombies included. A zombie whose parent is this test process is ours to reap (the harness
/// is a subreaper and reaps orphans); one whose parent is anyone else is left behind by that
/// parent, and fails the test when `t` runs out, as does a process still running.
pub fn wait_gone_with_zombies(procs: &[(i32, u64)], what: &str, t: Duration) {
    let me = std::process::id() as i32;
    let left = || -> Vec<String> {
        procs
            .iter()
            .filter_map(|&(pid, start)| match proc_stat(pid) {
                Some((state, ppid, st)) if st == start => {
                    let cl = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    Some(format!(
                        "{pid} (state {state}, parent {ppid}{}): {}",
                        if ppid == me { ", this test" } else { "" },
                        String::from_utf8_lossy(&cl).replace('\0', " ")
                    ))
                }
                _ => None,
            })
            .collect()
    };
    let deadline = Instant::now() + t;
    loop {
        reap_orphans();
        let l = left();
        if l.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: processes of the computation are left: {l:?}");
        std::thread::sleep(POLL);
    }
}
