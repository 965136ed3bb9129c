//! dmtcp_coordinator: the process every member of a computation registers with. It starts
//! checkpoints (on command, on a worker's request or on a timer), runs the barrier over all
//! workers, writes `dmtcp_restart_script.sh` and answers dmtcp_command.
//!
//! Architecture: one thread per connection, one shared `Mutex<State>` and one `Condvar`
//! (notified on every state change). A checkpoint round is started under the lock and then
//! "finished" by exactly one thread: the blocking command's own thread, or a helper thread for
//! non-blocking requests. A checkpoint request while a round runs is answered `Busy` (not
//! queued): dmtcp_command reports it and the interval timer simply tries again later.

use crate::cli::fail_rc;
use crate::locate;
use clap::Parser;
use dmtcp_engine::protocol::{self, Command, CommandReply, CommandStatus, FromCoord, PeerInfo, TcpEnd, ToCoord, DEFAULT_PORT};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const PROG: &str = "dmtcp_coordinator";
pub const RESTART_SCRIPT: &str = "dmtcp_restart_script.sh";
/// A worker that does not take a small message within this time is treated as gone, so one
/// stuck peer cannot stall the coordinator while it holds the state lock.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the exiting coordinator waits for replies still being sent.
const REPLY_GRACE: Duration = Duration::from_secs(5);

#[derive(Parser, Debug)]
#[command(name = PROG, version, about = "Coordinate checkpoints of a DMTCP computation")]
pub struct Args {
    /// Port to listen on (DMTCP_COORD_PORT; default 7779; 0 = any free port)
    #[arg(short = 'p', long = "port", visible_alias = "coord-port")]
    pub port: Option<u16>,
    /// Write the port actually listened on to this file
    #[arg(long = "port-file")]
    pub port_file: Option<PathBuf>,
    /// Seconds between automatic checkpoints, 0 = on demand (DMTCP_CHECKPOINT_INTERVAL)
    #[arg(short = 'i', long = "interval")]
    pub interval: Option<u32>,
    /// Run in the background (stdio to /dev/null)
    #[arg(long = "daemon")]
    pub daemon: bool,
    /// Fewer messages
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,
    /// Exit when the last process disconnects (once at least one joined)
    #[arg(long = "exit-on-last")]
    pub exit_on_last: bool,
    /// Kill the computation and exit after the first successful checkpoint
    #[arg(long = "exit-after-ckpt")]
    pub exit_after_ckpt: bool,
    /// Exit after this many seconds
    #[arg(long = "timeout")]
    pub timeout: Option<u64>,
    /// Directory for checkpoint images and the restart script (DMTCP_CHECKPOINT_DIR)
    #[arg(short = 'c', long = "ckptdir")]
    pub ckptdir: Option<PathBuf>,
    /// Append log messages to this file
    #[arg(long = "coord-logfile")]
    pub logfile: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("cannot listen on port {port}: {source}")]
    Bind { port: u16, source: std::io::Error },
    #[error("cannot write port file {}: {source}", path.display())]
    PortFile { path: PathBuf, source: std::io::Error },
    #[error("cannot open log file {}: {source}", path.display())]
    Logfile { path: PathBuf, source: std::io::Error },
    #[error("bad checkpoint directory {}: {source}", path.display())]
    CkptDir { path: PathBuf, source: std::io::Error },
    #[error("{var}={value:?} is not a valid number")]
    BadEnv { var: &'static str, value: String },
    #[error("cannot become a daemon: {0}")]
    Daemon(std::io::Error),
}

/// Settings after flags and environment are merged.
#[derive(Debug, Clone)]
pub struct Options {
    pub port: u16,
    pub port_file: Option<PathBuf>,
    pub interval: u32,
    pub daemon: bool,
    pub quiet: bool,
    pub exit_on_last: bool,
    pub exit_after_ckpt: bool,
    pub timeout: Option<u64>,
    pub ckpt_dir: Option<PathBuf>,
    pub logfile: Option<PathBuf>,
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.trim().is_empty())
}

fn env_number<T: std::str::FromStr>(var: &'static str) -> Result<Option<T>, CoordinatorError> {
    match env_nonempty(var) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| CoordinatorError::BadEnv { var, value: v }),
    }
}

impl Options {
    /// Command-line values win over DMTCP_* environment variables, which win over defaults.
    pub fn from_args(a: Args) -> Result<Options, CoordinatorError> {
        let port = match a.port {
            Some(p) => p,
            None => match env_number::<u16>("DMTCP_COORD_PORT")? {
                Some(p) => p,
                None => env_number::<u16>("DMTCP_PORT")?.unwrap_or(DEFAULT_PORT),
            },
        };
        let interval = match a.interval {
            Some(i) => i,
            None => env_number::<u32>("DMTCP_CHECKPOINT_INTERVAL")?.unwrap_or(0),
        };
        let ckpt_dir = a.ckptdir.or_else(|| env_nonempty("DMTCP_CHECKPOINT_DIR").map(PathBuf::from));
        // Workers have their own working directories: hand them an absolute path.
        let ckpt_dir = match ckpt_dir {
            Some(d) => Some(absolute(&d).map_err(|source| CoordinatorError::CkptDir { path: d.clone(), source })?),
            None => None,
        };
        Ok(Options {
            port,
            port_file: a.port_file,
            interval,
            daemon: a.daemon,
            quiet: a.quiet,
            exit_on_last: a.exit_on_last,
            exit_after_ckpt: a.exit_after_ckpt,
            timeout: a.timeout,
            ckpt_dir,
            logfile: a.logfile,
        })
    }
}

fn absolute(p: &Path) -> std::io::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// The host name as the kernel knows it ("localhost" if unknown).
pub fn local_hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).filter(|h| !h.is_empty()).unwrap_or_else(|| "localhost".into())
}

