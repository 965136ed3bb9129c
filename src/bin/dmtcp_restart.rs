//! dmtcp_restart: restart a process from its checkpoint image (DMTCP-compatible flags).
//!
//! Everything that can fail is checked here, before the point of no return: the image is fully
//! verified (checksums), its CPU and page size match, the coordinator answers and the files are
//! reopened. Then this process becomes the static loader, which becomes the restored program;
//! stdin/stdout/stderr stay those of dmtcp_restart, as in DMTCP.

use clap::Parser;
use dmtcp_engine::image::reader::{self, ImageInfo};
use dmtcp_engine::meta::{FdEntry, FdKind};
use dmtcp_rs::cli::{die, fail_rc, parse_args};
use dmtcp_rs::coord_client::{self, CoordMode};
use dmtcp_rs::locate;
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const PROG: &str = "dmtcp_restart";

#[derive(Parser, Debug)]
#[command(name = PROG, version, about = "Restart processes from checkpoint images", disable_help_flag = true)]
struct Args {
    /// Coordinator host (DMTCP_COORD_HOST)
    #[arg(short = 'h', long = "coord-host", alias = "host")]
    coord_host: Option<String>,
    /// Coordinator port (DMTCP_COORD_PORT)
    #[arg(short = 'p', long = "coord-port", alias = "port")]
    coord_port: Option<u16>,
    /// Join an existing coordinator; fail if none is running
    #[arg(short = 'j', long = "join-coordinator", alias = "join")]
    join: bool,
    /// Start a new coordinator; fail if one already runs on the port
    #[arg(long = "new-coordinator", alias = "new")]
    new_coordinator: bool,
    /// Seconds between automatic checkpoints after the restart
    #[arg(short = 'i', long = "interval")]
    interval: Option<u32>,
    /// Directory for temporary files (DMTCP_TMPDIR)
    #[arg(short = 't', long = "tmpdir")]
    tmpdir: Option<PathBuf>,
    /// Look for the images in this directory
    #[arg(long = "restartdir")]
    restartdir: Option<PathBuf>,
    /// Skip the CPU-feature check (the CPU itself must still match)
    #[arg(long = "no-strict-checking")]
    no_strict_checking: bool,
    /// Fewer messages
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count)]
    quiet: u8,
    /// Checkpoint images (ckpt_*.dmtcp)
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
    #[arg(long = "help", action = clap::ArgAction::Help, help = "Print help")]
    help: Option<bool>,
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no memory effects.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u32 }
}

/// The features this host offers, measured the way libdmtcp.so records them.
fn host_cpu_features() -> (u64, u64) {
    // SAFETY: getauxval reads the saved auxiliary vector.
    dmtcp_arch::cpu_features().unwrap_or_else(|| unsafe { (libc::getauxval(libc::AT_HWCAP) as u64, libc::getauxval(libc::AT_HWCAP2) as u64) })
}

/// Refuse what the loader could only fail on after the point of no return.
fn check_compatible(path: &Path, info: &ImageInfo, strict: bool) {
    let h = &info.header;
    let cpu = match h.cpu() {
        Some(cpu) => cpu,
        None => die(PROG, format!("{}: image is for an unknown CPU", path.display())),
    };
    if let Err(e) = locate::support_dir_for(cpu) {
        die(PROG, format!("{}: image is for {}: {e}", path.display(), cpu.name()));
    }
    let (have1, have2) = host_cpu_features();
    let (missing1, missing2) = (h.hwcap & !have1, h.hwcap2 & !have2);
    if strict && (missing1 | missing2) != 0 {
        die(
            PROG,
            format!(
                "{}: the image was taken on a CPU with features this one lacks (missing bits {missing1:#x}/{missing2:#x}); --no-strict-checking restarts anyway",
                path.display()
            ),
        );
    }
    if h.page_size != page_size() {
        die(PROG, format!("{}: image has page size {} but this system uses {}", path.display(), h.page_size, page_size()));
    }
    // An image with a copy of its vdso restarts on any kernel (the loader redirects it). For one
    // without (format 1.0) the sizes must match; a 32-bit process has another vdso than this
    // command: the loader itself checks those.
    let has_vdso_copy = info.areas.iter().any(|a| a.flags & dmtcp_layout::AREA_VDSO_TEXT != 0);
    if !h.vdso.is_empty() && cpu == dmtcp_arch::CPU && !has_vdso_copy {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let size_of = |name: &str| {
            maps.lines().find(|l| l.ends_with(name)).and_then(|l| {
                let r = l.split_whitespace().next()?;
                let (a, b) = r.split_once('-')?;
                Some(u64::from_str_radix(b, 16).ok()? - u64::from_str_radix(a, 16).ok()?)
            })
        };
        if size_of("[vdso]") != Some(h.vdso.len()) || size_of("[vvar]").unwrap_or(0) != h.vvar.len() {
            die(
                PROG,
                format!(
                    "{}: taken on kernel {} whose vdso differs from this kernel's; restart on the same kernel build",
                    path.display(),
                    h.kernel_release_str()
                ),
            );
        }
    }
}

