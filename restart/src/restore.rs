//! Stage 2 of the loader, running from its copy in the hole on the hole's stack: clear the old
//! address space, put vdso/vvar where the image had them, map every area back, restore signal
//! actions and mm fields, then resume every thread.
//!
//! No allocation, no libc: the only memory used is the hole.

use crate::fail::{die, die_at};
use crate::procmaps::{Lines, Special};
use crate::{vdso, Ctx, MAP_ANONYMOUS, MAP_PRIVATE};
use dmtcp_arch::{sys, Sysno, ThreadResume};
use dmtcp_layout::*;

const MAP_SHARED: usize = 0x01;
const MAP_FIXED: usize = 0x10;
const MAP_GROWSDOWN: usize = 0x100;
const O_RDONLY: usize = 0;
const O_RDWR: usize = 2;
const O_CLOEXEC: usize = 0o2000000;
const AT_FDCWD: isize = -100;
const PR_SET_MM: usize = 35;
const PR_SET_MM_MAP: usize = 14;
const PR_SET_NAME: usize = 15;
const SIG_SETMASK: i32 = 2;

pub(crate) fn area_at(tables: usize, h: &FileHeader, i: usize) -> AreaRecord {
    let off = (h.areas_off - h.threads_off) as usize + i * AREA_SIZE;
    // SAFETY: the tables buffer holds [threads_off, meta_off), which FileHeader::decode checked
    // contains every area record.
    let bytes = unsafe { core::slice::from_raw_parts((tables + off) as *const u8, AREA_SIZE) };
    match AreaRecord::decode(bytes) {
        Ok(a) => a,
        Err(_) => die("invalid memory area record", 0),
    }
}

pub(crate) fn overlaps(a0: usize, a1: usize, b0: u64, b1: u64) -> bool {
    (a0 as u64) < b1 && b0 < (a1 as u64)
}

pub(crate) fn conflicts(h: &FileHeader, tables: usize, start: usize, len: usize) -> bool {
    let end = start + len;
    for r in [h.vdso, h.vvar, h.vvar_vclock] {
        if overlaps(start, end, r.start, r.end) {
            return true;
        }
    }
    (0..h.num_areas as usize).any(|i| {
        let a = area_at(tables, h, i);
        overlaps(start, end, a.start, a.end)
    })
}

/// Find and map (RWX) a range of `len` bytes that no area of the image uses and nothing in this
/// process occupies now. Candidates are the page after each area's end (one guard page apart),
/// then low addresses; `avoid` is a range to keep clear of as well.
pub fn find_hole(h: &FileHeader, tables: usize, len: usize, page: usize, avoid: (usize, usize)) -> usize {
    let guard = 16 * page;
    let try_at = |cand: usize| -> bool {
        cand >= 0x10_0000
            && cand.checked_add(len + guard).is_some()
            && !(cand < avoid.1 && avoid.0 < cand + len)
            && !conflicts(h, tables, cand - guard, len + 2 * guard)
            && crate::map_hole_at(cand, len)
    };
    for i in 0..h.num_areas as usize {
        let a = area_at(tables, h, i);
        let cand = (a.end as usize).wrapping_add(guard);
        if try_at(cand) {
            return cand;
        }
    }
    let mut cand = 0x100_0000usize;
    while cand < 0x4000_0000 {
        if try_at(cand) {
            return cand;
        }
        cand += 0x100_0000;
    }
    die("no free address range for the loader", 0)
}

/// Stage 2 entry, on the hole's stack.
pub extern "C" fn stage2(ctx_addr: usize) -> ! {
    // SAFETY: stage 1 wrote a Ctx at this address inside the hole, which stays mapped.
    let ctx = unsafe { &*(ctx_addr as *const Ctx) };
    let h = &ctx.header;
    let (vdso_now, vvar_now, vclock_now) = clear_address_space(ctx);
    let placed = vdso::place(ctx, vdso_now, vvar_now, vclock_now);
    for i in 0..h.num_areas as usize {
        let a = area_at(ctx.tables, h, i);
        if a.flags & AREA_VDSO_TEXT == 0 || placed.redirect {
            map_area(ctx, i, &a);
        }
    }
    for s in ctx.shm[..ctx.num_shm.min(crate::MAX_SHM)].iter().filter(|s| !s.sysv) {
        // SAFETY: dmtcp_restart's fd for us; the mappings keep the object alive.
        let _ = unsafe { syscalls::syscall1(Sysno::close, s.handle as usize) };
    }
    if placed.redirect {
        vdso::redirect(ctx, placed.live);
    }
    // SAFETY: the image fd is ours (dmtcp_restart opened it for us) and not used afterwards.
    let _ = unsafe { syscalls::syscall1(Sysno::close, ctx.fd as usize) };
    restore_sigactions(ctx);
    let mm_failed = !restore_mm(ctx);
    write_restart_info(ctx, mm_failed);
    resume_threads(ctx)
}

