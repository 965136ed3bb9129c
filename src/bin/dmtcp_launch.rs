//! dmtcp_launch: run a program under checkpoint control (DMTCP-compatible flags).

use clap::Parser;
use dmtcp_rs::cli::{die, parse_args};
use dmtcp_rs::coord_client::{self, CoordMode};
use dmtcp_rs::locate;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const PROG: &str = "dmtcp_launch";

#[derive(Parser, Debug)]
#[command(name = PROG, version, about = "Start a program under checkpoint control", disable_help_flag = true)]
struct Args {
    /// Coordinator host (DMTCP_COORD_HOST)
    #[arg(short = 'h', long = "coord-host", alias = "host")]
    coord_host: Option<String>,
    /// Coordinator port (DMTCP_COORD_PORT); 0 with --new-coordinator picks a free one
    #[arg(short = 'p', long = "coord-port", alias = "port")]
    coord_port: Option<u16>,
    /// Join an existing coordinator; fail if none is running
    #[arg(short = 'j', long = "join-coordinator", alias = "join")]
    join: bool,
    /// Start a new coordinator; fail if one already runs on the port
    #[arg(long = "new-coordinator", alias = "new")]
    new_coordinator: bool,
    /// No shared coordinator: a private one on a free port takes the --interval and
    /// dmtcp_checkpoint() checkpoints, and ends with the program
    #[arg(long = "no-coordinator")]
    no_coordinator: bool,
    /// Seconds between automatic checkpoints (DMTCP_CHECKPOINT_INTERVAL)
    #[arg(short = 'i', long = "interval")]
    interval: Option<u32>,
    /// Directory for checkpoint images (DMTCP_CHECKPOINT_DIR)
    #[arg(short = 'c', long = "ckptdir")]
    ckptdir: Option<PathBuf>,
    /// Directory for temporary files (DMTCP_TMPDIR)
    #[arg(short = 't', long = "tmpdir")]
    tmpdir: Option<PathBuf>,
    /// Compress images with gzip (the default; DMTCP_GZIP=1)
    #[arg(long = "gzip", overrides_with = "no_gzip")]
    gzip: bool,
    /// Write uncompressed images (DMTCP_GZIP=0)
    #[arg(long = "no-gzip", overrides_with = "gzip")]
    no_gzip: bool,
    /// Signal used internally for checkpointing (DMTCP_SIGCKPT; default SIGUSR2)
    #[arg(long = "ckpt-signal", alias = "mtcp-checkpoint-signal")]
    ckpt_signal: Option<i32>,
    /// Add the checkpoint generation to image names
    #[arg(long = "enable-unique-checkpoint-filenames")]
    unique_filenames: bool,
    /// Overwrite images of earlier checkpoints (the default)
    #[arg(long = "disable-unique-checkpoint-filenames")]
    no_unique_filenames: bool,
    /// Load plugins (colon-separated shared libraries; may be repeated), preloaded after
    /// libdmtcp.so in this order
    #[arg(long = "with-plugin", alias = "with-plugins", value_name = "LIB.so[:LIB.so...]")]
    with_plugin: Vec<String>,
    /// Load the modify-env plugin: on restart, update the environment from dmtcp_env.txt
    #[arg(long = "modify-env")]
    modify_env: bool,
    /// Load no plugin at all (--with-plugin and --modify-env are ignored)
    #[arg(long = "disable-all-plugins")]
    disable_all_plugins: bool,
    /// Save the contents of the open regular files beside the image (DMTCP_CHECKPOINT_OPEN_FILES);
    /// restart puts a copy back where the file is missing
    #[arg(long = "ckpt-open-files", alias = "checkpoint-open-files")]
    checkpoint_open_files: bool,
    /// Allow restart to overwrite files with checkpointed copies (DMTCP_ALLOW_FILE_OVERWRITE;
    /// reported to the program and plugins)
    #[arg(long = "allow-file-overwrite")]
    allow_file_overwrite: bool,
    /// Write the coordinator's port to this file (useful with --coord-port 0)
    #[arg(long = "port-file", value_name = "FILE")]
    port_file: Option<PathBuf>,
    /// Resource-manager (SLURM, Torque) support; accepted for DMTCP job scripts, not implemented
    #[arg(long = "rm", alias = "batch-queue")]
    batch_queue: bool,
    /// Fewer messages
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    quiet: u8,
    /// More messages: say which coordinator, image directory and libraries the program gets
    #[arg(short = 'v', long = "verbose")]
    verbose: bool,
    /// The program and its arguments
    #[arg(required = true, trailing_var_arg = true, value_name = "PROGRAM [ARGS]")]
    command: Vec<String>,
    #[arg(long = "help", action = clap::ArgAction::Help, help = "Print help")]
    help: Option<bool>,
}

/// Resolve `prog` like execvp would, so a missing program is a clear error before anything starts.
fn resolve_program(prog: &str) -> Option<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    };
    if prog.contains('/') {
        let p = PathBuf::from(prog);
        return is_exec(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| is_exec(p))
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf())
    }
}

/// The shipped modify-env plugin, beside libdmtcp.so.
const MODIFY_ENV_LIB: &str = "libdmtcp_modify_env.so";

