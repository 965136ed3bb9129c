//! Writing the image, on the checkpoint thread while every other thread is parked.
//!
//! Allocation is fine here (our own allocator), glibc calls that lock or malloc are not: /proc is
//! read with plain open/read, directories with raw getdents64.

use crate::{ckpt, config, threads};
use core::sync::atomic::Ordering::Acquire;
use dmtcp_engine::image::writer::{self, AreaToWrite, Compression, ImageContents};
use dmtcp_engine::meta::{Ctty, ProcessMeta, PtyInput};
use dmtcp_engine::procfs::{fd_state, fds, maps, pagemap, pty};
use dmtcp_layout::*;
use std::path::PathBuf;

fn page_size() -> u64 {
    // SAFETY: getauxval reads the saved auxiliary vector.
    let p = unsafe { libc::getauxval(libc::AT_PAGESZ) } as u64;
    if p == 0 {
        dmtcp_arch::DEFAULT_PAGE_SIZE as u64
    } else {
        p
    }
}

/// The mm_struct fields from /proc/self/stat (fields 26-28 and 45-51) and the current brk.
fn mm_fields() -> MmFields {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    let f: Vec<u64> = after.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // `after` starts at field 3 (state).
    let field = |n: usize| f.get(n - 3).copied().unwrap_or(0);
    // SAFETY: brk(0) only reports the current break.
    let brk = unsafe { syscalls::syscall1(syscalls::Sysno::brk, 0) }.unwrap_or(0) as u64;
    MmFields {
        start_code: field(26),
        end_code: field(27),
        start_stack: field(28),
        start_data: field(45),
        end_data: field(46),
        start_brk: field(47),
        brk,
        arg_start: field(48),
        arg_end: field(49),
        env_start: field(50),
        env_end: field(51),
    }
}

/// The CPU features recorded in the image (and compared at restart).
pub fn host_cpu_features() -> [u64; 3] {
    // SAFETY: getauxval reads the saved auxiliary vector.
    dmtcp_arch::cpu_features().unwrap_or_else(|| unsafe { [libc::getauxval(libc::AT_HWCAP) as u64, libc::getauxval(libc::AT_HWCAP2) as u64, 0] })
}

fn kernel_release() -> [u8; 65] {
    let mut out = [0u8; 65];
    // SAFETY: utsname is plain data; uname fills it.
    let mut u: libc::utsname = unsafe { core::mem::zeroed() };
    // SAFETY: valid pointer.
    if unsafe { libc::uname(&mut u) } == 0 {
        for (o, c) in out.iter_mut().zip(u.release.iter()) {
            *o = c.to_ne_bytes()[0]; // c_char is i8 on x86, u8 on ARM
        }
        out[64] = 0;
    }
    out
}

fn libc_version() -> String {
    // SAFETY: gnu_get_libc_version returns a static string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_string_lossy().into_owned()
}

fn image_path(generation: u64, dir_override: Option<&str>) -> PathBuf {
    let cfg = config::get();
    let dir = dir_override.map(PathBuf::from).or_else(crate::restart_settings::ckpt_dir).unwrap_or_else(|| cfg.ckpt_dir.clone());
    let name = if cfg.unique_filenames {
        format!("ckpt_{}_{}_{:05}.dmtcp", cfg.prog, config::unique_pid(), generation)
    } else {
        format!("ckpt_{}_{}.dmtcp", cfg.prog, config::unique_pid())
    };
    dir.join(name)
}

fn thread_records() -> Vec<ThreadRecord> {
    let mut all = threads::parked_records();
    let mut me = ThreadRecord::default();
    threads::describe_current_thread(&mut me);
    me.flags |= THREAD_IS_CKPT;
    me.resume_sp = ckpt::CKPT_SP.load(Acquire) as u64;
    all.push(me);
    all
}

fn sigactions() -> [SigactionRecord; NUM_SIGNALS] {
    let mut out = [SigactionRecord::default(); NUM_SIGNALS];
    for (i, rec) in out.iter_mut().enumerate() {
        let mut k = dmtcp_arch::KernelSigaction::default();
        // SAFETY: only reads the current action.
        if unsafe { dmtcp_arch::rt_sigaction(i as i32 + 1, None, Some(&mut k)) }.is_ok() {
            *rec = k.to_record();
        }
    }
    out
}