/// Unmap everything but the hole and the kernel's special mappings; return where the current
/// vdso, vvar and vvar_vclock are.
fn clear_address_space(ctx: &Ctx) -> (Range, Range, Range) {
    // SAFETY: maps_buf is a writable part of the hole of maps_buf_len bytes.
    let buf = unsafe { core::slice::from_raw_parts_mut(ctx.maps_buf as *mut u8, ctx.maps_buf_len) };
    let path = b"/proc/self/maps\0";
    // SAFETY: path is NUL-terminated.
    let fd = match unsafe { syscalls::syscall4(Sysno::openat, AT_FDCWD as usize, path.as_ptr() as usize, O_RDONLY | O_CLOEXEC, 0) } {
        Ok(fd) => fd,
        Err(e) => die("cannot open /proc/self/maps", e.into_raw()),
    };
    let mut len = 0;
    loop {
        if len == buf.len() {
            die("/proc/self/maps of the loader is too large", 0);
        }
        let rest = &mut buf[len..];
        // SAFETY: `rest` is writable for its length.
        match unsafe { syscalls::syscall3(Sysno::read, fd, rest.as_mut_ptr() as usize, rest.len()) } {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(dmtcp_arch::Errno::EINTR) => {}
            Err(e) => die("cannot read /proc/self/maps", e.into_raw()),
        }
    }
    // SAFETY: closing our own fd.
    let _ = unsafe { syscalls::syscall1(Sysno::close, fd) };
    let (mut vdso, mut vvar, mut vclock) = (Range::default(), Range::default(), Range::default());
    let (hole0, hole1) = (ctx.hole_start, ctx.hole_start + ctx.hole_len);
    for e in Lines::new(&buf[..len]) {
        let r = Range { start: e.start as u64, end: e.end as u64 };
        // qemu-user names its vdso [heap] when it lies where the loader's program break starts:
        // the auxiliary vector says which mapping it is (unmapped, signals would return nowhere).
        let special = if ctx.vdso_at != 0 && e.start == ctx.vdso_at { Special::Vdso } else { e.special };
        match special {
            Special::Vdso => vdso = r,
            Special::Vvar => vvar = r,
            Special::VvarVclock => vclock = r,
            Special::Vsyscall => {}
            Special::None => {
                // Unmap what lies outside the hole (the kernel may have merged a neighbour in).
                for (s, t) in [(e.start, e.end.min(hole0)), (e.start.max(hole1), e.end)] {
                    if s < t {
                        // SAFETY: nothing of the old loader process is used any more: this
                        // code, its stack and data are all inside the hole.
                        let _ = unsafe { sys::munmap(s, t - s) };
                    }
                }
            }
        }
    }
    (vdso, vvar, vclock)
}

pub(crate) fn prot_bits(p: u32) -> usize {
    (p & (PROT_READ | PROT_WRITE | PROT_EXEC)) as usize
}