/// Write `contents` to `path` via a temporary file in the same directory and rename(), so a
/// reader never sees a half-written file.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        // The umask may have cleared bits of `mode`: the script must be executable.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

// ---------------------------------------------------------------------------------------------
// The restart script

/// Quote `s` for a POSIX shell: single quotes, with embedded quotes as '\''.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// One image of the checkpoint, with the host its process ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptImage {
    pub host: String,
    pub path: String,
}

/// Inputs of the restart script.
#[derive(Debug, Clone)]
pub struct ScriptSpec<'a> {
    /// dmtcp_restart: an absolute path, or a bare name looked up on PATH.
    pub restart_bin: &'a str,
    pub coord_host: &'a str,
    pub coord_port: u16,
    pub local_host: &'a str,
    pub coord_id: &'a str,
    pub generation: u64,
    pub images: &'a [ScriptImage],
}

fn split_image(path: &str) -> (String, String) {
    let p = Path::new(path);
    let dir = p.parent().map(|d| d.to_string_lossy().into_owned()).filter(|d| !d.is_empty()).unwrap_or_else(|| ".".into());
    let base = p.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_else(|| path.to_string());
    (dir, base)
}

/// The text of dmtcp_restart_script.sh (POSIX sh).
pub fn restart_script(spec: &ScriptSpec<'_>) -> String {
    let mut s = String::new();
    let restart_bin = if spec.restart_bin.is_empty() { "dmtcp_restart" } else { spec.restart_bin };
    s.push_str("#!/bin/sh\n");
    s.push_str(&format!("# Written by dmtcp_coordinator {} after checkpoint generation {}.\n", spec.coord_id.replace('\n', " "), spec.generation));
    s.push_str(
        r#"# Restarts every process of the computation from its checkpoint image.
# To restart on other hosts, edit the ssh lines below (or the host names in them).

usage() {
  echo "usage: $0 [-h|--coord-host HOST] [-p|--coord-port PORT] [--restartdir DIR]" >&2
  echo "          [--ckptdir DIR] [other dmtcp_restart options...]" >&2
  exit "${1:-99}"
}

"#,
    );
    s.push_str(&format!("dmt_restart={}\n", sh_quote(restart_bin)));
    s.push_str(&format!("coord_host=${{DMTCP_COORD_HOST:-{}}}\n", sh_quote(spec.coord_host)));
    s.push_str(&format!("coord_port=${{DMTCP_COORD_PORT:-{}}}\n", spec.coord_port));
    s.push_str(&format!("local_host={}\n", sh_quote(spec.local_host)));
    s.push_str(
        r#"restartdir=
ckptdir=

# Take our own options out of "$@"; whatever is left goes to dmtcp_restart unchanged.
n=$#
while [ "$n" -gt 0 ]; do
  a=$1; shift; n=$((n - 1))
  case "$a" in
    -h|--coord-host|--host|-p|--coord-port|--port|--restartdir|--ckptdir)
      [ "$n" -gt 0 ] || usage
      v=$1; shift; n=$((n - 1))
      case "$a" in
        -h|--coord-host|--host) coord_host=$v ;;
        -p|--coord-port|--port) coord_port=$v ;;
        --restartdir) restartdir=$v ;;
        --ckptdir) ckptdir=$v ;;
      esac ;;
    --coord-host=*|--host=*) coord_host=${a#*=} ;;
    --coord-port=*|--port=*) coord_port=${a#*=} ;;
    --restartdir=*) restartdir=${a#*=} ;;
    --ckptdir=*) ckptdir=${a#*=} ;;
    --help) usage 0 ;;
    *) set -- "$@" "$a" ;;
  esac
done

if [ -n "$ckptdir" ]; then
  DMTCP_CHECKPOINT_DIR=$ckptdir
  export DMTCP_CHECKPOINT_DIR
fi

# img DIR NAME: where an image is, honouring --restartdir.
img() {
  if [ -n "$restartdir" ]; then printf '%s/%s\n' "$restartdir" "$2"; else printf '%s/%s\n' "$1" "$2"; fi
}

# A remote host reaches the coordinator by this host's name, not by "localhost".
remote_coord_host=$coord_host
case "$coord_host" in
  localhost|127.*|::1) remote_coord_host=$local_host ;;
esac

"#,
    );

    // Group per host, local host first, in the order the images were reported.
    let mut hosts: Vec<&str> = Vec::new();
    for im in spec.images {
        if !hosts.contains(&im.host.as_str()) {
            hosts.push(&im.host);
        }
    }
    let is_local = |h: &str| h == spec.local_host || h.is_empty() || h == "localhost";
    hosts.sort_by_key(|h| !is_local(h));

    let total = spec.images.len();
    if total == 0 {
        s.push_str("echo \"$0: this checkpoint wrote no images\" >&2\nexit 99\n");
        return s;
    }
    // One dmtcp_restart per host with all of that host's images, as DMTCP does: it recreates the
    // parent/child links among them.
    let args_for = |host: &str, remote: bool| -> String {
        spec.images
            .iter()
            .filter(|i| i.host == host)
            .map(|im| {
                let (dir, base) = split_image(&im.path);
                if remote {
                    // ssh joins its arguments into one remote command line: quote for the remote shell.
                    format!(" \"'$(img {} {})'\"", sh_quote(&dir), sh_quote(&base))
                } else {
                    format!(" \"$(img {} {})\"", sh_quote(&dir), sh_quote(&base))
                }
            })
            .collect()
    };
    if hosts.len() == 1 && is_local(hosts[0]) {
        // Only this host: exec, so the exit code is the script's.
        s.push_str(&format!("# Host: {}\n", hosts[0]));
        s.push_str(&format!("exec \"$dmt_restart\" --coord-host \"$coord_host\" --coord-port \"$coord_port\" \"$@\"{}\n", args_for(hosts[0], false)));
        return s;
    }
    s.push_str("pids=\n");
    for host in hosts {
        s.push_str(&format!("\n# Host: {host}\n"));
        if is_local(host) {
            s.push_str(&format!("\"$dmt_restart\" --coord-host \"$coord_host\" --coord-port \"$coord_port\" \"$@\"{} &\n", args_for(host, false)));
        } else {
            s.push_str(&format!(
                "ssh {} \"'$dmt_restart'\" --coord-host \"$remote_coord_host\" --coord-port \"$coord_port\" \"$@\"{} &\n",
                sh_quote(host),
                args_for(host, true)
            ));
        }
        s.push_str("pids=\"$pids $!\"\n");
    }
    s.push_str(
        r#"
rc=0
for p in $pids; do
  wait "$p" || rc=$?
done
exit "$rc"
"#,
    );
    s
}

