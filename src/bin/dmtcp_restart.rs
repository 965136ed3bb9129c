//! dmtcp_restart: restart a process from its checkpoint image (DMTCP-compatible flags).
//!
//! Everything that can fail is checked here, before the point of no return: the image is fully
//! verified (checksums), its CPU and page size match, the coordinator answers and the files are
//! reopened. Then this process becomes the static loader, which becomes the restored program;
//! stdin/stdout/stderr stay those of dmtcp_restart, as in DMTCP.

use clap::Parser;
use dmtcp_engine::image::reader::{self, ImageInfo};
use dmtcp_rs::cli::{die, fail_rc, parse_args};
use dmtcp_rs::coord_client::{self, CoordMode};
use dmtcp_rs::locate;
use dmtcp_rs::pid_map::PidMapFile;
use dmtcp_rs::proctree;
use dmtcp_rs::restore_fds::{close_others, dup_at_least, dup_to};
use dmtcp_rs::shared_memory::SharedObjects;
use dmtcp_rs::staging::{ImageFds, Staged};
use std::os::fd::{IntoRawFd, RawFd};
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
    /// Directory for the checkpoints taken after this restart (default: where the last ones went)
    #[arg(short = 'c', long = "ckptdir")]
    ckptdir: Option<PathBuf>,
    /// Pause the restarted process until a debugger attaches (also DMTCP_GDB_ATTACH_ON_RESTART)
    #[arg(long = "debug-restart-pause", value_name = "N")]
    debug_restart_pause: Option<u32>,
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
fn host_cpu_features() -> [u64; 3] {
    // SAFETY: getauxval reads the saved auxiliary vector.
    dmtcp_arch::cpu_features().unwrap_or_else(|| unsafe { [libc::getauxval(libc::AT_HWCAP) as u64, libc::getauxval(libc::AT_HWCAP2) as u64, 0] })
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
    let [have1, have2, have3] = host_cpu_features();
    // The low half of hwcap3 lists XSAVE instructions (needed if recorded); the high half is XCR0,
    // which sizes the buffers ld.so reserved for XSAVE: it must not grow.
    let (missing1, missing2, missing3) = (h.hwcap & !have1, h.hwcap2 & !have2, h.hwcap3 & 0xffff_ffff & !have3);
    let xcr0_grew = h.hwcap3 != 0 && (have3 >> 32) & !(h.hwcap3 >> 32) != 0;
    if strict && (missing1 | missing2 | missing3) != 0 {
        die(
            PROG,
            format!(
                "{}: the image was taken on a CPU with features this one lacks (missing bits {missing1:#x}/{missing2:#x}/{missing3:#x}); --no-strict-checking restarts anyway",
                path.display()
            ),
        );
    }
    if strict && xcr0_grew {
        die(
            PROG,
            format!(
                "{}: this CPU saves more register state (XCR0 {:#x}) than the one the image was taken on ({:#x}); --no-strict-checking restarts anyway",
                path.display(),
                have3 >> 32,
                h.hwcap3 >> 32
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

/// What every process of the restart takes its part of: open file descriptions and shared
/// memory objects, made before the tree is forked.
struct Restored {
    staged: Staged,
    shm: SharedObjects,
    pids: PidMapFile,
}

/// A verified image, ready to be restarted.
struct Prepared {
    path: PathBuf,
    raw: std::fs::File,
    info: ImageInfo,
}

fn prepare(args: &Args, image: &Path, tmpdir: &Path) -> Prepared {
    let mut path = image.to_path_buf();
    if let Some(dir) = &args.restartdir {
        if let Some(name) = path.file_name() {
            path = dir.join(name);
        }
    }
    let (raw, info) = reader::open_raw_for_restart(&path, tmpdir).unwrap_or_else(|e| die(PROG, e));
    check_compatible(&path, &info, !args.no_strict_checking);
    Prepared { path, raw, info }
}

/// Is the process with this pid on this host alive (not a zombie)?
fn alive_here(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold ") ".
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// DMTCP refuses to restart a process that is still part of the computation: two copies would
/// share its identity (and its files). A peer the coordinator has not yet seen go is ignored when
/// it is on this host and dead.
fn refuse_if_running(addr: &coord_client::CoordAddr, images: &[Prepared]) {
    let Ok(reply) = coord_client::send_command(addr, dmtcp_engine::protocol::Command::List) else { return };
    let here = hostname();
    for img in images {
        let meta = &img.info.meta;
        for peer in reply.peers.iter().filter(|p| p.unique_pid == meta.unique_pid) {
            if peer.hostname == here && !alive_here(peer.pid) {
                continue;
            }
            die(
                PROG,
                format!(
                    "{}: the process it was taken from ({} pid {} on {}) is still running under the coordinator at {}:{}; stop it first (dmtcp_command -k)",
                    img.path.display(),
                    peer.prog,
                    peer.pid,
                    peer.hostname,
                    addr.host,
                    addr.port
                ),
            );
        }
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// The settings libdmtcp reads in the restarted process (see preload/src/restart_settings.rs),
/// in a memfd: "key=value" lines, then `environ` and this command's environment (NUL-separated,
/// with DMTCP_RESTART_CWD) for dmtcp_get_restart_env() and the modify-env plugin.
fn settings_fd(args: &Args, top: RawFd, cloexec: &[RawFd], pidmap: RawFd) -> RawFd {
    use std::os::unix::ffi::OsStrExt;
    let mut text: Vec<u8> = format!("pidmap={pidmap}\n").into_bytes();
    if !cloexec.is_empty() {
        let list: Vec<String> = cloexec.iter().map(|fd| fd.to_string()).collect();
        text.extend_from_slice(format!("cloexec={}\n", list.join(",")).as_bytes());
    }
    if let Some(dir) = &args.ckptdir {
        let dir = if dir.is_absolute() { dir.clone() } else { std::env::current_dir().map(|c| c.join(dir)).unwrap_or_else(|_| dir.clone()) };
        if let Err(e) = std::fs::create_dir_all(&dir) {
            die(PROG, format!("cannot create the checkpoint directory {}: {e}", dir.display()));
        }
        text.extend_from_slice(b"ckptdir=");
        text.extend_from_slice(dir.as_os_str().as_bytes());
        text.push(b'\n');
    }
    let env_set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty() && v != "0");
    if args.debug_restart_pause.is_some_and(|n| n > 0) || env_set("DMTCP_GDB_ATTACH_ON_RESTART") || env_set("DMTCP_RESTART_PAUSE") {
        text.extend_from_slice(b"pause=1\n");
    }
    text.extend_from_slice(b"environ\n");
    for (k, v) in std::env::vars_os() {
        text.extend_from_slice(k.as_bytes());
        text.push(b'=');
        text.extend_from_slice(v.as_bytes());
        text.push(0);
    }
    if let Ok(cwd) = std::env::current_dir() {
        text.extend_from_slice(b"DMTCP_RESTART_CWD=");
        text.extend_from_slice(cwd.as_os_str().as_bytes());
        text.push(0);
    }
    let fd = nix::sys::memfd::memfd_create(c"dmtcp-restart-settings", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
        .unwrap_or_else(|e| die(PROG, format!("cannot create the restart settings: {e}")));
    let mut file = std::fs::File::from(fd);
    if let Err(e) = std::io::Write::write_all(&mut file, &text) {
        die(PROG, format!("cannot write the restart settings: {e}"));
    }
    dup_at_least(file.into_raw_fd(), top, false)
}

/// The pid map's fd in the restarted process: the number libdmtcp.so keeps it at (so the
/// programs it executes find it) when the program does not use that number itself.
fn place_pid_map(pids: &PidMapFile, meta: &dmtcp_engine::meta::ProcessMeta, top: RawFd) -> RawFd {
    let want = dmtcp_engine::pidmap::PIDMAP_FD;
    let taken = meta.fds.iter().any(|e| e.fd == want) || meta.coord_fd == want;
    // SAFETY: F_GETFD only asks whether the number is open here.
    if !taken && unsafe { libc::fcntl(want, libc::F_GETFD) } < 0 {
        // SAFETY: duplicating our map onto a free number (the original is closed with the
        // other fds this process does not pass on).
        if unsafe { libc::dup2(pids.fd(), want) } == want {
            return want;
        }
    }
    // SAFETY: duplicating our own fd.
    let fd = unsafe { libc::fcntl(pids.fd(), libc::F_DUPFD, top) };
    if fd < 0 {
        die(PROG, format!("cannot pass on the pid map: {}", std::io::Error::last_os_error()));
    }
    fd
}

/// The program's file, to become /proc/self/exe of the restarted process (so that debuggers find
/// its symbols). None when it is gone: the restart works without it.
fn exe_fd(meta: &dmtcp_engine::meta::ProcessMeta, top: RawFd) -> Option<RawFd> {
    let f = std::fs::File::open(&meta.exe).ok()?;
    Some(dup_at_least(f.into_raw_fd(), top, false))
}

/// Become the restarted process of `img`: put its fds in place and exec the loader.
fn restart_one(args: &Args, addr: &coord_client::CoordAddr, restored: &Restored, index: usize, img: Prepared) -> ! {
    let staged = &restored.staged;
    let loader = locate::restart_loader_for(img.info.header.cpu().unwrap_or(dmtcp_arch::CPU)).unwrap_or_else(|e| die(PROG, e));
    let meta = &img.info.meta;
    let coord = coord_client::connect(addr).unwrap_or_else(|e| die(PROG, e));

    // Move our own fds above every number the restored program uses, then put its fds in place.
    let top = meta.fds.iter().map(|e| e.fd).chain([meta.coord_fd, 2]).max().unwrap_or(2) + 1;
    let image_fd = dup_at_least(img.raw.into_raw_fd(), top, false);
    let coord_fd = dup_at_least(coord.into_raw_fd(), top, true);
    let pidmap = place_pid_map(&restored.pids, meta, top);
    let settings = settings_fd(args, top, &staged.cloexec_fds(index, meta), pidmap);
    let exe = exe_fd(meta, top);
    if let Err(e) = std::env::set_current_dir(&meta.cwd) {
        if args.quiet == 0 {
            eprintln!("{PROG}: cannot change to the checkpointed working directory {}: {e}", meta.cwd);
        }
    }
    staged.place(index, meta);
    staged.rearm_epolls(meta);
    let mut keep: Vec<RawFd> = meta.fds.iter().map(|e| e.fd).collect();
    if meta.coord_fd >= 0 {
        dup_to(coord_fd, meta.coord_fd);
        keep.push(meta.coord_fd);
    }
    keep.extend([Some(image_fd), Some(settings), exe].into_iter().flatten());
    let (shm_args, shm_fds) = restored.shm.loader_args(index, top);
    keep.extend(shm_fds);
    keep.push(pidmap);
    close_others(&keep);

    let mut loader_cmd = std::process::Command::new(&loader);
    loader_cmd.arg(image_fd.to_string()).arg(fail_rc().to_string());
    if std::env::var_os("DMTCP_RESTART_REDIRECT_VDSO").is_some_and(|v| v == "1") {
        // Restart as if on another kernel (tests the cross-kernel path on this one).
        loader_cmd.arg("redirect-vdso");
    }
    if let Some(fd) = exe {
        loader_cmd.arg(format!("exe-fd={fd}"));
    }
    loader_cmd.arg(format!("settings-fd={settings}"));
    loader_cmd.args(shm_args);
    let err = loader_cmd.exec();
    die(PROG, format!("cannot execute {}: {err}", loader.display()))
}

/// Run `f` in a grandchild that init (or the nearest subreaper) adopts: the restarted program
/// that this process becomes must never see a child it did not make (nor its SIGCHLD).
fn detached(f: impl FnOnce()) {
    // SAFETY: this process is single-threaded; the child only calls fork, _exit or `f`.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // SAFETY: as above.
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    f();
                    // SAFETY: `f` only returns if it failed without exiting; leave at once.
                    unsafe { libc::_exit(fail_rc()) }
                }
                // SAFETY: leaving the intermediate child without running exit handlers.
                _ => unsafe { libc::_exit(0) },
            }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            let _ = nix::sys::wait::waitpid(child, None);
        }
        Err(e) => die(PROG, format!("cannot fork: {e}")),
    }
}

fn main() {
    let args: Args = parse_args(PROG);
    let tmpdir = args.tmpdir.clone().or_else(|| std::env::var_os("DMTCP_TMPDIR").map(PathBuf::from)).unwrap_or_else(std::env::temp_dir);
    // Every image is verified before anything is restarted: all or nothing.
    let mut images: Vec<Prepared> = args.images.iter().map(|p| prepare(&args, p, &tmpdir)).collect();

    let addr = coord_client::coord_addr(args.coord_host.as_deref(), args.coord_port);
    let mode = match (args.join, args.new_coordinator) {
        (true, true) => die(PROG, "--join-coordinator and --new-coordinator exclude each other"),
        (true, false) => CoordMode::Join,
        (false, true) => CoordMode::New,
        _ => CoordMode::Default,
    };
    let addr = coord_client::ensure_coordinator(&addr, mode, args.interval, None).unwrap_or_else(|e| die(PROG, e));
    refuse_if_running(&addr, &images);

    // Parents restart their children as their own children (with their old pids when the kernel
    // allows), so waitpid() and friends keep working. The last root becomes this process (its
    // exit code is ours); the other roots run detached.
    let procs: Vec<(String, u32, u32)> = images.iter().map(|i| (i.info.meta.hostname.clone(), i.info.meta.pid, i.info.meta.ppid)).collect();
    let mut roots = proctree::forest(&procs);
    // Every open file description is made here, once, before anything forks: the processes that
    // shared one (a pipe, a socketpair, an inherited file) share it again.
    let fds: Vec<ImageFds<'_>> =
        images.iter().map(|i| ImageFds { meta: &i.info.meta, saved_files: dmtcp_engine::meta::saved_files_dir(&i.path) }).collect();
    let top = dmtcp_rs::staging::first_free_fd(images.iter().map(|i| &i.info.meta));
    let shm_images: Vec<_> = images.iter().map(|i| (&i.info, &i.raw, i.info.meta.hostname.as_str())).collect();
    let shm = SharedObjects::build(&shm_images, top, args.quiet > 0);
    drop(shm_images);
    let staged = Staged::build(&fds, &shm, args.quiet > 0);
    drop(fds);
    let metas: Vec<&dmtcp_engine::meta::ProcessMeta> = images.iter().map(|i| &i.info.meta).collect();
    dmtcp_rs::sysv::restore(&metas, args.quiet > 0);
    let pids = PidMapFile::create(&metas).unwrap_or_else(|e| die(PROG, format!("cannot create the pid map of the restart: {e}")));
    drop(metas);
    let restored = Restored { staged, shm, pids };
    let mut slots: Vec<Option<Prepared>> = images.drain(..).map(Some).collect();
    let last = roots.pop().unwrap_or_else(|| die(PROG, "no image given"));
    for root in &roots {
        detached(|| restart_subtree(&args, &addr, &restored, &mut slots, root));
    }
    // The root gets its old pid too when the kernel allows: then this process stays in front of
    // it (exit code, signals). Otherwise it becomes the root here, with this pid.
    let root_pid = slots[last.index].as_ref().map_or(0, |p| p.info.meta.pid);
    if root_pid != std::process::id() {
        match proctree::fork_exact(root_pid) {
            Ok(proctree::Forked::Child { .. }) => {
                proctree::die_with_parent();
                restart_subtree(&args, &addr, &restored, &mut slots, &last)
            }
            Ok(proctree::Forked::Parent { pid }) => {
                // The images (a decompressed one is a memfd as big as the process) are the child's now.
                slots.clear();
                restored.staged.close_all();
                restored.shm.close_all();
                proctree::wait_forwarding(pid)
            }
            Err(_) => {}
        }
    }
    restart_subtree(&args, &addr, &restored, &mut slots, &last)
}

/// A restarted child that led its own session or process group at checkpoint time does so again
/// (before it forks its own children, which then inherit it); otherwise it stays in its parent's.
/// The root stays in dmtcp_restart's group and session: that is the job the shell now controls.
fn rejoin_group_and_session(h: &dmtcp_layout::FileHeader, old_pid: u32) {
    // SAFETY: setsid and setpgid change only this (single-threaded) process's ids.
    let r = unsafe {
        if h.sid == old_pid {
            libc::setsid()
        } else if h.pgid == old_pid {
            libc::setpgid(0, 0)
        } else {
            0
        }
    };
    if r < 0 {
        eprintln!("{PROG}: process {old_pid}: cannot restore its session or process group: {}", std::io::Error::last_os_error());
    }
}

/// A restarted session leader whose controlling terminal was a pseudo-terminal of the
/// computation takes the new one, and its foreground group is set again.
fn take_controlling_terminal(restored: &Restored, info: &ImageInfo, old_pid: u32) {
    let (meta, h) = (&info.meta, &info.header);
    let Some(ctty) = meta.ctty else { return };
    let Some(slave) = restored.staged.pty_slave(&meta.hostname, ctty.index) else { return };
    if h.sid != old_pid {
        return; // only a session leader takes a terminal; the others inherit it
    }
    // SAFETY: ioctl and tcsetpgrp on a staged fd of ours; SIGTTOU ignored around tcsetpgrp (the
    // loader puts every handler back from the image).
    unsafe {
        if libc::ioctl(slave, libc::TIOCSCTTY, 0) != 0 {
            eprintln!("{PROG}: process {old_pid}: cannot take its terminal again: {}", std::io::Error::last_os_error());
            return;
        }
        if ctty.foreground_pgid != 0 && ctty.foreground_pgid != old_pid {
            // The foreground group may not exist yet (its processes restart later): then the
            // leader's own group stays in the foreground.
            let leader = restored.pids.real_pid(ctty.foreground_pgid).unwrap_or(ctty.foreground_pgid);
            libc::signal(libc::SIGTTOU, libc::SIG_IGN);
            libc::tcsetpgrp(slave, leader as libc::pid_t);
            libc::signal(libc::SIGTTOU, libc::SIG_DFL);
        }
    }
}

/// Children that had exited but were not reaped at checkpoint time are made again (with their
/// pid when the kernel allows), to end at once with the same status: the restored program's
/// waitpid() reaps them.
fn recreate_zombies(args: &Args, restored: &Restored, index: usize, info: &ImageInfo) {
    for (k, &(pid, status)) in info.meta.zombies.iter().enumerate() {
        match proctree::fork_with_pid(pid) {
            Ok(proctree::Forked::Child { .. }) => {
                // SAFETY: in the new child: end it as the old one ended (without running
                // anything of this process's).
                unsafe {
                    if libc::WIFSIGNALED(status) {
                        let sig = libc::WTERMSIG(status);
                        libc::signal(sig, libc::SIG_DFL);
                        let mut set: libc::sigset_t = std::mem::zeroed();
                        libc::sigemptyset(&mut set);
                        libc::sigaddset(&mut set, sig);
                        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                        libc::kill(libc::getpid(), sig);
                    }
                    libc::_exit(libc::WEXITSTATUS(status))
                }
            }
            Ok(proctree::Forked::Parent { pid: new_pid }) => restored.pids.record_zombie(index, k, pid, new_pid),
            Err(e) => {
                if args.quiet == 0 {
                    eprintln!("{PROG}: the exited child {pid} cannot be made again (its parent's waitpid will not find it): {e}");
                }
            }
        }
    }
}

/// Fork the children of `node` (each restarting its own subtree), then become `node`'s process.
/// A process that cannot have its old pid again (taken, or no privilege) gets a new one, which
/// it records in the pid map: libdmtcp.so gives the program its old one.
fn restart_subtree(args: &Args, addr: &coord_client::CoordAddr, restored: &Restored, slots: &mut [Option<Prepared>], node: &proctree::Node) -> ! {
    if let Some(img) = slots[node.index].as_ref() {
        restored.pids.record_process(node.index, img.info.meta.pid, std::process::id());
    }
    for child in &node.children {
        let old_pid = slots[child.index].as_ref().map_or(0, |p| p.info.meta.pid);
        match proctree::fork_with_pid(old_pid) {
            Ok(proctree::Forked::Child { .. }) => {
                if let Some(img) = slots[child.index].as_ref() {
                    rejoin_group_and_session(&img.info.header, old_pid);
                    // Before it forks the session's other processes, which inherit it.
                    take_controlling_terminal(restored, &img.info, old_pid);
                }
                restart_subtree(args, addr, restored, slots, child)
            }
            Ok(proctree::Forked::Parent { .. }) => {}
            Err(e) => die(PROG, format!("cannot fork the restarted process {old_pid}: {e}")),
        }
    }
    let Some(img) = slots[node.index].take() else { die(PROG, "internal error: an image restarted twice") };
    recreate_zombies(args, restored, node.index, &img.info);
    restart_one(args, addr, restored, node.index, img)
}