fn map_area(ctx: &Ctx, index: usize, a: &AreaRecord) {
    let (start, len) = (a.start as usize, a.len() as usize);
    let kind = a.area_kind();
    if kind == AreaKind::SharedFile {
        map_shared_file(ctx, a);
        return;
    }
    let made = ctx.shm[..ctx.num_shm.min(crate::MAX_SHM)].iter().find(|s| s.area as usize == index);
    if let (AreaKind::SharedAnon, Some(s)) = (kind, made.filter(|s| s.sysv)) {
        attach_segment(s.handle, a);
        return;
    }
    if let (AreaKind::SharedAnon, Some(&crate::SharedArea { handle: fd, .. })) = (kind, made) {
        // dmtcp_restart made the object and put its contents in: map it, read nothing (another
        // process of the computation may already run and write to it).
        // SAFETY: the address space outside the hole is empty; areas never overlap the hole.
        if let Err(e) = unsafe { sys::mmap(start, len, prot_bits(a.prot), MAP_FIXED | MAP_SHARED, fd, a.file_offset) } {
            die_at("cannot map shared memory", a.start, e.into_raw());
        }
        return;
    }
    let mut flags = MAP_FIXED | MAP_ANONYMOUS;
    flags |= if kind == AreaKind::SharedAnon { MAP_SHARED } else { MAP_PRIVATE };
    if a.flags & AREA_GROWSDOWN != 0 {
        flags |= MAP_GROWSDOWN;
    }
    // SAFETY: the address space outside the hole is empty; areas never overlap the hole.
    if let Err(e) = unsafe { sys::mmap(start, len, 3, flags, -1, 0) } {
        die_at("cannot map memory area", a.start, e.into_raw());
    }
    // SAFETY: the area was just mapped writable at `start` with its full length.
    unsafe { read_area_data(ctx, a, start) };
    if prot_bits(a.prot) != 3 {
        // SAFETY: the area was just mapped by us.
        if let Err(e) = unsafe { sys::mprotect(start, len, prot_bits(a.prot)) } {
            die_at("cannot set memory protection", a.start, e.into_raw());
        }
    }
}

/// Attach SysV segment `id` (made and filled by dmtcp_restart) where area `a` had it, with the
/// area's protection: the program's shmid then names this memory again.
fn attach_segment(id: i32, a: &AreaRecord) {
    const SHM_RDONLY: usize = 0o10000;
    const SHM_EXEC: usize = 0o100000;
    let prot = prot_bits(a.prot);
    let mut flags = if prot & PROT_WRITE as usize == 0 { SHM_RDONLY } else { 0 };
    if prot & PROT_EXEC as usize != 0 {
        flags |= SHM_EXEC;
    }
    // SAFETY: the address space outside the hole is empty; areas never overlap the hole, and the
    // address was one the kernel attached this segment at (so SHMLBA-aligned).
    match unsafe { syscalls::syscall3(Sysno::shmat, id as usize, a.start as usize, flags) } {
        Ok(at) if at == a.start as usize => {}
        Ok(_) => die_at("SysV segment attached at another address", a.start, 0),
        Err(e) => die_at("cannot attach SysV shared memory", a.start, e.into_raw()),
    }
    if prot & PROT_READ as usize == 0 {
        // SAFETY: the segment was just attached by us at this address and length.
        if let Err(e) = unsafe { sys::mprotect(a.start as usize, a.len() as usize, prot) } {
            die_at("cannot set memory protection", a.start, e.into_raw());
        }
    }
}

/// Read the stored pages of area `a` into memory at `dst`.
///
/// # Safety
/// [dst, dst + a.len()) must be mapped writable and used by nothing else.
pub(crate) unsafe fn read_area_data(ctx: &Ctx, a: &AreaRecord, dst: usize) {
    let page = ctx.page as u64;
    let mut data = a.data_off;
    for r in 0..a.num_runs as u64 {
        let off = (ctx.header.runs_off - ctx.header.threads_off) as usize + ((a.runs_index + r) as usize) * RUN_SIZE;
        // SAFETY: dmtcp_restart verified that the run table lies within the tables.
        let bytes = unsafe { core::slice::from_raw_parts((ctx.tables + off) as *const u8, RUN_SIZE) };
        let run = match Run::decode(bytes) {
            Ok(r) if (r.first_page + r.num_pages) * page <= a.len() => r,
            _ => die_at("invalid page run", a.start, 0),
        };
        let bytes = (run.num_pages * page) as usize;
        // SAFETY: the run lies inside [dst, dst + a.len()), writable per the contract.
        if let Err(e) = unsafe { sys::pread_into(ctx.fd, dst + (run.first_page * page) as usize, bytes, data) } {
            die_at("cannot read page data", a.start + run.first_page * page, e.into_raw());
        }
        data += bytes as u64;
    }
}