/// The plugin libraries to preload after libdmtcp.so, in order. A name with a '/' must exist
/// (made absolute, so it still resolves if the program changes directory); a bare name is left
/// to the dynamic loader's search (LD_LIBRARY_PATH...), as in DMTCP.
fn plugin_libs(args: &Args, lib: &str) -> Vec<String> {
    if args.disable_all_plugins {
        return Vec::new();
    }
    let mut libs = Vec::new();
    if args.modify_env {
        // Beside the libdmtcp.so chosen for this program (`$LIB` works here too).
        let dir = lib.rsplit_once('/').map_or(".", |(d, _)| d);
        let path = format!("{dir}/{MODIFY_ENV_LIB}");
        if !dir.contains('$') && !Path::new(&path).is_file() {
            die(PROG, format!("--modify-env: {path} is not installed"));
        }
        libs.push(path);
    }
    for p in args.with_plugin.iter().flat_map(|v| v.split(':')).filter(|p| !p.is_empty()) {
        if !p.contains('/') {
            libs.push(p.to_string());
            continue;
        }
        let path = absolute(Path::new(p));
        if !path.is_file() {
            die(PROG, format!("--with-plugin {p}: no such file"));
        }
        libs.push(path.display().to_string());
    }
    libs
}

fn main() {
    let args: Args = parse_args(PROG);
    let prog = &args.command[0];
    let Some(resolved) = resolve_program(prog) else {
        die(PROG, format!("{prog}: no such executable program"));
    };
    let cpu = locate::elf_cpu(&resolved).unwrap_or(dmtcp_arch::CPU);
    let lib = locate::preload_value_for(cpu).unwrap_or_else(|e| die(PROG, format!("{prog}: {e}")));
    let ckpt_dir = args.ckptdir.clone().or_else(|| std::env::var_os("DMTCP_CHECKPOINT_DIR").map(PathBuf::from)).map(|d| absolute(&d));
    if let Some(d) = &ckpt_dir {
        if let Err(e) = std::fs::create_dir_all(d) {
            die(PROG, format!("cannot create checkpoint directory {}: {e}", d.display()));
        }
    }
    let interval = args.interval.or_else(|| std::env::var("DMTCP_CHECKPOINT_INTERVAL").ok().and_then(|v| v.parse().ok()));
    let mode = match (args.join, args.new_coordinator, args.no_coordinator) {
        (true, false, false) => CoordMode::Join,
        (false, true, false) => CoordMode::New,
        (false, false, true) => CoordMode::None,
        (false, false, false) => CoordMode::Default,
        _ => die(PROG, "--join-coordinator, --new-coordinator and --no-coordinator exclude each other"),
    };
    let mut cmd = std::process::Command::new(prog);
    cmd.args(&args.command[1..]);
    let addr = coord_client::coord_addr(args.coord_host.as_deref(), args.coord_port);
    if args.batch_queue && args.quiet == 0 {
        eprintln!("{PROG}: note: --rm (resource-manager support) is not implemented; the program runs without it");
    }
    {
        let addr = coord_client::ensure_coordinator(&addr, mode, interval, ckpt_dir.as_deref()).unwrap_or_else(|e| die(PROG, e));
        if let Some(f) = &args.port_file {
            if let Err(e) = std::fs::write(f, format!("{}\n", addr.port)) {
                die(PROG, format!("cannot write the port file {}: {e}", f.display()));
            }
        }
        if args.verbose {
            eprintln!("{PROG}: coordinator {}:{}", addr.host, addr.port);
        }
        cmd.env("DMTCP_COORD_HOST", &addr.host).env("DMTCP_COORD_PORT", addr.port.to_string());
    }
    if let Some(d) = &ckpt_dir {
        cmd.env("DMTCP_CHECKPOINT_DIR", d);
    } else if let Ok(cwd) = std::env::current_dir() {
        cmd.env("DMTCP_CHECKPOINT_DIR", cwd);
    }
    if let Some(t) = &args.tmpdir {
        cmd.env("DMTCP_TMPDIR", absolute(t));
    }
    if args.no_gzip {
        cmd.env("DMTCP_GZIP", "0");
    } else if args.gzip {
        cmd.env("DMTCP_GZIP", "1");
    }
    if let Some(s) = args.ckpt_signal {
        if !(1..=64).contains(&s) || s == 9 || s == 19 {
            die(PROG, format!("--ckpt-signal {s}: not a usable signal number"));
        }
        cmd.env("DMTCP_SIGCKPT", s.to_string());
    }
    if let Some(i) = interval {
        cmd.env("DMTCP_CHECKPOINT_INTERVAL", i.to_string());
    }
    if args.unique_filenames && !args.no_unique_filenames {
        cmd.env("DMTCP_UNIQUE_CKPT_FILENAMES", "1");
    }
    if args.quiet > 0 {
        cmd.env("DMTCP_QUIET", "1");
    }
    if args.checkpoint_open_files {
        cmd.env("DMTCP_CHECKPOINT_OPEN_FILES", "1");
    }
    if args.allow_file_overwrite {
        cmd.env("DMTCP_ALLOW_FILE_OVERWRITE", "1");
    }
    // libdmtcp.so first, then the plugins: a plugin's wrappers then sit between libdmtcp.so's
    // and libc's definitions, and find the next one with dlsym(RTLD_NEXT).
    let mut preload = std::iter::once(lib.clone()).chain(plugin_libs(&args, &lib)).collect::<Vec<_>>().join(":");
    if args.verbose {
        let dir = ckpt_dir.clone().or_else(|| std::env::current_dir().ok()).unwrap_or_default();
        eprintln!("{PROG}: images go to {}; preloading {preload}", dir.display());
    }
    if let Ok(old) = std::env::var("LD_PRELOAD") {
        if !old.is_empty() {
            preload = format!("{preload}:{old}");
            // What dmtcp_nocheckpoint puts back (DMTCP's name).
            cmd.env("DMTCP_ORIG_LD_PRELOAD", old);
        }
    }
    cmd.env("LD_PRELOAD", preload);
    // exec: the program becomes this process, so its exit code is ours.
    let err = cmd.exec();
    die(PROG, format!("cannot execute {prog}: {err}"))
}