// ---------------------------------------------------------------------------------------------
// Shared state

struct Worker {
    info: PeerInfo,
    writer: TcpStream,
}

struct Done {
    host: String,
    image: String,
    error: Option<String>,
}

struct Round {
    generation: u64,
    kill_after: bool,
    /// Workers that have not reported Suspended yet; AllSuspended goes out when it empties.
    unsuspended: BTreeSet<u64>,
    released: bool,
    /// The TCP ends the workers reported with Suspended, sent to all with AllSuspended.
    tcp: Vec<TcpEnd>,
    /// Workers that have not reported Drained yet (filled at AllSuspended); AllDrained goes out
    /// when it empties after a Drained.
    undrained: BTreeSet<u64>,
    drain_released: bool,
    pending: BTreeSet<u64>,
    done: Vec<Done>,
}

struct State {
    generation: u64,
    interval: u32,
    next_ckpt: Option<Instant>,
    workers: BTreeMap<u64, Worker>,
    next_id: u64,
    joined_ever: bool,
    round: Option<Round>,
    exit: Option<i32>,
    replies_in_flight: u32,
    /// A worker called dmtcp_checkpoint() while a round ran: start another once it is over
    /// (the caller waits for a checkpoint that begins after its request).
    worker_request: bool,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
    opts: Options,
    port: u16,
    hostname: String,
    coord_id: String,
    log: Option<Mutex<File>>,
}