fn map_shared_file(ctx: &Ctx, a: &AreaRecord) {
    let mut path = [0u8; 4096];
    let n = a.path_len as usize;
    let off = (ctx.header.strtab_off - ctx.header.threads_off) as usize + a.path_off as usize;
    if n == 0 || n >= path.len() || a.path_off as u64 + a.path_len as u64 > ctx.header.strtab_len {
        die_at("invalid path of a shared file mapping", a.start, 0);
    }
    // SAFETY: the string table lies within the tables buffer (checked above and by decode).
    let src = unsafe { core::slice::from_raw_parts((ctx.tables + off) as *const u8, n) };
    path[..n].copy_from_slice(src);
    let mode = if a.prot & PROT_WRITE != 0 { O_RDWR } else { O_RDONLY };
    // SAFETY: path is NUL-terminated.
    let fd = match unsafe { syscalls::syscall4(Sysno::openat, AT_FDCWD as usize, path.as_ptr() as usize, mode | O_CLOEXEC, 0) } {
        Ok(fd) => fd,
        Err(e) => die_at("cannot reopen the file of a shared mapping", a.start, e.into_raw()),
    };
    // SAFETY: maps the file where the image had it; the range is free.
    let r = unsafe { sys::mmap(a.start as usize, a.len() as usize, prot_bits(a.prot), MAP_SHARED | MAP_FIXED, fd as i32, a.file_offset) };
    // SAFETY: our own fd.
    let _ = unsafe { syscalls::syscall1(Sysno::close, fd) };
    if let Err(e) = r {
        die_at("cannot map a shared file", a.start, e.into_raw());
    }
}

fn restore_sigactions(ctx: &Ctx) {
    let h = &ctx.header;
    for i in 0..NUM_SIGNALS {
        let sig = i as i32 + 1;
        if sig == 9 || sig == 19 {
            continue; // SIGKILL and SIGSTOP cannot be caught
        }
        let off = (h.sigactions_off - h.threads_off) as usize + i * SIGACTION_SIZE;
        // SAFETY: the sigaction table lies within the tables buffer.
        let bytes = unsafe { core::slice::from_raw_parts((ctx.tables + off) as *const u8, SIGACTION_SIZE) };
        if let Ok(rec) = SigactionRecord::decode(bytes) {
            let act = dmtcp_arch::KernelSigaction::from_record(&rec);
            // SAFETY: the handler addresses belong to the restored memory.
            let _ = unsafe { dmtcp_arch::rt_sigaction(sig, Some(&act), None) };
        }
    }
}

/// The kernel's struct prctl_mm_map, generic over the width of its `auxv` pointer: a 32-bit
/// process on a 64-bit kernel must pass the kernel's (64-bit) layout, there is no compat version.
#[repr(C)]
struct PrctlMmMap<P> {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    auxv: P,
    auxv_size: u32,
    exe_fd: u32,
}

fn set_mm_map<P>(m: &MmFields, auxv: &[u8], exe_fd: i32, ptr: fn(usize) -> P) -> bool {
    let map = PrctlMmMap::<P> {
        start_code: m.start_code,
        end_code: m.end_code,
        start_data: m.start_data,
        end_data: m.end_data,
        start_brk: m.start_brk,
        brk: m.brk,
        start_stack: m.start_stack,
        arg_start: m.arg_start,
        arg_end: m.arg_end,
        env_start: m.env_start,
        env_end: m.env_end,
        auxv: ptr(if auxv.is_empty() { 0 } else { auxv.as_ptr() as usize }),
        auxv_size: auxv.len() as u32,
        exe_fd: exe_fd as u32,
    };
    // SAFETY: `map` is a valid struct prctl_mm_map of the size passed; auxv points at its bytes.
    unsafe {
        syscalls::syscall5(Sysno::prctl, PR_SET_MM, PR_SET_MM_MAP, &map as *const PrctlMmMap<P> as usize, core::mem::size_of::<PrctlMmMap<P>>(), 0)
    }
    .is_ok()
}

/// Give the kernel the image's brk, stack, argument/environment bounds and auxiliary vector, so
/// the heap grows where the program expects, /proc/self/cmdline reads right and a debugger finds
/// the program's headers; and, if dmtcp_restart opened the program's file for us, make it
/// /proc/self/exe again (that part needs CAP_CHECKPOINT_RESTORE). Best effort: each attempt asks
/// for less; qemu-user refuses all of them.
fn restore_mm(ctx: &Ctx) -> bool {
    let h = &ctx.header;
    let m = &h.mm;
    if m.start_code == 0 || m.arg_start == 0 || m.brk < m.start_brk {
        return false;
    }
    let (auxv, exe) = (h.auxv(), ctx.exe_fd);
    let attempts: [(&[u8], i32); 3] = [(auxv, exe), (auxv, -1), (&[], -1)];
    // The native layout, then the 64-bit kernel's layout (a 32-bit process on a 64-bit kernel).
    let wide = core::mem::size_of::<usize>() != 8;
    let ok = attempts
        .iter()
        .filter(|(_, fd)| *fd == -1 || exe >= 0)
        .any(|&(auxv, fd)| set_mm_map::<usize>(m, auxv, fd, |p| p) || (wide && set_mm_map::<u64>(m, auxv, fd, |p| p as u64)));
    if exe >= 0 {
        // SAFETY: dmtcp_restart opened this fd for us only.
        let _ = unsafe { syscalls::syscall1(Sysno::close, exe as usize) };
    }
    ok
}