fn process_meta(generation: u64, ckpt_dir: &std::path::Path, fd_table: Vec<dmtcp_engine::meta::FdEntry>, pty_input: Vec<PtyInput>) -> ProcessMeta {
    let cfg = config::get();
    let argv = std::fs::read("/proc/self/cmdline")
        .map(|c| c.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
        .unwrap_or_default();
    let kr = kernel_release();
    ProcessMeta {
        unique_pid: config::unique_pid(),
        prog: cfg.prog.clone(),
        argv,
        // The pids the program knows (pids.rs): the restart gives them back.
        pid: crate::pids::my_pid(),
        // SAFETY: getppid has no memory effects (on this thread it is the kernel's).
        ppid: crate::pids::to_virtual(unsafe { libc::getppid() } as u32),
        hostname: config::nix_hostname(),
        cwd: std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default(),
        exe: std::fs::read_link("/proc/self/exe").map(|p| p.display().to_string()).unwrap_or_default(),
        ckpt_time: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        generation,
        kernel_release: String::from_utf8_lossy(&kr[..kr.iter().position(|&c| c == 0).unwrap_or(65)]).into_owned(),
        libc_version: libc_version(),
        fds: fd_table,
        coord_fd: ckpt::COORD_FD.load(Acquire),
        coord_host: cfg.coord_host.clone(),
        coord_port: cfg.coord_port,
        ckpt_dir: ckpt_dir.display().to_string(),
        gzip: cfg.gzip,
        ctty: fd_state::controlling_pty().map(|c| Ctty { foreground_pgid: crate::pids::to_virtual(c.foreground_pgid), ..c }),
        zombies: fd_state::zombie_children().into_iter().map(|(pid, status)| (crate::pids::to_virtual(pid), status)).collect(),
        sysv: crate::sysv::capture(),
        pty_input,
    }
}

/// Write this process's image; returns its path.
pub fn write_checkpoint(generation: u64, dir_override: Option<&str>) -> Result<String, String> {
    let cfg = config::get();
    let path = image_path(generation, dir_override);
    let page = page_size();
    // The fd table first: the image file must not appear in it.
    let coord_fd = ckpt::COORD_FD.load(Acquire);
    let mut fd_table = fds::read_self_fds(&[coord_fd, crate::pids::MAP_FD.load(Acquire)]).map_err(|e| format!("cannot read /proc/self/fd: {e}"))?;
    fd_state::complete(&mut fd_table);
    for e in fd_table.iter_mut() {
        // A drained TCP connection: its bytes were read out (the queue peeked is empty now).
        if let Some(bytes) = crate::tcp_drain::drained_from(e.fd) {
            e.queued = if bytes.is_empty() { Vec::new() } else { vec![bytes] };
        }
    }
    for shared in fd_table.iter_mut().filter_map(|e| e.shares.as_mut()) {
        shared.pid = crate::pids::to_virtual(shared.pid);
    }
    let pty_input = pty::save_input(&fd_table);
    let entries = maps::read_self_maps().map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    let mut header = FileHeader::new_for(dmtcp_arch::CPU, dmtcp_arch::WORD_BITS, page as u32);
    let (mut areas, unprotect) = collect_areas(&entries, page, &mut header)?;
    header.restart_info_addr = ckpt::RESTART_INFO.0.get() as u64;
    header.mm = mm_fields();
    header.ckpt_signal = cfg.ckpt_signal as u32;
    [header.hwcap, header.hwcap2, header.hwcap3] = host_cpu_features();
    header.kernel_release = kernel_release();
    // SAFETY: getpgrp and getsid only report ids.
    let (pgid, sid) = unsafe { (libc::getpgrp() as u32, libc::getsid(0) as u32) };
    (header.pgid, header.sid) = (crate::pids::to_virtual(pgid), crate::pids::to_virtual(sid));
    if let Ok(auxv) = std::fs::read("/proc/self/auxv") {
        if auxv.len() <= AUXV_MAX {
            header.auxv[..auxv.len()].copy_from_slice(&auxv);
            header.auxv_len = auxv.len() as u32;
        }
    }
    // A deleted file or memfd mapped MAP_SHARED comes back as the object remade for its areas.
    let shared_mapped: Vec<u64> = entries.iter().filter(|m| m.perms.shared && dmtcp_engine::meta::is_unlinked(&m.path)).map(|m| m.inode).collect();
    crate::open_files::save(&path, &fd_table, &shared_mapped, cfg.ckpt_open_files, cfg.allow_file_overwrite)?;
    let thread_table = thread_records();
    let sigs = sigactions();
    let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let meta = process_meta(generation, &dir, fd_table, pty_input);
    // Areas that are not readable but hold data are opened for reading while we copy them.
    for &(start, end, _) in &unprotect {
        // SAFETY: adds PROT_READ to an existing mapping of this process; restored below.
        let _ = unsafe { dmtcp_arch::sys::mprotect(start as usize, (end - start) as usize, libc::PROT_READ as usize) };
    }
    let mut contents = ImageContents { header, threads: &thread_table, sigactions: &sigs, areas: &mut areas, meta: &meta };
    let compression = if cfg.gzip { Compression::Gzip { level: 1 } } else { Compression::None };
    let mut read_mem = |addr: u64, buf: &mut [u8]| -> std::io::Result<()> {
        // SAFETY: `addr` lies in a readable mapping of this process listed by /proc/self/maps,
        // and no other thread runs.
        unsafe { core::ptr::copy_nonoverlapping(addr as usize as *const u8, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    };
    let result = writer::write_image_file(&path, compression, &mut contents, &mut read_mem);
    for &(start, end, prot) in &unprotect {
        // SAFETY: restores the original protection of the mapping.
        let _ = unsafe { dmtcp_arch::sys::mprotect(start as usize, (end - start) as usize, prot as usize) };
    }
    if result.is_ok() {
        crate::open_files::commit(&path);
    } else {
        crate::open_files::discard(&path);
    }
    result.map_err(|e| e.to_string())?;
    Ok(path.display().to_string())
}

/// Kernel special mappings: recorded in the header, never stored.
fn special_range(path: &str) -> Option<&'static str> {
    match path {
        "[vdso]" => Some("vdso"),
        "[vvar]" => Some("vvar"),
        "[vvar_vclock]" => Some("vvar_vclock"),
        "[vsyscall]" | "[vectors]" => Some("vsyscall"),
        _ => None,
    }
}

/// Private memory with every page stored.
fn stored_whole(m: &maps::MapEntry, page: u64, flags: u32) -> AreaToWrite {
    let record = AreaRecord { start: m.start, end: m.end, prot: prot_of(m), kind: AreaKind::Private as u32, flags, ..Default::default() };
    AreaToWrite { record, path: m.path.clone(), runs: vec![Run { first_page: 0, num_pages: (m.end - m.start) / page }] }
}

fn prot_of(m: &maps::MapEntry) -> u32 {
    (if m.perms.read { PROT_READ } else { 0 }) | (if m.perms.write { PROT_WRITE } else { 0 }) | (if m.perms.exec { PROT_EXEC } else { 0 })
}

/// Decide how each mapping is saved and which of its pages are stored. Returns the areas and
/// the (start, end, prot) of unreadable areas that must be opened for reading while writing.
#[allow(clippy::type_complexity)]
fn collect_areas(entries: &[maps::MapEntry], page: u64, header: &mut FileHeader) -> Result<(Vec<AreaToWrite>, Vec<(u64, u64, u32)>), String> {
    let pagemap = std::fs::File::open("/proc/self/pagemap").map_err(|e| format!("cannot open /proc/self/pagemap: {e}"))?;
    let mut areas = Vec::with_capacity(entries.len());
    let mut unprotect = Vec::new();
    // A vdso without data pages (qemu-user's: its functions only make system calls) is plain
    // code: it is stored like any memory, so a restart needs no vdso of the same shape.
    let dataless_vdso = !entries.iter().any(|m| m.path == "[vvar]" || m.path == "[vvar_vclock]");
    for m in entries {
        let range = Range { start: m.start, end: m.end };
        if dataless_vdso && m.path == "[vdso]" {
            areas.push(stored_whole(m, page, 0));
            continue;
        }
        if m.path == "[vdso]" {
            // Its code too: a restart on another kernel points it at that kernel's vdso.
            areas.push(stored_whole(m, page, AREA_VDSO_TEXT));
        }
        match special_range(&m.path) {
            Some("vdso") => header.vdso = range,
            Some("vvar") => header.vvar = range,
            Some("vvar_vclock") => header.vvar_vclock = range,
            Some(_) => {}
            None => {}
        }
        if special_range(&m.path).is_some() {
            continue;
        }
        let prot = prot_of(m);
        let deleted = m.path.ends_with(" (deleted)");
        let file_backed = m.inode != 0 && m.path.starts_with('/');
        let kind = if !m.perms.shared {
            AreaKind::Private
        } else if file_backed && !deleted && !m.path.starts_with("/dev/zero") && !m.path.starts_with("/SYSV") && !m.path.starts_with("/memfd:") {
            AreaKind::SharedFile
        } else {
            AreaKind::SharedAnon
        };
        let mut flags = 0;
        if m.path == "[heap]" {
            flags |= AREA_HEAP;
        }
        if m.path == "[stack]" {
            flags |= AREA_STACK | AREA_GROWSDOWN;
        }
        let mut runs = Vec::new();
        if kind != AreaKind::SharedFile {
            let present = pagemap::present_runs(&pagemap, m.start, m.end, page).map_err(|e| format!("cannot read /proc/self/pagemap: {e}"))?;
            runs = if kind == AreaKind::Private && file_backed && prot & PROT_READ != 0 {
                // Pages of a private file mapping that were never touched read from the file;
                // the image must not depend on the file, so every page inside the file is kept.
                let file_pages =
                    std::fs::metadata(m.path.trim_end_matches(" (deleted)")).map(|md| md.len().saturating_sub(m.offset).div_ceil(page)).unwrap_or(0);
                let n = ((m.end - m.start) / page).min(file_pages);
                merge_runs(&present, n)
            } else {
                present
            };
            if !runs.is_empty() && prot & PROT_READ == 0 {
                unprotect.push((m.start, m.end, prot));
            }
        }
        // Processes that share the object share it again after a restart (dmtcp_restart groups
        // areas by it). Inodes on the kernel's shm mount are 32-bit.
        let shm_id = if kind == AreaKind::SharedAnon { u32::try_from(m.inode).unwrap_or(0) } else { 0 };
        let record = AreaRecord { start: m.start, end: m.end, prot, kind: kind as u32, flags, file_offset: m.offset, shm_id, ..Default::default() };
        areas.push(AreaToWrite {
            record,
            path: m.path.clone(),
            runs: runs.into_iter().map(|(first_page, num_pages)| Run { first_page, num_pages }).collect(),
        });
    }
    // Zero pages are dropped while the unreadable areas are briefly readable.
    for &(start, end, _) in &unprotect {
        // SAFETY: adds PROT_READ to a mapping of this process; the caller restores it.
        let _ = unsafe { dmtcp_arch::sys::mprotect(start as usize, (end - start) as usize, libc::PROT_READ as usize) };
    }
    for a in &mut areas {
        let runs: Vec<(u64, u64)> = a.runs.iter().map(|r| (r.first_page, r.num_pages)).collect();
        let start = a.record.start;
        let kept = pagemap::drop_zero_pages(&runs, page, |p| {
            // SAFETY: the page lies in a readable mapping of this process (see above).
            pagemap::is_zero_page(unsafe { core::slice::from_raw_parts((start + p * page) as usize as *const u8, page as usize) })
        });
        a.runs = kept.into_iter().map(|(first_page, num_pages)| Run { first_page, num_pages }).collect();
    }
    for &(start, end, prot) in &unprotect {
        // SAFETY: restores the original protection.
        let _ = unsafe { dmtcp_arch::sys::mprotect(start as usize, (end - start) as usize, prot as usize) };
    }
    Ok((areas, unprotect))
}

/// Present runs plus every page below `n`: the union, as sorted runs.
fn merge_runs(present: &[(u64, u64)], n: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if n > 0 {
        out.push((0, n));
    }
    for &(first, count) in present {
        let end = first + count;
        if end <= n {
            continue;
        }
        let first = first.max(n);
        match out.last_mut() {
            Some((f, c)) if *f + *c >= first => *c = (*c).max(end - *f),
            _ => out.push((first, end - first)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::merge_runs;

    #[test]
    fn merge_runs_unions_file_pages_and_present_pages() {
        assert_eq!(merge_runs(&[(0, 2), (5, 2)], 3), vec![(0, 3), (5, 2)]);
        assert_eq!(merge_runs(&[(2, 4)], 3), vec![(0, 6)]);
        assert_eq!(merge_runs(&[(4, 1)], 0), vec![(4, 1)]);
        assert_eq!(merge_runs(&[], 0), vec![]);
    }
}