fn send_to(w: &mut Worker, msg: &FromCoord) -> bool {
    match protocol::send(&mut w.writer, msg) {
        Ok(()) => true,
        Err(_) => {
            // Its reader thread sees the shutdown and removes it.
            let _ = w.writer.shutdown(Shutdown::Both);
            false
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // panic = abort: a poisoned lock cannot be observed, but do not unwrap anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, g: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.cv.wait(g).unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for<'a>(&self, g: MutexGuard<'a, State>, d: Duration) -> MutexGuard<'a, State> {
        self.cv.wait_timeout(g, d).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0)
    }

    fn note(&self, msg: &str) {
        if !self.opts.quiet && !self.opts.daemon {
            eprintln!("{PROG}: {msg}");
        }
        self.to_logfile(msg);
    }

    fn warn(&self, msg: &str) {
        if !self.opts.daemon {
            eprintln!("{PROG}: {msg}");
        }
        self.to_logfile(msg);
    }

    fn to_logfile(&self, msg: &str) {
        if let Some(f) = &self.log {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
            let _ = writeln!(f, "[{now}] [{}] {msg}", std::process::id());
        }
    }

    fn reply(&self, st: &State, status: CommandStatus, images: Vec<String>, message: String) -> CommandReply {
        let peers = st
            .workers
            .iter()
            .map(|(id, w)| {
                let mut p = w.info.clone();
                p.state = match &st.round {
                    Some(r) if r.pending.contains(id) => "CHECKPOINTING".into(),
                    Some(_) => "CHECKPOINTED".into(),
                    None => "RUNNING".into(),
                };
                p
            })
            .collect::<Vec<_>>();
        CommandReply {
            status,
            num_peers: u32::try_from(peers.len()).unwrap_or(u32::MAX),
            running: st.round.is_none(),
            interval: st.interval,
            peers,
            images,
            message,
        }
    }

    fn request_exit(&self, st: &mut State, code: i32) {
        if st.exit.is_none() {
            st.exit = Some(code);
        }
        self.cv.notify_all();
    }

    fn set_interval(&self, st: &mut State, secs: u32) {
        st.interval = secs;
        st.next_ckpt = (secs > 0).then(|| Instant::now() + Duration::from_secs(u64::from(secs)));
        self.cv.notify_all();
    }

    /// Second barrier of a round: once every worker still in it is suspended, tell them all.
    fn release_if_all_suspended(&self, st: &mut State) {
        let State { round, workers, .. } = st;
        let Some(r) = round.as_mut().filter(|r| r.unsuspended.is_empty() && !r.released) else { return };
        r.released = true;
        r.undrained = r.pending.clone();
        let msg = FromCoord::AllSuspended { generation: r.generation, tcp: std::mem::take(&mut r.tcp) };
        for id in &r.pending {
            if let Some(w) = workers.get_mut(id) {
                send_to(w, &msg);
            }
        }
    }

    /// Third barrier, only when some TCP connection is drained (every worker then reports
    /// Drained): once all have, every drained connection's bytes are on its reading side.
    fn release_if_all_drained(&self, st: &mut State) {
        let State { round, workers, .. } = st;
        let Some(r) = round.as_mut().filter(|r| r.released && r.undrained.is_empty() && !r.drain_released) else { return };
        r.drain_released = true;
        let msg = FromCoord::AllDrained { generation: r.generation };
        for id in &r.pending {
            if let Some(w) = workers.get_mut(id) {
                send_to(w, &msg);
            }
        }
    }

    fn broadcast(&self, st: &mut State, msg: &FromCoord) {
        for w in st.workers.values_mut() {
            send_to(w, msg);
        }
    }

    /// Begin a round: every worker gets DoCheckpoint. The caller must then call
    /// finish_checkpoint (directly or on a helper thread) exactly once.
    fn start_checkpoint(&self, st: &mut State, kill_after: bool) -> Result<u64, CommandStatus> {
        if st.round.is_some() {
            return Err(CommandStatus::Busy);
        }
        if st.workers.is_empty() {
            return Err(CommandStatus::NoPeers);
        }
        st.generation += 1;
        let generation = st.generation;
        let ckpt_dir = self.opts.ckpt_dir.as_ref().map(|d| d.to_string_lossy().into_owned());
        let mut round = Round {
            generation,
            kill_after,
            unsuspended: BTreeSet::new(),
            released: false,
            tcp: Vec::new(),
            undrained: BTreeSet::new(),
            drain_released: false,
            pending: BTreeSet::new(),
            done: Vec::new(),
        };
        let msg = FromCoord::DoCheckpoint { generation, ckpt_dir };
        for (id, w) in st.workers.iter_mut() {
            if send_to(w, &msg) {
                round.pending.insert(*id);
                round.unsuspended.insert(*id);
            } else {
                round.done.push(Done { host: w.info.hostname.clone(), image: String::new(), error: Some("connection lost".into()) });
            }
        }
        self.note(&format!("checkpoint {generation}: {} process(es)", st.workers.len()));
        st.round = Some(round);
        self.cv.notify_all();
        Ok(generation)
    }

    /// Wait until every worker of round `generation` reported, write the restart script, let the
    /// workers resume (or kill them). Returns the reply and whether the coordinator should exit.
    fn finish_checkpoint(&self, generation: u64) -> (CommandReply, bool) {
        let mut st = self.lock();
        while st.round.as_ref().is_some_and(|r| r.generation == generation && !r.pending.is_empty()) {
            st = self.wait(st);
        }
        let Some(round) = st.round.take_if(|r| r.generation == generation) else {
            // Cannot happen (one finisher per round); answer something sensible anyway.
            return (self.reply(&st, CommandStatus::CheckpointFailed, Vec::new(), "checkpoint lost".into()), false);
        };
        let errors: Vec<String> = round.done.iter().filter_map(|d| d.error.clone()).collect();
        let ok = errors.is_empty() && !round.done.is_empty();
        let images: Vec<String> = round.done.iter().filter(|d| !d.image.is_empty()).map(|d| d.image.clone()).collect();
        let mut message = String::new();
        if ok {
            let script_images: Vec<ScriptImage> =
                round.done.iter().filter(|d| !d.image.is_empty()).map(|d| ScriptImage { host: d.host.clone(), path: d.image.clone() }).collect();
            match self.write_restart_script(generation, &script_images) {
                Ok(p) => self.note(&format!("checkpoint {generation} done; restart script: {}", p.display())),
                Err(e) => {
                    message = format!("cannot write the restart script: {e}");
                    self.warn(&message);
                }
            }
        } else {
            let why = if errors.is_empty() { "no process of the computation was left to checkpoint".to_string() } else { errors.join("; ") };
            message = format!("checkpoint {generation} failed: {why}");
            self.warn(&message);
        }
        let exit = ok && self.opts.exit_after_ckpt;
        // A failed --kcheckpoint leaves the computation running: killing it would lose
        // the work with no image to restart from.
        let kill = (round.kill_after && ok) || exit;
        if kill {
            self.broadcast(&mut st, &FromCoord::Kill);
        } else {
            self.broadcast(&mut st, &FromCoord::Resume);
        }
        if st.interval > 0 {
            st.next_ckpt = Some(Instant::now() + Duration::from_secs(u64::from(st.interval)));
        }
        self.cv.notify_all();
        let status = if ok { CommandStatus::Success } else { CommandStatus::CheckpointFailed };
        let mut reply = self.reply(&st, status, images, message);
        reply.running = !kill;
        (reply, exit)
    }

    fn write_restart_script(&self, generation: u64, images: &[ScriptImage]) -> std::io::Result<PathBuf> {
        let dir = match &self.opts.ckpt_dir {
            Some(d) => d.clone(),
            None => images.first().and_then(|i| Path::new(&i.path).parent()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        };
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let restart_bin = locate::find_sibling("dmtcp_restart")
            .and_then(|p| std::fs::canonicalize(&p).ok().or(Some(p)))
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dmtcp_restart".into());
        let text = restart_script(&ScriptSpec {
            restart_bin: &restart_bin,
            coord_host: "localhost",
            coord_port: self.port,
            local_host: &self.hostname,
            coord_id: &self.coord_id,
            generation,
            images,
        });
        let main = dir.join(RESTART_SCRIPT);
        write_atomic(&main, text.as_bytes(), 0o755)?;
        // DMTCP also keeps a per-coordinator copy, so two computations sharing a directory
        // can each still find their own.
        let unique = dir.join(format!("dmtcp_restart_script_{}.sh", self.coord_id));
        if let Err(e) = write_atomic(&unique, text.as_bytes(), 0o755) {
            self.warn(&format!("cannot write {}: {e}", unique.display()));
        }
        Ok(main)
    }

    /// Carry out one dmtcp_command request. `from_worker`: sent on a worker's own connection,
    /// whose reader thread must keep reading, so checkpoints never block there.
    fn handle_command(self: &Arc<Self>, cmd: &Command, from_worker: bool) -> (CommandReply, bool) {
        let mut st = self.lock();
        match *cmd {
            Command::Checkpoint { blocking, kill_after } => match self.start_checkpoint(&mut st, kill_after) {
                Err(status) => (self.reply(&st, status, Vec::new(), String::new()), false),
                Ok(generation) if blocking && !from_worker => {
                    drop(st);
                    self.finish_checkpoint(generation)
                }
                Ok(generation) => {
                    let reply = self.reply(&st, CommandStatus::Success, Vec::new(), String::new());
                    drop(st);
                    self.finish_in_background(generation);
                    (reply, false)
                }
            },
            Command::Status | Command::List => (self.reply(&st, CommandStatus::Success, Vec::new(), String::new()), false),
            Command::SetInterval(secs) => {
                self.set_interval(&mut st, secs);
                self.note(&format!("checkpoint interval set to {secs}"));
                (self.reply(&st, CommandStatus::Success, Vec::new(), String::new()), false)
            }
            Command::Kill => {
                self.note("killing the computation");
                self.broadcast(&mut st, &FromCoord::Kill);
                (self.reply(&st, CommandStatus::Success, Vec::new(), String::new()), false)
            }
            Command::Quit => {
                self.note("killing the computation and quitting");
                self.broadcast(&mut st, &FromCoord::Kill);
                (self.reply(&st, CommandStatus::Success, Vec::new(), String::new()), true)
            }
        }
    }

    fn finish_in_background(self: &Arc<Self>, generation: u64) {
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new().name("ckpt-round".into()).spawn(move || {
            let (_, exit) = me.finish_checkpoint(generation);
            if exit {
                let mut st = me.lock();
                me.request_exit(&mut st, 0);
            }
        });
        if let Err(e) = spawned {
            // No thread: finish it here rather than leave the workers suspended forever.
            self.warn(&format!("cannot start a thread ({e}); finishing the checkpoint inline"));
            let (_, exit) = self.finish_checkpoint(generation);
            if exit {
                let mut st = self.lock();
                self.request_exit(&mut st, 0);
            }
        }
    }

    // ----- connections

    fn serve(self: Arc<Self>, mut stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        match protocol::recv::<_, ToCoord>(&mut stream) {
            Ok(ToCoord::Hello { unique_pid, pid, prog, hostname, restarted, interval }) => {
                let info = PeerInfo { unique_pid, pid, prog, hostname, state: "RUNNING".into() };
                self.serve_worker(stream, info, restarted, interval)
            }
            Ok(ToCoord::Command(cmd)) => self.serve_commands(stream, cmd),
            Ok(other) => self.warn(&format!("dropping a client that began with {other:?}")),
            // Probes (connect, then close) and garbage end here, silently.
            Err(_) => {}
        }
    }

    fn serve_commands(self: Arc<Self>, mut stream: TcpStream, first: Command) {
        let mut cmd = first;
        loop {
            self.lock().replies_in_flight += 1;
            let (reply, exit) = self.handle_command(&cmd, false);
            let sent = protocol::send(&mut stream, &FromCoord::Reply(reply));
            {
                let mut st = self.lock();
                st.replies_in_flight -= 1;
                if exit {
                    self.request_exit(&mut st, 0);
                }
                self.cv.notify_all();
            }
            if sent.is_err() {
                return;
            }
            cmd = match protocol::recv::<_, ToCoord>(&mut stream) {
                Ok(ToCoord::Command(c)) => c,
                _ => return,
            };
        }
    }

    fn serve_worker(self: Arc<Self>, mut stream: TcpStream, info: PeerInfo, restarted: bool, interval: u32) {
        let writer = match stream.try_clone() {
            Ok(w) => w,
            Err(e) => return self.warn(&format!("dropping {}: {e}", info.prog)),
        };
        let _ = writer.set_write_timeout(Some(WRITE_TIMEOUT));
        let host = info.hostname.clone();
        let what = format!("{}[{}]@{}", info.prog, info.pid, info.hostname);
        let id = {
            let mut st = self.lock();
            let id = st.next_id;
            st.next_id += 1;
            let mut w = Worker { info, writer };
            if !send_to(&mut w, &FromCoord::Welcome { generation: st.generation }) {
                return;
            }
            st.workers.insert(id, w);
            st.joined_ever = true;
            if interval > 0 && st.interval == 0 {
                self.set_interval(&mut st, interval);
            }
            self.note(&format!("{} {what} (peers: {})", if restarted { "restarted:" } else { "joined:" }, st.workers.len()));
            self.cv.notify_all();
            id
        };
        loop {
            match protocol::recv::<_, ToCoord>(&mut stream) {
                Ok(ToCoord::CheckpointDone { generation, image, error }) => {
                    let mut st = self.lock();
                    if let Some(r) = st.round.as_mut().filter(|r| r.generation == generation) {
                        if r.pending.remove(&id) {
                            r.done.push(Done { host: host.clone(), image, error });
                            self.cv.notify_all();
                        }
                    }
                }
                Ok(ToCoord::RequestCheckpoint) => {
                    let mut st = self.lock();
                    match self.start_checkpoint(&mut st, false) {
                        Ok(generation) => {
                            drop(st);
                            self.finish_in_background(generation);
                        }
                        Err(CommandStatus::Busy) => {
                            self.note(&format!("checkpoint requested by {what}: queued after the current one"));
                            st.worker_request = true;
                            self.cv.notify_all();
                        }
                        Err(status) => self.note(&format!("checkpoint requested by {what} not started: {status:?}")),
                    }
                }
                Ok(ToCoord::Command(cmd)) => {
                    let (reply, exit) = self.handle_command(&cmd, true);
                    let mut st = self.lock();
                    if let Some(w) = st.workers.get_mut(&id) {
                        send_to(w, &FromCoord::Reply(reply));
                    }
                    if exit {
                        self.request_exit(&mut st, 0);
                    }
                }
                Ok(ToCoord::Suspended { generation, tcp }) => {
                    let mut st = self.lock();
                    if let Some(r) = st.round.as_mut().filter(|r| r.generation == generation) {
                        if r.unsuspended.remove(&id) {
                            r.tcp.extend(tcp);
                            self.release_if_all_suspended(&mut st);
                        }
                    }
                }
                Ok(ToCoord::Drained { generation }) => {
                    let mut st = self.lock();
                    if let Some(r) = st.round.as_mut().filter(|r| r.generation == generation) {
                        if r.undrained.remove(&id) {
                            self.release_if_all_drained(&mut st);
                        }
                    }
                }
                // A second Hello changes nothing.
                Ok(ToCoord::Hello { .. }) => {}
                Err(_) => break,
            }
        }
        let mut st = self.lock();
        st.workers.remove(&id);
        let mut ended_early = false;
        if let Some(r) = st.round.as_mut() {
            let (was_unsuspended, was_undrained) = (r.unsuspended.remove(&id), r.undrained.remove(&id));
            if r.pending.remove(&id) {
                if was_unsuspended {
                    // It exited or executed another program before it stopped for this round
                    // (a shell's short-lived child): it is not part of this checkpoint, as in DMTCP.
                    ended_early = true;
                } else {
                    r.done.push(Done { host, image: String::new(), error: Some(format!("{what} disconnected during the checkpoint")) });
                }
            }
            if was_unsuspended {
                self.release_if_all_suspended(&mut st);
            }
            // (In a round without drained connections nobody waits for AllDrained: harmless.)
            if was_undrained {
                self.release_if_all_drained(&mut st);
            }
        }
        if ended_early {
            self.note(&format!("{what} ended before it was suspended: not in this checkpoint"));
        }
        self.note(&format!("disconnected: {what} (peers: {})", st.workers.len()));
        if self.opts.exit_on_last && st.joined_ever && st.workers.is_empty() {
            self.note("last process disconnected: exiting (--exit-on-last)");
            self.request_exit(&mut st, 0);
        }
        self.cv.notify_all();
    }

    /// Interval checkpoints. A tick that finds no workers or a round running just reschedules.
    fn timer_loop(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if st.exit.is_some() {
                return;
            }
            if st.worker_request && st.round.is_none() {
                st.worker_request = false;
                if let Ok(generation) = self.start_checkpoint(&mut st, false) {
                    drop(st);
                    self.finish_in_background(generation);
                    st = self.lock();
                }
                continue;
            }
            match st.next_ckpt {
                None => st = self.wait(st),
                Some(t) => {
                    let now = Instant::now();
                    if now < t {
                        st = self.wait_for(st, t - now);
                        continue;
                    }
                    st.next_ckpt = None;
                    match self.start_checkpoint(&mut st, false) {
                        Ok(generation) => {
                            drop(st);
                            self.finish_in_background(generation);
                            st = self.lock();
                        }
                        Err(_) => {
                            if st.interval > 0 {
                                st.next_ckpt = Some(now + Duration::from_secs(u64::from(st.interval)));
                            }
                        }
                    }
                }
            }
        }
    }

    fn interactive_loop(self: Arc<Self>) {
        print_help();
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { return };
            let cmd = match line.trim() {
                "" => continue,
                "c" => Command::Checkpoint { blocking: false, kill_after: false },
                "s" => Command::Status,
                "l" => Command::List,
                "k" => Command::Kill,
                "q" => Command::Quit,
                "i" => {
                    let st = self.lock();
                    println!("Checkpoint Interval: {}", interval_text(st.interval));
                    continue;
                }
                "h" | "?" => {
                    print_help();
                    continue;
                }
                other => {
                    println!("unknown command {other:?}; type '?' for help");
                    continue;
                }
            };
            let (reply, exit) = self.handle_command(&cmd, false);
            match cmd {
                Command::Status => {
                    println!("Status...\n  Host: {}\n  Port: {}", self.hostname, self.port);
                    println!("  NUM_PEERS={}\n  RUNNING={}", reply.num_peers, if reply.running { "yes" } else { "no" });
                    println!("Checkpoint Interval: {}", interval_text(reply.interval));
                }
                Command::List => {
                    println!("Client List:\n#, PROG[PID]@HOST, DMTCP-UNIQUEPID, STATE");
                    for (i, p) in reply.peers.iter().enumerate() {
                        println!("{}, {}[{}]@{}, {}, {}", i + 1, p.prog, p.pid, p.hostname, p.unique_pid, p.state);
                    }
                }
                _ if reply.status != CommandStatus::Success => {
                    if reply.message.is_empty() {
                        println!("Error: {}", status_text(reply.status));
                    } else {
                        println!("Error: {}: {}", status_text(reply.status), reply.message);
                    }
                }
                _ => {}
            }
            if exit {
                let mut st = self.lock();
                self.request_exit(&mut st, 0);
                return;
            }
        }
    }
}