fn write_restart_info(ctx: &Ctx, mm_failed: bool) {
    let addr = ctx.header.restart_info_addr as usize;
    if addr == 0 {
        die("image lacks the restart-info address", 0);
    }
    let p = addr as *mut RestartInfo;
    // SAFETY: the address is libdmtcp's RESTART_INFO in the memory just restored (writable
    // .bss). Field by field: a 1.0 image's libdmtcp has a shorter RestartInfo without
    // settings_fd, and a whole-struct write would run past it.
    unsafe {
        let generation = core::ptr::addr_of_mut!((*p).generation);
        generation.write_volatile(generation.read_volatile() + 1);
        core::ptr::addr_of_mut!((*p).loader_start).write_volatile(ctx.hole_start as u64);
        core::ptr::addr_of_mut!((*p).loader_len).write_volatile(ctx.hole_len as u64);
        core::ptr::addr_of_mut!((*p).mm_not_restored).write_volatile(mm_failed as u64);
        if ctx.header.minor >= 1 {
            core::ptr::addr_of_mut!((*p).settings_fd).write_volatile(ctx.settings_fd as i64);
        }
    }
}

fn thread_at(ctx: &Ctx, i: usize) -> ThreadRecord {
    // SAFETY: threads start at the tables buffer's beginning; decode checked the count fits.
    let bytes = unsafe { core::slice::from_raw_parts((ctx.tables + i * THREAD_SIZE) as *const u8, THREAD_SIZE) };
    match ThreadRecord::decode(bytes) {
        Ok(t) => t,
        Err(_) => die("invalid thread record", 0),
    }
}

fn resume_of(t: &ThreadRecord) -> ThreadResume {
    ThreadResume {
        sp: t.resume_sp as usize,
        tls: t.tls as usize,
        tls_aux: t.tls_aux as usize,
        tid_address: t.tid_address as usize,
        robust_head: t.robust_head as usize,
        robust_len: t.robust_len as usize,
        rseq_addr: t.rseq_addr as usize,
        rseq_len: t.rseq_len,
        rseq_sig: t.rseq_sig,
    }
}

fn resume_threads(ctx: &Ctx) -> ! {
    let n = ctx.header.num_threads as usize;
    let main = (0..n).find(|&i| thread_at(ctx, i).flags & THREAD_IS_MAIN != 0).unwrap_or(0);
    // Threads start with every signal blocked; each one's own mask comes back when it returns
    // from the checkpoint signal handler it was saved in.
    let all: u64 = !0;
    let _ = dmtcp_arch::rt_sigprocmask(SIG_SETMASK, Some(&all), None);
    for i in (0..n).filter(|&i| i != main) {
        let t = thread_at(ctx, i);
        if t.resume_sp == 0 {
            die("thread record without a saved context", 0);
        }
        // SAFETY: the memory of the restored process is mapped.
        if let Err(e) = unsafe { dmtcp_arch::spawn_restored_thread(&resume_of(&t)) } {
            die("cannot create a thread", e.into_raw());
        }
    }
    let t = thread_at(ctx, main);
    let comm = t.comm;
    // SAFETY: comm is a 16-byte buffer; PR_SET_NAME reads at most 16 bytes.
    let _ = unsafe { syscalls::syscall2(Sysno::prctl, PR_SET_NAME, comm.as_ptr() as usize) };
    let r = resume_of(&t);
    // SAFETY: the restored memory is mapped; from here on only this thread's own saved context runs.
    unsafe {
        if let Err(e) = dmtcp_arch::restore_current_thread_tls(&r) {
            die("cannot restore the main thread's TLS", e.into_raw());
        }
        dmtcp_arch::resume_context(r.sp)
    }
}