fn dup_at_least(fd: RawFd, min: RawFd, cloexec: bool) -> RawFd {
    let cmd = if cloexec { libc::F_DUPFD_CLOEXEC } else { libc::F_DUPFD };
    // SAFETY: duplicating an fd we own.
    let r = unsafe { libc::fcntl(fd, cmd, min) };
    if r < 0 {
        die(PROG, format!("cannot duplicate a file descriptor: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: closing the original, which we own and no longer need.
    unsafe { libc::close(fd) };
    r
}

fn dup_to(from: RawFd, to: RawFd) {
    if from == to {
        // SAFETY: clearing FD_CLOEXEC on our own fd.
        unsafe { libc::fcntl(to, libc::F_SETFD, 0) };
        return;
    }
    // SAFETY: dup2 onto a number the restored process owns; `from` is ours.
    if unsafe { libc::dup2(from, to) } < 0 {
        die(PROG, format!("cannot place file descriptor {to}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: `from` is ours.
    unsafe { libc::close(from) };
}

/// Reopen one of the application's fds at its number and offset. Files that cannot be reopened
/// (deleted, pipes and sockets, which are not restored yet) get /dev/null so the number stays taken.
fn restore_fd(e: &FdEntry, quiet: bool) {
    use std::os::unix::fs::OpenOptionsExt;
    let keep = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME | libc::O_SYNC | libc::O_DSYNC;
    let acc = e.flags & libc::O_ACCMODE;
    let opened = match e.kind {
        FdKind::File | FdKind::CharDevice if !e.path.ends_with(" (deleted)") => std::fs::OpenOptions::new()
            .read(acc == libc::O_RDONLY || acc == libc::O_RDWR)
            .write(acc == libc::O_WRONLY || acc == libc::O_RDWR)
            .custom_flags(e.flags & keep)
            .open(&e.path)
            .ok(),
        _ => None,
    };
    let file = match opened {
        Some(f) => {
            if e.kind == FdKind::File && e.offset > 0 {
                // SAFETY: lseek on the fd we just opened.
                unsafe { libc::lseek(f.as_raw_fd(), e.offset as libc::off_t, libc::SEEK_SET) };
            }
            f
        }
        None => {
            if !quiet {
                eprintln!("{PROG}: fd {} ({}) cannot be restored; it is opened on /dev/null", e.fd, e.path);
            }
            match std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                Ok(f) => f,
                Err(err) => die(PROG, format!("cannot open /dev/null: {err}")),
            }
        }
    };
    let fd = file.into_raw_fd();
    dup_to(fd, e.fd);
    if e.cloexec {
        // SAFETY: setting a flag on the application's fd.
        unsafe { libc::fcntl(e.fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Close every fd this process inherited that the restored program did not have.
fn close_others(keep: &[RawFd]) {
    let fds: Vec<RawFd> =
        std::fs::read_dir("/proc/self/fd").map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()).unwrap_or_default();
    for fd in fds {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closing inherited fds the restored program does not know; ours are CLOEXEC
            // or in `keep`.
            unsafe { libc::close(fd) };
        }
    }
}

fn main() {
    let args: Args = parse_args(PROG);
    if args.images.len() > 1 {
        die(PROG, "restarting several images at once is not supported yet; restart each image with its own dmtcp_restart");
    }
    let tmpdir = args.tmpdir.clone().or_else(|| std::env::var_os("DMTCP_TMPDIR").map(PathBuf::from)).unwrap_or_else(std::env::temp_dir);
    let mut path = args.images[0].clone();
    if let Some(dir) = &args.restartdir {
        if let Some(name) = path.file_name() {
            path = dir.join(name);
        }
    }
    let (raw, info) = reader::open_raw_for_restart(&path, &tmpdir).unwrap_or_else(|e| die(PROG, e));
    check_compatible(&path, &info, !args.no_strict_checking);
    let loader = locate::restart_loader_for(info.header.cpu().unwrap_or(dmtcp_arch::CPU)).unwrap_or_else(|e| die(PROG, e));
    let meta = &info.meta;

    let addr = coord_client::coord_addr(args.coord_host.as_deref(), args.coord_port);
    let mode = match (args.join, args.new_coordinator) {
        (true, true) => die(PROG, "--join-coordinator and --new-coordinator exclude each other"),
        (true, false) => CoordMode::Join,
        (false, true) => CoordMode::New,
        _ => CoordMode::Default,
    };
    let addr = coord_client::ensure_coordinator(&addr, mode, args.interval, None).unwrap_or_else(|e| die(PROG, e));
    let coord = coord_client::connect(&addr).unwrap_or_else(|e| die(PROG, e));

    // Move our own fds above every number the restored program uses, then put its fds in place.
    let top = meta.fds.iter().map(|e| e.fd).chain([meta.coord_fd, 2]).max().unwrap_or(2) + 1;
    let image_fd = dup_at_least(raw.into_raw_fd(), top, false);
    let coord_fd = dup_at_least(coord.into_raw_fd(), top, true);
    if let Err(e) = std::env::set_current_dir(&meta.cwd) {
        if args.quiet == 0 {
            eprintln!("{PROG}: cannot change to the checkpointed working directory {}: {e}", meta.cwd);
        }
    }
    let quiet = args.quiet > 0;
    for e in meta.fds.iter().filter(|e| e.fd > 2) {
        restore_fd(e, quiet);
    }
    let mut keep: Vec<RawFd> = meta.fds.iter().map(|e| e.fd).collect();
    if meta.coord_fd >= 0 {
        dup_to(coord_fd, meta.coord_fd);
        keep.push(meta.coord_fd);
    }
    keep.push(image_fd);
    close_others(&keep);

    let mut loader_cmd = std::process::Command::new(&loader);
    loader_cmd.arg(image_fd.to_string()).arg(fail_rc().to_string());
    if std::env::var_os("DMTCP_RESTART_REDIRECT_VDSO").is_some_and(|v| v == "1") {
        // Restart as if on another kernel (tests the cross-kernel path on this one).
        loader_cmd.arg("redirect-vdso");
    }
    let err = loader_cmd.exec();
    die(PROG, format!("cannot execute {}: {err}", loader.display()))
}
