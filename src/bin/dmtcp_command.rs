//! dmtcp_command: send a request to the coordinator (DMTCP-compatible flags and output).

use clap::{ArgGroup, Parser};
use dmtcp_engine::protocol::{Command, CommandReply, CommandStatus};
use dmtcp_rs::cli::{die, fail_rc};
use dmtcp_rs::coord_client::{self, CoordAddr};
use dmtcp_rs::coordinator::{interval_text, status_text};

const PROG: &str = "dmtcp_command";

#[derive(Parser, Debug)]
#[command(
    name = PROG,
    version,
    about = "Send a command to the DMTCP coordinator",
    disable_help_flag = true,
    group(ArgGroup::new("cmd").required(true).multiple(false))
)]
struct Args {
    /// Coordinator host (DMTCP_COORD_HOST, default localhost)
    #[arg(short = 'h', long = "coord-host", alias = "host")]
    coord_host: Option<String>,
    /// Coordinator port (DMTCP_COORD_PORT, default 7779)
    #[arg(short = 'p', long = "coord-port", alias = "port")]
    coord_port: Option<u16>,
    /// Checkpoint all processes
    #[arg(short = 'c', long = "checkpoint", group = "cmd")]
    checkpoint: bool,
    /// Checkpoint and return only when done (-bc)
    #[arg(long = "bcheckpoint", group = "cmd")]
    bcheckpoint: bool,
    /// Checkpoint, then kill all processes (-kc)
    #[arg(long = "kcheckpoint", group = "cmd")]
    kcheckpoint: bool,
    /// Print the coordinator's status
    #[arg(short = 's', long = "status", group = "cmd")]
    status: bool,
    /// List the connected processes
    #[arg(short = 'l', long = "list", group = "cmd")]
    list: bool,
    /// Set the checkpoint interval in seconds (0 = on demand)
    #[arg(short = 'i', long = "interval", group = "cmd", value_name = "S")]
    interval: Option<u32>,
    /// Kill all processes
    #[arg(short = 'k', long = "kill", group = "cmd")]
    kill: bool,
    /// Kill all processes and quit the coordinator
    #[arg(short = 'q', long = "quit", group = "cmd")]
    quit: bool,
    /// Print the result as one JSON object
    #[arg(long = "json")]
    json: bool,
    #[arg(long = "help", action = clap::ArgAction::Help, help = "Print help")]
    help: Option<bool>,
}

/// DMTCP's two-letter short flags (-bc, -kc) and its old one-word commands (`dmtcp_command s`)
/// are beyond clap: rewrite them into long flags first.
fn preprocess(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.into_iter();
    if let Some(prog) = it.next() {
        out.push(prog);
    }
    let mut seen_positional = false;
    let mut takes_value = false;
    for a in it {
        if takes_value {
            takes_value = false;
            out.push(a);
            continue;
        }
        let mapped = match a.as_str() {
            "-bc" => "--bcheckpoint",
            "-kc" => "--kcheckpoint",
            "-h" | "--coord-host" | "--host" | "-p" | "--coord-port" | "--port" | "-i" | "--interval" => {
                takes_value = true;
                ""
            }
            s if !s.starts_with('-') && !seen_positional => {
                seen_positional = true;
                match s {
                    "s" => "--status",
                    "c" => "--checkpoint",
                    "bc" => "--bcheckpoint",
                    "kc" => "--kcheckpoint",
                    "k" => "--kill",
                    "q" => "--quit",
                    "l" => "--list",
                    "i" => {
                        takes_value = true;
                        "--interval"
                    }
                    _ => "",
                }
            }
            _ => "",
        };
        out.push(if mapped.is_empty() { a } else { mapped.to_string() });
    }
    out
}

/// Like cli::parse_args, but over the rewritten argv.
fn parse(argv: Vec<String>) -> Args {
    match Args::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line").trim_start_matches("error: ");
            die(PROG, format!("{first} (try --help)"))
        }
    }
}

/// The request and DMTCP's name for it.
fn command_of(a: &Args) -> (Command, &'static str) {
    if a.checkpoint {
        (Command::Checkpoint { blocking: false, kill_after: false }, "DMT_CHECKPOINT")
    } else if a.bcheckpoint {
        (Command::Checkpoint { blocking: true, kill_after: false }, "DMT_BLOCKING_CKPT")
    } else if a.kcheckpoint {
        (Command::Checkpoint { blocking: true, kill_after: true }, "DMT_KILL_AFTER_CKPT")
    } else if a.list {
        (Command::List, "DMT_LIST")
    } else if let Some(s) = a.interval {
        (Command::SetInterval(s), "DMT_INTERVAL")
    } else if a.kill {
        (Command::Kill, "DMT_KILL")
    } else if a.quit {
        (Command::Quit, "DMT_QUIT")
    } else {
        (Command::Status, "DMT_STATUS")
    }
}

fn status_name(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Success => "DMT_COORD_SUCCESS",
        CommandStatus::NotRunning => "DMT_COORD_NOT_RUNNING",
        CommandStatus::NoPeers => "DMT_COORD_NO_PEERS",
        CommandStatus::CheckpointFailed => "DMT_COORD_CKPT_FAILED",
        CommandStatus::Busy => "DMT_COORD_BUSY",
    }
}