/// What a failed request means, in words (dmtcp_command and the prompt print it).
pub fn status_text(status: CommandStatus) -> &'static str {
    match status {
        CommandStatus::Success => "success",
        CommandStatus::NotRunning => "coordinator not running",
        CommandStatus::NoPeers => "no processes are connected to the coordinator",
        CommandStatus::CheckpointFailed => "checkpoint failed",
        CommandStatus::Busy => "a checkpoint is already in progress",
    }
}

pub fn interval_text(secs: u32) -> String {
    if secs == 0 {
        "0 (checkpoint on demand)".into()
    } else {
        secs.to_string()
    }
}

fn print_help() {
    println!(
        "COMMANDS:\n  l : List connected nodes\n  s : Print status message\n  c : Checkpoint all nodes\n  \
         i : Print current checkpoint interval\n      (To change checkpoint interval, use dmtcp_command)\n  \
         k : Kill all nodes\n  q : Kill all nodes and quit\n  ? : Show this message"
    );
}

/// A terminal we own: reading a terminal from a background job (`dmtcp_coordinator &`)
/// would stop the coordinator with SIGTTIN.
fn stdin_is_foreground_tty() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only inspect the descriptor and our process.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// A daemon must not keep its starter's pipes (a test harness reading our starter's output
/// would wait for EOF forever): close every inherited descriptor above stderr.
fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(d) => d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect(),
        Err(_) => return,
    };
    for fd in fds.into_iter().filter(|&fd| fd > 2) {
        // SAFETY: nothing in this process uses these descriptors yet (called first thing in
        // run(), single-threaded); the read_dir handle is already closed, EBADF is harmless.
        unsafe { libc::close(fd) };
    }
}

