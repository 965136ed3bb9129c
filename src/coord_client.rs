//! Talking to a coordinator from the commands: finding it (DMTCP_COORD_HOST/PORT), starting one
//! when needed (dmtcp_launch, dmtcp_restart) and sending dmtcp_command requests.

use crate::locate;
use dmtcp_engine::protocol::{self, Command, CommandReply, FromCoord, ProtocolError, ToCoord, DEFAULT_PORT};
use std::io::Read;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordAddr {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for CoordAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    /// Join the coordinator at the address, or start one if none answers.
    Default,
    /// Join; it must already run.
    Join,
    /// Start a new one; fail if one already answers at the address.
    New,
    /// No coordinator at all.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    #[error("coordinator not found at {host}:{port}")]
    NotRunning { host: String, port: u16 },
    #[error("a coordinator is already running at {host}:{port}")]
    AlreadyRunning { host: String, port: u16 },
    #[error("cannot start a coordinator on remote host {0}")]
    RemoteHost(String),
    #[error("cannot start dmtcp_coordinator: {0}")]
    StartFailed(String),
    #[error("cannot resolve coordinator host {host}: {source}")]
    Resolve { host: String, source: std::io::Error },
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("coordinator sent an unexpected message: {0}")]
    Unexpected(String),
}

/// How long to wait for a TCP connection to one address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a freshly started coordinator may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// DMTCP_COORD_HOST / DMTCP_COORD_PORT (DMTCP_PORT too) over defaults localhost:7779; CLI values win.
pub fn coord_addr(cli_host: Option<&str>, cli_port: Option<u16>) -> CoordAddr {
    let host =
        cli_host.map(str::to_string).filter(|h| !h.is_empty()).or_else(|| env_nonempty("DMTCP_COORD_HOST")).unwrap_or_else(|| "localhost".into());
    let port = cli_port
        .or_else(|| env_nonempty("DMTCP_COORD_PORT").and_then(|p| p.parse().ok()))
        .or_else(|| env_nonempty("DMTCP_PORT").and_then(|p| p.parse().ok()))
        .unwrap_or(DEFAULT_PORT);
    CoordAddr { host, port }
}

/// Whether `host` names this machine (only there can we start a coordinator).
pub fn is_local_host(host: &str) -> bool {
    if matches!(host, "" | "localhost" | "localhost.localdomain" | "::1" | "0.0.0.0") || host.starts_with("127.") {
        return true;
    }
    let me = crate::coordinator::local_hostname();
    if host == me || me.split('.').next() == Some(host) || host.split('.').next() == Some(me.as_str()) {
        return true;
    }
    // An address of one of our interfaces: binding to it succeeds only if it is ours.
    match (host, 0u16).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback() || std::net::TcpListener::bind((a.ip(), 0)).is_ok())
        }
        Err(_) => false,
    }
}

/// Connect (TCP) to a coordinator; error NotRunning if refused.
pub fn connect(addr: &CoordAddr) -> Result<TcpStream, CoordError> {
    let not_running = || CoordError::NotRunning { host: addr.host.clone(), port: addr.port };
    if addr.port == 0 {
        return Err(not_running());
    }
    let addrs: Vec<SocketAddr> =
        (addr.host.as_str(), addr.port).to_socket_addrs().map_err(|source| CoordError::Resolve { host: addr.host.clone(), source })?.collect();
    for a in addrs {
        if let Ok(s) = TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            let _ = s.set_nodelay(true);
            return Ok(s);
        }
    }
    Err(not_running())
}

/// Send one Command and wait for its Reply.
pub fn send_command(addr: &CoordAddr, cmd: Command) -> Result<CommandReply, CoordError> {
    let mut s = connect(addr)?;
    protocol::send(&mut s, &ToCoord::Command(cmd))?;
    match protocol::recv::<_, FromCoord>(&mut s)? {
        FromCoord::Reply(r) => Ok(r),
        other => Err(CoordError::Unexpected(format!("{other:?}"))),
    }
}

