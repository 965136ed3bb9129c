//! eventfd, timerfd, signalfd and epoll instances, as /proc/self/fdinfo describes them: enough to
//! make new ones in the same state at restart.
//!
//! Runs on the checkpoint thread while the application's threads are parked (allocates; our own
//! allocator).

use crate::meta::{AnonFd, EpollTarget};

/// The state of fd `fd`, whose /proc/self/fd link is `link` ("anon_inode:[eventfd]", ...); None
/// for another kind of fd or an fdinfo this build does not understand.
pub fn read(fd: i32, link: &str) -> Option<AnonFd> {
    if !link.starts_with("anon_inode:") {
        return None;
    }
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    parse(link, &info)
}

/// [`read`] on the text of an fdinfo file.
pub fn parse(link: &str, info: &str) -> Option<AnonFd> {
    let field = |name: &str| info.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
    match link.trim_start_matches("anon_inode:") {
        "[eventfd]" => Some(AnonFd::EventFd {
            count: u64::from_str_radix(field("eventfd-count:")?, 16).ok()?,
            semaphore: field("eventfd-semaphore:").is_some_and(|v| v == "1"),
        }),
        "[timerfd]" => Some(AnonFd::TimerFd {
            clockid: field("clockid:")?.parse().ok()?,
            ticks: field("ticks:")?.parse().ok()?,
            value_ns: timespec_ns(field("it_value:")?)?,
            interval_ns: timespec_ns(field("it_interval:")?)?,
        }),
        "[signalfd]" => Some(AnonFd::SignalFd { mask: u64::from_str_radix(field("sigmask:")?, 16).ok()? }),
        "[eventpoll]" => {
            let targets = info.lines().filter(|l| l.starts_with("tfd:")).map(epoll_target).collect::<Option<Vec<_>>>()?;
            Some(AnonFd::Epoll { targets })
        }
        _ => None,
    }
}

/// "(sec, nsec)" in nanoseconds.
fn timespec_ns(v: &str) -> Option<u64> {
    let (s, ns) = v.trim_start_matches('(').trim_end_matches(')').split_once(',')?;
    s.trim().parse::<u64>().ok()?.checked_mul(1_000_000_000)?.checked_add(ns.trim().parse().ok()?)
}

/// "tfd:        5 events:       19 data:         deadbeef  pos:0 ino:... sdev:..."
fn epoll_target(line: &str) -> Option<EpollTarget> {
    let mut words = line.split_whitespace();
    let mut value = |name: &str| {
        words.find(|w| *w == name)?;
        words.next()
    };
    let fd = value("tfd:")?.parse().ok()?;
    let events = u32::from_str_radix(value("events:")?, 16).ok()?;
    let data = u64::from_str_radix(value("data:")?, 16).ok()?;
    Some(EpollTarget { fd, events, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let e = parse(
            "anon_inode:[eventfd]",
            "pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1057\neventfd-count:               2a\neventfd-id: 3\neventfd-semaphore: 1\n",
        );
        assert_eq!(e, Some(AnonFd::EventFd { count: 42, semaphore: true }));
        let t = parse(
            "anon_inode:[timerfd]",
            "pos:\t0\nflags:\t02\nclockid: 1\nticks: 3\nsettime flags: 00\nit_value: (0, 25000000)\nit_interval: (1, 5)\n",
        );
        assert_eq!(t, Some(AnonFd::TimerFd { clockid: 1, ticks: 3, value_ns: 25_000_000, interval_ns: 1_000_000_005 }));
        assert_eq!(parse("anon_inode:[signalfd]", "sigmask:\t0000000000000200\n"), Some(AnonFd::SignalFd { mask: 0x200 }));
        let ep = parse(
            "anon_inode:[eventpoll]",
            "pos:\t0\ntfd:        5 events:       19 data:         deadbeef  pos:0 ino:1 sdev:e\ntfd:        7 events: 80000001 data: ffffffffffffffff  pos:0 ino:2 sdev:e\n",
        );
        assert_eq!(
            ep,
            Some(AnonFd::Epoll {
                targets: vec![EpollTarget { fd: 5, events: 0x19, data: 0xdead_beef }, EpollTarget { fd: 7, events: 0x8000_0001, data: u64::MAX }]
            })
        );
        assert_eq!(parse("anon_inode:[io_uring]", ""), None);
        assert_eq!(parse("anon_inode:[eventfd]", "garbage"), None);
    }

    #[test]
    fn reads_live_instances() {
        // SAFETY: plain fd-creating calls; every fd is closed at the end.
        unsafe {
            let efd = libc::eventfd(7, libc::EFD_CLOEXEC);
            let tfd = libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC);
            let spec =
                libc::itimerspec { it_interval: libc::timespec { tv_sec: 5, tv_nsec: 0 }, it_value: libc::timespec { tv_sec: 100, tv_nsec: 0 } };
            assert_eq!(libc::timerfd_settime(tfd, 0, &spec, std::ptr::null_mut()), 0);
            let ep = libc::epoll_create1(libc::EPOLL_CLOEXEC);
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0x1234 };
            assert_eq!(libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, tfd, &mut ev), 0);
            let link = |fd: i32| std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap().to_string_lossy().into_owned();
            assert_eq!(read(efd, &link(efd)), Some(AnonFd::EventFd { count: 7, semaphore: false }));
            match read(tfd, &link(tfd)) {
                Some(AnonFd::TimerFd { clockid, ticks: 0, value_ns, interval_ns: 5_000_000_000 }) => {
                    assert_eq!(clockid, libc::CLOCK_MONOTONIC);
                    assert!(value_ns > 90_000_000_000 && value_ns <= 100_000_000_000, "{value_ns}");
                }
                other => panic!("{other:?}"),
            }
            // The kernel shows EPOLLERR | EPOLLHUP too, which it always reports.
            match read(ep, &link(ep)) {
                Some(AnonFd::Epoll { targets }) => {
                    assert_eq!(targets.len(), 1);
                    assert_eq!((targets[0].fd, targets[0].data), (tfd, 0x1234));
                    assert_ne!(targets[0].events & libc::EPOLLIN as u32, 0);
                }
                other => panic!("{other:?}"),
            }
            for fd in [efd, tfd, ep] {
                libc::close(fd);
            }
        }
    }
}