/// fork; the parent exits 0 (the socket already listens), the child starts a new session
/// with stdio on /dev/null. Must run while the process has a single thread.
fn daemonize() -> Result<(), CoordinatorError> {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the process is single-threaded here, so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(CoordinatorError::Daemon(std::io::Error::last_os_error()));
    }
    if pid > 0 {
        // SAFETY: _exit skips atexit handlers and stdio flushing; both streams were flushed above.
        unsafe { libc::_exit(0) }
    }
    // SAFETY: plain syscalls on our own process and descriptors.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    Ok(())
}

/// Run the coordinator until it exits; returns its exit code.
pub fn run(opts: Options) -> Result<i32, CoordinatorError> {
    if opts.daemon {
        close_inherited_fds();
    }
    let log = match &opts.logfile {
        Some(p) => Some(Mutex::new(
            OpenOptions::new().append(true).create(true).open(p).map_err(|source| CoordinatorError::Logfile { path: p.clone(), source })?,
        )),
        None => None,
    };
    let listener = TcpListener::bind(("0.0.0.0", opts.port)).map_err(|source| CoordinatorError::Bind { port: opts.port, source })?;
    let port = listener.local_addr().map_err(|source| CoordinatorError::Bind { port: opts.port, source })?.port();
    if let Some(pf) = &opts.port_file {
        write_atomic(pf, format!("{port}\n").as_bytes(), 0o644).map_err(|source| CoordinatorError::PortFile { path: pf.clone(), source })?;
    }
    if opts.daemon {
        daemonize()?;
    }
    let hostname = local_hostname();
    let start = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let safe_host: String = hostname.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect();
    let coord_id = format!("{safe_host}-{}-{start:x}", std::process::id());
    let interactive = !opts.daemon && stdin_is_foreground_tty();
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            generation: 0,
            interval: 0,
            next_ckpt: None,
            workers: BTreeMap::new(),
            next_id: 1,
            joined_ever: false,
            round: None,
            exit: None,
            replies_in_flight: 0,
            worker_request: false,
        }),
        cv: Condvar::new(),
        opts: opts.clone(),
        port,
        hostname,
        coord_id,
        log,
    });
    {
        let mut st = shared.lock();
        shared.set_interval(&mut st, opts.interval);
    }
    shared.note(&format!(
        "listening on port {port} (host {}); checkpoint interval {}; exit on last client: {}",
        shared.hostname,
        interval_text(opts.interval),
        u8::from(opts.exit_on_last)
    ));

    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| std::thread::Builder::new().name(name.into()).spawn(f).map_err(CoordinatorError::Daemon);
    let s = Arc::clone(&shared);
    spawn("timer", Box::new(move || s.timer_loop()))?;
    let s = Arc::clone(&shared);
    spawn(
        "accept",
        Box::new(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(stream) => {
                        let s2 = Arc::clone(&s);
                        if let Err(e) = std::thread::Builder::new().name("conn".into()).spawn(move || s2.serve(stream)) {
                            s.warn(&format!("dropping a connection: cannot start a thread: {e}"));
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        s.warn(&format!("accept: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        }),
    )?;
    if interactive {
        let s = Arc::clone(&shared);
        spawn("stdin", Box::new(move || s.interactive_loop()))?;
    }

    let deadline = opts.timeout.map(|secs| Instant::now() + Duration::from_secs(secs));
    let mut st = shared.lock();
    let code = loop {
        if let Some(code) = st.exit {
            break code;
        }
        match deadline {
            Some(d) => {
                let now = Instant::now();
                if now >= d {
                    shared.note("--timeout reached: exiting");
                    break 0;
                }
                st = shared.wait_for(st, d - now);
            }
            None => st = shared.wait(st),
        }
    };
    st.exit = Some(code);
    shared.cv.notify_all();
    // Let replies being written (e.g. to the Quit that stopped us) reach their clients.
    let grace = Instant::now() + REPLY_GRACE;
    while st.replies_in_flight > 0 && Instant::now() < grace {
        st = shared.wait_for(st, Duration::from_millis(50));
    }
    for w in st.workers.values() {
        // FIN after any Kill already queued, rather than a reset when we exit.
        let _ = w.writer.shutdown(Shutdown::Write);
    }
    Ok(code)
}

/// The dmtcp_coordinator command.
pub fn main() -> ! {
    let args: Args = crate::cli::parse_args(PROG);
    let opts = Options::from_args(args).unwrap_or_else(|e| crate::cli::die(PROG, e));
    match run(opts) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("{PROG}: {e}");
            std::process::exit(fail_rc())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn interval_texts() {
        assert_eq!(interval_text(0), "0 (checkpoint on demand)");
        assert_eq!(interval_text(30), "30");
    }

    #[test]
    fn split_images() {
        assert_eq!(split_image("/a/b/ckpt_x.dmtcp"), ("/a/b".into(), "ckpt_x.dmtcp".into()));
        assert_eq!(split_image("ckpt_x.dmtcp"), (".".into(), "ckpt_x.dmtcp".into()));
    }

    fn spec<'a>(images: &'a [ScriptImage]) -> ScriptSpec<'a> {
        ScriptSpec {
            restart_bin: "/opt/dmtcp/bin/dmtcp_restart",
            coord_host: "localhost",
            coord_port: 7779,
            local_host: "node1",
            coord_id: "node1-1-1",
            generation: 3,
            images,
        }
    }

    #[test]
    fn single_local_image_execs() {
        let images = [ScriptImage { host: "node1".into(), path: "/ck/ckpt_a_1.dmtcp".into() }];
        let s = restart_script(&spec(&images));
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("dmt_restart='/opt/dmtcp/bin/dmtcp_restart'"));
        assert!(
            s.contains("exec \"$dmt_restart\" --coord-host \"$coord_host\" --coord-port \"$coord_port\" \"$@\" \"$(img '/ck' 'ckpt_a_1.dmtcp')\"")
        );
        assert!(!s.contains("\nssh "));
    }

    #[test]
    fn remote_hosts_get_ssh_lines_local_first() {
        let images = [
            ScriptImage { host: "node2".into(), path: "/ck/ckpt_b.dmtcp".into() },
            ScriptImage { host: "node1".into(), path: "/ck/ckpt_a.dmtcp".into() },
        ];
        let s = restart_script(&spec(&images));
        let local = s.find("# Host: node1").expect("local group");
        let remote = s.find("# Host: node2").expect("remote group");
        assert!(local < remote);
        assert!(s.contains("ssh 'node2' "));
        assert!(s.contains("wait \"$p\""));
    }

    /// Run the script with `sh` against a fake dmtcp_restart that prints its arguments.
    #[test]
    fn script_runs_and_parses_options() {
        let dir = std::env::temp_dir().join(format!("dmtcp-script-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let fake = dir.join("fake_restart");
        std::fs::write(&fake, "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\necho\n").expect("fake");
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let images = [ScriptImage { host: "node1".into(), path: "/ck dir/ckpt_a.dmtcp".into() }];
        let mut sp = spec(&images);
        let fake_s = fake.to_string_lossy().into_owned();
        sp.restart_bin = &fake_s;
        let script = dir.join(RESTART_SCRIPT);
        write_atomic(&script, restart_script(&sp).as_bytes(), 0o755).expect("write");
        let out = std::process::Command::new(&script)
            .args(["-p", "1234", "-q", "--restartdir", "/new place", "--coord-host=h2"])
            .env_remove("DMTCP_COORD_HOST")
            .env_remove("DMTCP_COORD_PORT")
            .output()
            .expect("run script");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text.trim(), "[--coord-host][h2][--coord-port][1234][-q][/new place/ckpt_a.dmtcp]");
        let out = std::process::Command::new(&script).env_remove("DMTCP_COORD_HOST").env_remove("DMTCP_COORD_PORT").output().expect("run");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[--coord-host][localhost][--coord-port][7779][/ck dir/ckpt_a.dmtcp]");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The restart script of a two-host computation, run with a fake `ssh` on PATH that records
    /// its arguments and runs the remote command here: one local dmtcp_restart with the local
    /// image, one through `ssh node2` with node2's image (a path with a space, quoted for the
    /// remote shell) reaching the coordinator by this host's name; the script's exit code is the
    /// failing one's.
    #[test]
    fn two_host_script_runs_through_ssh() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("dmtcp-script-ssh-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).expect("temp dir");
        let log = dir.join("log");
        let exe = |path: &Path, text: String| {
            std::fs::write(path, text).expect("write a fake command");
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        // ssh joins its arguments into one command line for the remote shell, as here.
        exe(&bin.join("ssh"), format!("#!/bin/sh\nprintf 'ssh %s\\n' \"$*\" >> '{}'\nshift\nexec sh -c \"$*\"\n", log.display()));
        let fake = dir.join("fake restart");
        exe(
            &fake,
            format!(
                "#!/bin/sh\nline=restart\nfor a in \"$@\"; do line=\"$line [$a]\"; done\nprintf '%s\\n' \"$line\" >> '{}'\n\
                 case \"$*\" in *remote*) exit 3 ;; esac\n",
                log.display()
            ),
        );
        let images = [
            ScriptImage { host: "node2".into(), path: "/ck dir/ckpt_remote.dmtcp".into() },
            ScriptImage { host: "node1".into(), path: "/ck/ckpt_local.dmtcp".into() },
        ];
        let fake_s = fake.to_string_lossy().into_owned();
        let mut sp = spec(&images);
        sp.restart_bin = &fake_s;
        let script = dir.join(RESTART_SCRIPT);
        write_atomic(&script, restart_script(&sp).as_bytes(), 0o755).expect("write");
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let out = std::process::Command::new(&script)
            .args(["-p", "1234", "-q"])
            .env("PATH", path)
            .env_remove("DMTCP_COORD_HOST")
            .env_remove("DMTCP_COORD_PORT")
            .output()
            .expect("run script");
        assert_eq!(out.status.code(), Some(3), "the remote dmtcp_restart's exit code: {}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&log).expect("log");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "restart [--coord-host] [localhost] [--coord-port] [1234] [-q] [/ck/ckpt_local.dmtcp]".to_string(),
                "restart [--coord-host] [node1] [--coord-port] [1234] [-q] [/ck dir/ckpt_remote.dmtcp]".to_string(),
                format!("ssh node2 '{fake_s}' --coord-host node1 --coord-port 1234 -q '/ck dir/ckpt_remote.dmtcp'"),
            ],
            "log:\n{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn args_parse() {
        let a = Args::try_parse_from(["c", "--coord-port", "0", "--exit-on-last", "-i", "5", "-q"]).expect("parse");
        assert_eq!(a.port, Some(0));
        assert_eq!(a.interval, Some(5));
        assert!(a.exit_on_last && a.quiet);
        assert!(Args::try_parse_from(["c", "--bogus"]).is_err());
    }
}