/// Make sure a coordinator answers at addr according to mode. For Default/New when none answers and
/// the host is local: spawn `dmtcp_coordinator --daemon --exit-on-last -q --port P [--interval S] [--ckptdir D]`
/// (P may be 0: then use --port-file in a temp dir and read the chosen port back) and wait up to 10 s until
/// it accepts. New when one already answers at a non-zero port → error. Returns the actual address.
pub fn ensure_coordinator(addr: &CoordAddr, mode: CoordMode, interval: Option<u32>, ckpt_dir: Option<&Path>) -> Result<CoordAddr, CoordError> {
    let answers = || addr.port != 0 && connect(addr).is_ok();
    match mode {
        // A coordinator of the computation's own, on a free port, that nothing else joins: it
        // runs the --interval checkpoints and the program's dmtcp_checkpoint() requests, and
        // ends with the computation (DMTCP runs these in the process itself).
        CoordMode::None => {
            let port = start_coordinator(0, interval, ckpt_dir)?;
            let private = CoordAddr { host: "127.0.0.1".into(), port };
            connect(&private)?;
            return Ok(private);
        }
        CoordMode::Join => {
            connect(addr)?;
            return Ok(addr.clone());
        }
        CoordMode::Default if answers() => return Ok(addr.clone()),
        CoordMode::New if answers() => return Err(CoordError::AlreadyRunning { host: addr.host.clone(), port: addr.port }),
        CoordMode::Default | CoordMode::New => {}
    }
    if !is_local_host(&addr.host) {
        return Err(match mode {
            CoordMode::New => CoordError::RemoteHost(addr.host.clone()),
            _ => CoordError::NotRunning { host: addr.host.clone(), port: addr.port },
        });
    }
    let port = match start_coordinator(addr.port, interval, ckpt_dir) {
        Ok(p) => p,
        // Several restarts racing to start the same coordinator (the restart script runs one
        // dmtcp_restart per image): the loser joins the winner.
        Err(e) => {
            if mode == CoordMode::Default && answers() {
                return Ok(addr.clone());
            }
            return Err(e);
        }
    };
    let actual = CoordAddr { host: addr.host.clone(), port };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if connect(&actual).is_ok() {
            return Ok(actual);
        }
        if Instant::now() >= deadline {
            return Err(CoordError::StartFailed(format!("no answer at {actual} within {} s", START_TIMEOUT.as_secs())));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes the temporary port-file directory however we leave.
struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Start a daemon coordinator; returns the port it listens on.
fn start_coordinator(port: u16, interval: Option<u32>, ckpt_dir: Option<&Path>) -> Result<u16, CoordError> {
    let exe = locate::find_sibling("dmtcp_coordinator").unwrap_or_else(|| "dmtcp_coordinator".into());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let tmp = TempDir(std::env::temp_dir().join(format!("dmtcp-coord-{}-{nanos:x}", std::process::id())));
    std::fs::create_dir_all(&tmp.0).map_err(|e| CoordError::StartFailed(format!("cannot create {}: {e}", tmp.0.display())))?;
    let port_file = tmp.0.join("port");

    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["--daemon", "--exit-on-last", "-q", "--port", &port.to_string()]);
    cmd.arg("--port-file").arg(&port_file);
    if let Some(i) = interval {
        cmd.args(["--interval", &i.to_string()]);
    }
    if let Some(d) = ckpt_dir {
        cmd.arg("--ckptdir").arg(d);
    }
    // A coordinator must not load libdmtcp.so and try to join itself.
    if let Some(pre) = std::env::var_os("LD_PRELOAD") {
        let keep: Vec<&str> = pre
            .to_str()
            .unwrap_or("")
            .split([':', ' '])
            .filter(|e| !e.is_empty() && !Path::new(e).file_name().is_some_and(|n| n.to_string_lossy().starts_with("libdmtcp")))
            .collect();
        if keep.is_empty() {
            cmd.env_remove("LD_PRELOAD");
        } else {
            cmd.env("LD_PRELOAD", keep.join(":"));
        }
    }
    // stdout/stdin never reach our caller's pipes; stderr comes to us only until the daemon
    // detaches (it then points its stdio at /dev/null), so we can report why it failed.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| CoordError::StartFailed(format!("{}: {e}", exe.display())))?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    // The --daemon parent exits only once the socket listens (or with an error).
    let status = child.wait().map_err(|e| CoordError::StartFailed(e.to_string()))?;
    if !status.success() {
        let why = err.lines().next().map(str::to_string).unwrap_or_else(|| format!("{} exited with {status}", exe.display()));
        return Err(CoordError::StartFailed(why));
    }
    if port != 0 {
        return Ok(port);
    }
    let text = std::fs::read_to_string(&port_file).map_err(|e| CoordError::StartFailed(format!("cannot read {}: {e}", port_file.display())))?;
    text.trim().parse::<u16>().ok().filter(|&p| p != 0).ok_or_else(|| CoordError::StartFailed(format!("bad port file contents {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_values_win() {
        let a = coord_addr(Some("h1"), Some(42));
        assert_eq!(a, CoordAddr { host: "h1".into(), port: 42 });
        assert_eq!(a.to_string(), "h1:42");
    }

    #[test]
    fn local_hosts() {
        assert!(is_local_host("localhost"));
        assert!(is_local_host("127.0.0.1"));
        assert!(is_local_host(&crate::coordinator::local_hostname()));
        assert!(!is_local_host("192.0.2.1"));
    }

    #[test]
    fn connect_to_closed_port_is_not_running() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let addr = CoordAddr { host: "127.0.0.1".into(), port };
        assert!(matches!(connect(&addr), Err(CoordError::NotRunning { .. })));
        assert!(matches!(ensure_coordinator(&addr, CoordMode::Join, None, None), Err(CoordError::NotRunning { .. })));
        // CoordMode::None starts a private coordinator: e2e_roundtrip no_coordinator_* covers it.
    }
}
