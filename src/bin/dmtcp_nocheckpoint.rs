//! dmtcp_nocheckpoint COMMAND [ARGS]: run a command outside the computation, as in DMTCP: without
//! libdmtcp.so and the plugins (LD_PRELOAD as it was before dmtcp_launch), so that neither it nor
//! what it starts is checkpointed.

use dmtcp_rs::cli::die;
use std::os::unix::process::CommandExt;

const PROG: &str = "dmtcp_nocheckpoint";

fn main() {
    let mut args = std::env::args_os().skip(1);
    let Some(prog) = args.next() else { die(PROG, "usage: dmtcp_nocheckpoint COMMAND [ARGS...]") };
    if prog == "--help" || prog == "-h" {
        println!("Usage: {PROG} COMMAND [ARGS...]\nRun COMMAND without checkpointing it (nor the processes it starts).");
        return;
    }
    let mut cmd = std::process::Command::new(&prog);
    cmd.args(args);
    match std::env::var_os("DMTCP_ORIG_LD_PRELOAD") {
        Some(orig) if !orig.is_empty() => cmd.env("LD_PRELOAD", orig),
        _ => cmd.env_remove("LD_PRELOAD"),
    };
    cmd.env_remove("DMTCP_ORIG_LD_PRELOAD");
    let err = cmd.exec();
    eprintln!("{PROG}: cannot execute {}: {err}", prog.to_string_lossy());
    // As a shell reports a command it cannot run.
    std::process::exit(if err.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 })
}
