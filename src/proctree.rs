//! The process tree of a computation at restart: which images were parent and child (same host,
//! the child's parent pid is the parent's pid), and a fork that gives the new process its old pid
//! again (clone3 with set_tid), so that the restarted parent's waitpid(), kill() and getppid()
//! about it keep working.

use std::collections::HashMap;

/// One image in the forest, by its index in the caller's list, with its children.
#[derive(Debug, PartialEq, Eq)]
pub struct Node {
    pub index: usize,
    pub children: Vec<Node>,
}

/// `procs[i]` = (host, pid, parent pid) of image i at checkpoint time. Returns the roots (images
/// whose parent is not among them) in input order, each with its descendants in input order.
pub fn forest(procs: &[(String, u32, u32)]) -> Vec<Node> {
    let by_pid: HashMap<(&str, u32), usize> = procs.iter().enumerate().map(|(i, (h, pid, _))| ((h.as_str(), *pid), i)).collect();
    let parent_of = |i: usize| {
        let (h, pid, ppid) = &procs[i];
        by_pid.get(&(h.as_str(), *ppid)).copied().filter(|&p| p != i && procs[p].1 != *pid)
    };
    fn build(i: usize, children_of: &HashMap<usize, Vec<usize>>) -> Node {
        Node { index: i, children: children_of.get(&i).map(|c| c.iter().map(|&j| build(j, children_of)).collect()).unwrap_or_default() }
    }
    let mut children_of: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for i in 0..procs.len() {
        match parent_of(i) {
            Some(p) if !is_ancestor(i, p, &parent_of) => children_of.entry(p).or_default().push(i),
            _ => roots.push(i),
        }
    }
    roots.into_iter().map(|r| build(r, &children_of)).collect()
}

/// Is `a` an ancestor of (or equal to) `b`? Guards against pid cycles in damaged input.
fn is_ancestor(a: usize, b: usize, parent_of: &impl Fn(usize) -> Option<usize>) -> bool {
    let mut cur = Some(b);
    for _ in 0..=64 {
        match cur {
            Some(c) if c == a => return true,
            Some(c) => cur = parent_of(c),
            None => return false,
        }
    }
    true
}

/// What [`fork_with_pid`] returns.
pub enum Forked {
    /// In the child; with why it did not get the pid it asked for, if it did not.
    Child {
        pid_refused: Option<std::io::Error>,
    },
    Parent {
        pid: u32,
    },
}

/// The kernel's `struct clone_args` (version 2, with set_tid).
#[repr(C)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Fork (SIGCHLD to the parent when the child ends, as fork() does) and try to give the child
/// `pid`: that needs CAP_CHECKPOINT_RESTORE (or CAP_SYS_ADMIN) and the pid free. Otherwise the
/// child gets any pid. The caller must be single-threaded (the child runs on a copy of it).
pub fn fork_with_pid(pid: u32) -> std::io::Result<Forked> {
    match fork_exact(pid) {
        Ok(forked) => Ok(forked),
        Err(refused) => {
            let plain = match clone3(None) {
                // qemu-user and kernels before 5.3 have no clone3.
                Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => fork(),
                other => other,
            };
            plain.map(|f| match f {
                Forked::Child { .. } => Forked::Child { pid_refused: Some(refused) },
                parent => parent,
            })
        }
    }
}

/// Fork only if the child can have `pid`; the error says why not (nothing was forked then).
pub fn fork_exact(pid: u32) -> std::io::Result<Forked> {
    // A process of the checkpointed computation that was just killed may still hold its pid as a
    // zombie until its new parent (init, or a subreaper) reaps it: give that a moment.
    let deadline = std::time::Instant::now() + PID_WAIT;
    loop {
        match clone3(Some(pid)) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// In the restarted root forked by dmtcp_restart: die (SIGKILL) when dmtcp_restart does, so that
/// `kill -9` of the pid a shell or batch system knows still ends the program, as when the
/// program replaces dmtcp_restart. The setting survives exec and the restore.
pub fn die_with_parent() {
    // SAFETY: prctl and getppid only change or read this process's attributes.
    unsafe {
        let parent = libc::getppid();
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(crate::cli::fail_rc()); // it died before the setting took effect
        }
    }
}

/// The pid of the child [`wait_forwarding`] waits for, for its signal handler.
static CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let child = CHILD.load(std::sync::atomic::Ordering::Relaxed);
    if child > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(child, sig) };
    }
}

/// Stay in front of `child` (the restarted root, forked so it could have its old pid): pass on
/// the signals a batch system or `kill` sends to this pid, leave the terminal's (which reach the
/// whole foreground group anyway) to it, and end as it ends: same exit code, or the same signal.
pub fn wait_forwarding(child: u32) -> ! {
    CHILD.store(child as i32, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: installing a handler that only calls kill(); SIG_IGN for the terminal's signals.
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGCONT, libc::SIGALRM] {
            libc::signal(sig, forward as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
        for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child into a local int.
        let r = unsafe { libc::waitpid(child as libc::pid_t, &mut status, 0) };
        if r == child as libc::pid_t {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            std::process::exit(crate::cli::fail_rc());
        }
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: default action, then the same signal to ourselves, as the child ended.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(libc::WEXITSTATUS(status))
}

fn fork() -> std::io::Result<Forked> {
    // SAFETY: the caller is single-threaded (see fork_with_pid).
    match unsafe { libc::fork() } {
        0 => Ok(Forked::Child { pid_refused: None }),
        p if p > 0 => Ok(Forked::Parent { pid: p as u32 }),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// How long a restart waits for an old pid to be released.
const PID_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

fn clone3(pid: Option<u32>) -> std::io::Result<Forked> {
    let want = [pid.unwrap_or(0) as libc::pid_t];
    let args = CloneArgs {
        flags: 0,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: 0,
        stack_size: 0,
        tls: 0,
        set_tid: if pid.is_some() { want.as_ptr() as u64 } else { 0 },
        set_tid_size: pid.is_some() as u64,
        cgroup: 0,
    };
    // SAFETY: a fork-like clone3 (no CLONE_VM: the child has its own copy of memory and runs on
    // a copy of this stack); `args` and `want` outlive the call.
    match unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, core::mem::size_of::<CloneArgs>()) } {
        0 => Ok(Forked::Child { pid_refused: None }),
        p if p > 0 => Ok(Forked::Parent { pid: p as u32 }),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(h: &str, pid: u32, ppid: u32) -> (String, u32, u32) {
        (h.to_string(), pid, ppid)
    }

    fn leaf(i: usize) -> Node {
        Node { index: i, children: vec![] }
    }

    #[test]
    fn parents_children_and_hosts() {
        // 0 -> 2 -> 3; 1 alone; 4 has the same pids as 0's child but on another host.
        let procs = [p("a", 10, 1), p("a", 20, 1), p("a", 11, 10), p("a", 12, 11), p("b", 11, 10)];
        let f = forest(&procs);
        assert_eq!(f, vec![Node { index: 0, children: vec![Node { index: 2, children: vec![leaf(3)] }] }, leaf(1), leaf(4)]);
    }

    #[test]
    fn cycles_and_self_parents_do_not_loop() {
        let f = forest(&[p("a", 10, 11), p("a", 11, 10), p("a", 12, 12)]);
        let count = |n: &Node| -> usize {
            fn c(n: &Node) -> usize {
                1 + n.children.iter().map(c).sum::<usize>()
            }
            c(n)
        };
        assert_eq!(f.iter().map(count).sum::<usize>(), 3, "every image once: {f:?}");
    }
}