fn json_of(name: &str, addr: &CoordAddr, status: CommandStatus, reply: Option<&CommandReply>, cmd: &Command) -> serde_json::Value {
    let mut v = serde_json::json!({
        "schema_version": 1,
        "command": name,
        "command_status": status_name(status),
        "coordinator_host": addr.host,
        "coordinator_port": addr.port,
    });
    if let (Some(r), serde_json::Value::Object(m)) = (reply, &mut v) {
        match cmd {
            Command::Status | Command::SetInterval(_) => {
                m.insert("num_peers".into(), r.num_peers.into());
                m.insert("running".into(), r.running.into());
                m.insert("checkpoint_interval".into(), r.interval.into());
            }
            Command::List => {
                m.insert("num_peers".into(), r.num_peers.into());
                let peers: Vec<serde_json::Value> = r
                    .peers
                    .iter()
                    .map(|p| serde_json::json!({"unique_pid": p.unique_pid, "pid": p.pid, "prog": p.prog, "hostname": p.hostname, "state": p.state}))
                    .collect();
                m.insert("peers".into(), peers.into());
            }
            Command::Checkpoint { .. } => {
                m.insert("num_peers".into(), r.num_peers.into());
                m.insert("images".into(), r.images.clone().into());
            }
            Command::Kill | Command::Quit => {}
        }
        if !r.message.is_empty() {
            m.insert("message".into(), r.message.clone().into());
        }
    }
    v
}

fn print_text(addr: &CoordAddr, cmd: &Command, r: &CommandReply) {
    match cmd {
        Command::Status => {
            println!("Coordinator:\n  Host: {}\n  Port: {}", addr.host, addr.port);
            println!("Status...\n  NUM_PEERS={}\n  RUNNING={}", r.num_peers, if r.running { "yes" } else { "no" });
            println!("Checkpoint Interval: {}", interval_text(r.interval));
        }
        Command::List => {
            println!("Client List:\n#, PROG[PID]@HOST, DMTCP-UNIQUEPID, STATE");
            for (i, p) in r.peers.iter().enumerate() {
                println!("{}, {}[{}]@{}, {}, {}", i + 1, p.prog, p.pid, p.hostname, p.unique_pid, p.state);
            }
        }
        Command::SetInterval(_) => println!("Checkpoint Interval: {}", interval_text(r.interval)),
        _ => {}
    }
}

fn failure_text(status: CommandStatus, r: &CommandReply) -> String {
    if r.message.is_empty() {
        status_text(status).to_string()
    } else {
        format!("{}: {}", status_text(status), r.message)
    }
}

fn main() {
    let args = parse(preprocess(std::env::args()));
    let addr = coord_client::coord_addr(args.coord_host.as_deref(), args.coord_port);
    let (cmd, name) = command_of(&args);
    match coord_client::send_command(&addr, cmd.clone()) {
        Ok(reply) => {
            if args.json {
                println!("{}", json_of(name, &addr, reply.status, Some(&reply), &cmd));
            } else {
                print_text(&addr, &cmd, &reply);
            }
            if reply.status != CommandStatus::Success {
                die(PROG, failure_text(reply.status, &reply));
            }
        }
        Err(e) => {
            if args.json {
                // Every way of failing to talk to it is, to the user, "not running".
                println!("{}", json_of(name, &addr, CommandStatus::NotRunning, None, &cmd));
            }
            eprintln!("{PROG}: {e}");
            std::process::exit(fail_rc());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(v: &[&str]) -> Vec<String> {
        preprocess(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn two_letter_flags_and_old_forms() {
        assert_eq!(pre(&["x", "-bc"]), ["x", "--bcheckpoint"]);
        assert_eq!(pre(&["x", "-p", "7", "-kc"]), ["x", "-p", "7", "--kcheckpoint"]);
        assert_eq!(pre(&["x", "s"]), ["x", "--status"]);
        assert_eq!(pre(&["x", "-h", "s", "c"]), ["x", "-h", "s", "--checkpoint"]);
        assert_eq!(pre(&["x", "i", "30"]), ["x", "--interval", "30"]);
        assert_eq!(pre(&["x", "-i", "c"]), ["x", "-i", "c"]);
    }

    #[test]
    fn parsing() {
        let a = Args::try_parse_from(pre(&["x", "-bc", "-p", "9"])).expect("parse");
        assert!(a.bcheckpoint);
        assert_eq!(a.coord_port, Some(9));
        assert_eq!(command_of(&a).1, "DMT_BLOCKING_CKPT");
        assert!(Args::try_parse_from(pre(&["x"])).is_err());
        assert!(Args::try_parse_from(pre(&["x", "-s", "-c"])).is_err());
        assert!(Args::try_parse_from(pre(&["x", "--bogus"])).is_err());
        let a = Args::try_parse_from(pre(&["x", "-h", "node", "--json", "l"])).expect("parse");
        assert_eq!(a.coord_host.as_deref(), Some("node"));
        assert_eq!(command_of(&a), (Command::List, "DMT_LIST"));
    }
}
