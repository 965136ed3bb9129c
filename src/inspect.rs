//! dmtcp_inspect: a summary of checkpoint images (DMTCP's readdmtcp.sh), as text or JSON.

use dmtcp_engine::image::reader::ImageInfo;
use dmtcp_engine::layout::{AreaKind, AreaRecord, PROT_EXEC, PROT_READ, PROT_WRITE, THREAD_IS_CKPT, THREAD_IS_MAIN};
use serde_json::{json, Value};
use std::fmt::Write;

fn perms(a: &AreaRecord) -> String {
    let shared = a.area_kind() != AreaKind::Private;
    [(PROT_READ, 'r'), (PROT_WRITE, 'w'), (PROT_EXEC, 'x')]
        .iter()
        .map(|&(bit, c)| if a.prot & bit != 0 { c } else { '-' })
        .chain([if shared { 's' } else { 'p' }])
        .collect()
}

fn kind_name(a: &AreaRecord) -> &'static str {
    match a.area_kind() {
        AreaKind::Private => "private",
        AreaKind::SharedFile => "shared-file",
        AreaKind::SharedAnon => "shared-anon",
    }
}

fn thread_role(flags: u32) -> &'static str {
    if flags & THREAD_IS_MAIN != 0 {
        "main"
    } else if flags & THREAD_IS_CKPT != 0 {
        "checkpoint"
    } else {
        "user"
    }
}

/// Unix seconds as "YYYY-MM-DD HH:MM:SS UTC" (proleptic Gregorian; no time-zone database).
pub fn utc_time(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem / 60 % 60, rem % 60)
}

fn comm(c: &[u8; 16]) -> String {
    String::from_utf8_lossy(&c[..c.iter().position(|&b| b == 0).unwrap_or(16)]).into_owned()
}

/// One JSON object describing the image.
pub fn to_json(path: &str, info: &ImageInfo) -> Value {
    let h = &info.header;
    let m = &info.meta;
    json!({
        "file": path,
        "format_version": format!("{}.{}", h.major, h.minor),
        "compressed": info.compressed,
        "file_size": info.file_len,
        "cpu": h.cpu().map_or("unknown", |c| c.name()),
        "word_bits": h.word_bits,
        "page_size": h.page_size,
        "kernel": h.kernel_release_str(),
        "libc": m.libc_version,
        "hwcap": format!("{:#x}", h.hwcap),
        "hwcap2": format!("{:#x}", h.hwcap2),
        "hwcap3": format!("{:#x}", h.hwcap3),
        "program": m.prog,
        "argv": m.argv,
        "exe": m.exe,
        "pid": m.pid,
        "ppid": m.ppid,
        "unique_pid": m.unique_pid,
        "hostname": m.hostname,
        "cwd": m.cwd,
        "generation": m.generation,
        "checkpoint_time": m.ckpt_time,
        "checkpoint_time_utc": utc_time(m.ckpt_time),
        "threads": info.threads.iter().map(|t| json!({
            "tid": t.tid,
            "role": thread_role(t.flags),
            "name": comm(&t.comm),
            "tls": format!("{:#x}", t.tls),
            "tls_aux": format!("{:#x}", t.tls_aux),
        })).collect::<Vec<_>>(),
        "areas": info.areas.iter().map(|a| json!({
            "start": format!("{:#x}", a.start),
            "end": format!("{:#x}", a.end),
            "size": a.len(),
            "perms": perms(a),
            "kind": kind_name(a),
            "path": info.area_path(a),
            "stored_bytes": a.data_len,
            "stored_pages": a.data_len / h.page_size as u64,
            "stored_runs": a.num_runs,
        })).collect::<Vec<_>>(),
        "fds": m.fds.iter().map(|f| json!({
            "fd": f.fd,
            "kind": format!("{:?}", f.kind),
            "path": f.path,
            "flags": format!("{:#o}", f.flags),
            "offset": f.offset,
            "cloexec": f.cloexec,
            "inode": f.inode,
            "shares": f.shares.map(|r| json!({ "pid": r.pid, "fd": r.fd })),
            "queued_bytes": f.queued.iter().map(Vec::len).sum::<usize>(),
            "queued_messages": f.queued.len(),
            "socket": f.socket.as_ref().map(|k| json!({ "type": k.sock_type, "peer_inode": k.peer_inode })),
        })).collect::<Vec<_>>(),
        "pty_input": m.pty_input.iter().map(|p| json!({ "pts": p.index, "bytes": p.bytes.len() })).collect::<Vec<_>>(),
    })
}

/// Human-readable summary.
pub fn to_text(path: &str, info: &ImageInfo) -> String {
    let h = &info.header;
    let m = &info.meta;
    let mut s = String::new();
    let _ = writeln!(s, "{path}");
    let _ =
        writeln!(s, "  format {}.{} ({}), {} bytes on disk", h.major, h.minor, if info.compressed { "gzip" } else { "uncompressed" }, info.file_len);
    let _ = writeln!(
        s,
        "  cpu {} ({}-bit), page size {}, kernel {}, libc {}",
        h.cpu().map_or("unknown", |c| c.name()),
        h.word_bits,
        h.page_size,
        h.kernel_release_str(),
        m.libc_version
    );
    let _ = writeln!(s, "  program {} (pid {}, ppid {}, unique pid {}) on {}", m.prog, m.pid, m.ppid, m.unique_pid, m.hostname);
    let _ = writeln!(s, "  argv {:?}", m.argv);
    let _ = writeln!(s, "  cwd {}", m.cwd);
    let _ = writeln!(s, "  checkpoint generation {} at {} ({})", m.generation, utc_time(m.ckpt_time), m.ckpt_time);
    let _ = writeln!(s, "  threads ({}):", info.threads.len());
    for t in &info.threads {
        let _ = writeln!(s, "    tid {:<8} {:<10} {:<16} tls {:#x}", t.tid, thread_role(t.flags), comm(&t.comm), t.tls);
    }
    let stored: u64 = info.areas.iter().map(|a| a.data_len).sum();
    let _ = writeln!(s, "  memory areas ({}, {} bytes stored):", info.areas.len(), stored);
    let page = u64::from(h.page_size.max(1));
    for a in &info.areas {
        let _ = writeln!(
            s,
            "    {:012x}-{:012x} {} {:>10} {:<11} stored {:>10} ({} pages)  {}",
            a.start,
            a.end,
            perms(a),
            a.len(),
            kind_name(a),
            a.data_len,
            a.data_len / page,
            info.area_path(a)
        );
    }
    let _ = writeln!(s, "  file descriptors ({}):", m.fds.len());
    for f in &m.fds {
        let cloexec = if f.cloexec { " cloexec" } else { "" };
        let mut extra = String::new();
        if let Some(r) = f.shares {
            let _ = write!(extra, " (shared with pid {} fd {})", r.pid, r.fd);
        }
        if !f.queued.is_empty() {
            let _ = write!(extra, " ({} bytes queued)", f.queued.iter().map(Vec::len).sum::<usize>());
        }
        let _ = writeln!(s, "    {:>4} {:<10} flags {:#o}{cloexec} offset {:<8} {}{extra}", f.fd, format!("{:?}", f.kind), f.flags, f.offset, f.path);
    }
    for p in &m.pty_input {
        let _ = writeln!(s, "  /dev/pts/{}: {} bytes of input not read yet", p.index, p.bytes.len());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::utc_time;

    #[test]
    fn utc_time_matches_known_dates() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc_time(4_102_444_799), "2099-12-31 23:59:59 UTC");
    }
}
