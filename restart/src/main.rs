//! mtcp_restart: the static, libc-free restart loader.
//!
//! `mtcp_restart <image-fd> <fail-rc> [redirect-vdso] [exe-fd=N] [settings-fd=N] [shm=AREA:FD...] [sysv=AREA:SHMID...]`: the fd holds a verified raw image (dmtcp_restart checked
//! every checksum and set up the process's files). Stage 1 relocates the loader, copies it into a
//! hole that no area of the image uses and switches to a stack there; stage 2 (restore.rs) clears
//! the address space, maps the image back and resumes every thread in its saved context.
//!
//! No libc, no allocator, no locks: everything lives on the stack or in memory mapped here.
#![no_std]
#![no_main]
#![no_builtins]

mod fail;
mod mem;
mod procmaps;
mod reloc;
mod restore;
mod vdso;

use dmtcp_arch::sys;
use dmtcp_layout::{FileHeader, HEADER_SIZE};
use fail::die;

dmtcp_arch::define_loader_entry!(loader_main);

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if let Some(loc) = info.location() {
        let mut buf = [0u8; 20];
        sys::write_all(2, b"mtcp_restart: internal error at ");
        sys::write_all(2, loc.file().as_bytes());
        sys::write_all(2, b":");
        sys::write_all(2, fail::fmt_dec(loc.line() as u64, &mut buf));
        sys::write_all(2, b"\n");
    }
    die("internal error", 0)
}

/// Referenced by core on targets built with unwinding; never called (panic = abort).
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

const AT_NULL: usize = 0;
const AT_PHDR: usize = 3;
const AT_PHNUM: usize = 5;
const AT_PAGESZ: usize = 6;
const AT_SYSINFO_EHDR: usize = 33;
const STACK_SIZE: usize = 512 * 1024;
const MAPS_BUF_SIZE: usize = 1 << 20;

pub(crate) const PROT_RW: usize = 3;
pub(crate) const PROT_RWX: usize = 7;
pub(crate) const MAP_PRIVATE: usize = 0x02;
pub(crate) const MAP_ANONYMOUS: usize = 0x20;
pub(crate) const MAP_FIXED_NOREPLACE: usize = 0x100000;

/// Everything stage 2 needs, stored at the start of the hole's scratch space.
pub struct Ctx {
    pub fd: i32,
    pub page: usize,
    pub header: FileHeader,
    /// The record tables [threads_off, meta_off) of the image, copied into the hole.
    pub tables: usize,
    pub tables_len: usize,
    pub hole_start: usize,
    pub hole_len: usize,
    pub maps_buf: usize,
    pub maps_buf_len: usize,
    /// Treat this kernel's vdso as foreign even when it is the image's (a test aid).
    pub force_vdso_redirect: bool,
    /// Where this process's vdso starts (AT_SYSINFO_EHDR; 0: none).
    pub vdso_at: usize,
    /// The program's file, to become /proc/self/exe again (-1: none).
    pub exe_fd: i32,
    /// Restart-time settings for libdmtcp (dmtcp_restart's memfd; -1: none).
    pub settings_fd: i32,
    /// Shared memory objects dmtcp_restart made and filled, one per area that shares one with
    /// another process (or is a SysV segment); the first `num_shm` entries count.
    pub shm: [SharedArea; MAX_SHM],
    pub num_shm: usize,
}

/// An area whose object dmtcp_restart made and filled (`shm=` or `sysv=`).
#[derive(Clone, Copy)]
pub struct SharedArea {
    pub area: u32,
    /// A memfd to mmap, or the id of a SysV segment to shmat.
    pub handle: i32,
    pub sysv: bool,
}

const NO_SHARED_AREA: SharedArea = SharedArea { area: 0, handle: -1, sysv: false };

/// At most this many `shm=` and `sysv=` arguments (dmtcp_restart passes no more).
pub const MAX_SHM: usize = 64;

// The context sits in the one page between the stack and the tables.
const _: () = assert!(core::mem::size_of::<Ctx>() <= 4096);

/// The loader's optional arguments after `<image-fd> <fail-rc>`.
struct LoaderOpts {
    force_vdso_redirect: bool,
    exe_fd: i32,
    settings_fd: i32,
    shm: [SharedArea; MAX_SHM],
    num_shm: usize,
}

/// Entry from `_start`, on the kernel's initial stack.
///
/// # Safety
/// `sp` is the initial stack pointer laid out by the kernel (argc, argv, envp, auxv).
unsafe extern "C" fn loader_main(sp: *const usize) -> ! {
    // SAFETY: the kernel's initial stack layout: argc, argv[argc], NULL, envp..., NULL, auxv.
    let (argc, argv, auxv) = unsafe {
        let argc = *sp;
        let argv = sp.add(1);
        let mut p = argv.add(argc + 1);
        while *p != 0 {
            p = p.add(1);
        }
        (argc, argv, p.add(1))
    };
    let (mut phdr, mut phnum, mut page, mut vdso) = (0, 0, dmtcp_arch::DEFAULT_PAGE_SIZE, 0);
    let mut a = auxv;
    loop {
        // SAFETY: auxv is a list of (type, value) pairs ending in AT_NULL.
        let (t, v) = unsafe { (*a, *a.add(1)) };
        match t {
            AT_NULL => break,
            AT_PHDR => phdr = v,
            AT_PHNUM => phnum = v,
            AT_PAGESZ => page = v,
            AT_SYSINFO_EHDR => vdso = v,
            _ => {}
        }
        // SAFETY: AT_NULL not reached yet.
        a = unsafe { a.add(2) };
    }
    // SAFETY: phdr/phnum come from the auxiliary vector.
    let Some((base, dynamic)) = (unsafe { reloc::base_and_dynamic(phdr, phnum) }) else { die("cannot find own program headers", 0) };
    // SAFETY: base/dynamic describe this executable, loaded writable where it has relocations.
    if !unsafe { reloc::relocate(base, dynamic, None) } {
        die("unsupported relocation in the loader", 0);
    }
    // SAFETY: as above; from here on anything may be called.
    let Some(me) = (unsafe { reloc::locate(phdr, phnum, page) }) else { die("cannot find own program headers", 0) };
    if argc < 3 {
        die("usage: mtcp_restart <image-fd> <fail-rc> (run by dmtcp_restart)", 0);
    }
    // SAFETY: argv[1] and argv[2] are NUL-terminated strings (argc >= 3).
    let (arg_fd, arg_rc) = unsafe { (cstr(*argv.add(1)), cstr(*argv.add(2))) };
    if let Some(rc) = fail::parse_dec(arg_rc) {
        fail::set_fail_rc(rc as i32);
    }
    let fd = match fail::parse_dec(arg_fd) {
        Some(fd) if fd >= 0 => fd as i32,
        _ => die("bad image fd argument", 0),
    };
    let mut opts = LoaderOpts { force_vdso_redirect: false, exe_fd: -1, settings_fd: -1, shm: [NO_SHARED_AREA; MAX_SHM], num_shm: 0 };
    for i in 3..argc {
        // SAFETY: argv[i] for i < argc is a NUL-terminated string.
        let arg = unsafe { cstr(*argv.add(i)) };
        let fd_of = |prefix: &[u8]| arg.strip_prefix(prefix).and_then(fail::parse_dec).filter(|&v| v >= 0).map(|v| v as i32);
        if arg == b"redirect-vdso" {
            opts.force_vdso_redirect = true;
        } else if let Some(fd) = fd_of(b"exe-fd=") {
            opts.exe_fd = fd;
        } else if let Some(fd) = fd_of(b"settings-fd=") {
            opts.settings_fd = fd;
        } else if let Some((pair, sysv)) = arg.strip_prefix(b"shm=").map(|p| (p, false)).or_else(|| arg.strip_prefix(b"sysv=").map(|p| (p, true))) {
            // shm=<area index>:<fd>, sysv=<area index>:<segment id>
            let colon = pair.iter().position(|&c| c == b':').unwrap_or(pair.len());
            let (idx, handle) = (fail::parse_dec(&pair[..colon]), pair.get(colon + 1..).and_then(fail::parse_dec));
            match (idx, handle) {
                (Some(i), Some(h)) if i >= 0 && h >= 0 && opts.num_shm < MAX_SHM => {
                    opts.shm[opts.num_shm] = SharedArea { area: i as u32, handle: h as i32, sysv };
                    opts.num_shm += 1;
                }
                _ => die("bad shm= or sysv= argument (run by dmtcp_restart)", 0),
            }
        } else {
            die("unknown option (run by dmtcp_restart)", 0);
        }
    }
    stage1(fd, page, me, vdso, opts)
}

/// # Safety
/// `p` must point at a NUL-terminated string that outlives the result.
unsafe fn cstr<'a>(p: usize) -> &'a [u8] {
    // SAFETY: per the contract.
    unsafe { core::slice::from_raw_parts(p as *const u8, mem::strlen(p as *const u8)) }
}

fn round_up(v: usize, page: usize) -> usize {
    (v + page - 1) & !(page - 1)
}

fn stage1(fd: i32, page: usize, me: reloc::SelfImage, vdso: usize, opts: LoaderOpts) -> ! {
    let mut hbuf = [0u8; HEADER_SIZE];
    if let Err(e) = sys::pread_exact(fd, &mut hbuf, 0) {
        die("cannot read the image header", e.into_raw());
    }
    let header = match FileHeader::decode(&hbuf) {
        Ok(h) => h,
        Err(_) => die("invalid image header", 0),
    };
    if header.cpu() != Some(dmtcp_arch::CPU) || header.page_size as usize != page {
        die("image is for another CPU or page size", 0);
    }
    let tables_len = (header.meta_off - header.threads_off) as usize;
    let loader_len = me.end - me.start;
    let tables_space = round_up(tables_len.max(1), page);
    let hole_len = loader_len + STACK_SIZE + page + tables_space + MAPS_BUF_SIZE;

    // Read the tables somewhere first: the hole is chosen from the image's areas.
    // SAFETY: a fresh anonymous mapping the kernel places where nothing is.
    let tmp = match unsafe { sys::mmap(0, tables_space, PROT_RW, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) } {
        Ok(a) => a,
        Err(e) => die("cannot allocate memory for the image tables", e.into_raw()),
    };
    // SAFETY: tmp is a writable mapping of tables_space >= tables_len bytes.
    if let Err(e) = unsafe { sys::pread_into(fd, tmp, tables_len, header.threads_off) } {
        die("cannot read the image tables", e.into_raw());
    }
    // Keep clear of this process's vdso too: qemu-user does not honour MAP_FIXED_NOREPLACE
    // against its own vdso, and the hole would silently replace it.
    let vdso_zone = if vdso == 0 { (0, 0) } else { (vdso.saturating_sub(1 << 20), vdso.saturating_add(1 << 20)) };
    let hole = restore::find_hole(&header, tmp, hole_len, page, vdso_zone);

    // Copy the loader and the tables into the hole, and make the copy runnable there.
    // SAFETY: the hole is a fresh RWX mapping of hole_len bytes; the sources are mapped and
    // readable (the loader's own segments, the tables buffer).
    unsafe {
        for &(seg_start, seg_end) in &me.segments[..me.num_segments] {
            mem::memcpy((hole + (seg_start - me.start)) as *mut u8, seg_start as *const u8, seg_end - seg_start);
        }
        let tables = hole + loader_len + STACK_SIZE + page;
        mem::memcpy(tables as *mut u8, tmp as *const u8, tables_len);
        let _ = sys::munmap(tmp, tables_space);
        let new_base = hole + (me.base - me.start);
        let delta = new_base.wrapping_sub(me.base);
        if !reloc::relocate(new_base, me.dynamic.wrapping_add(delta), Some(delta)) {
            die("unsupported relocation in the loader", 0);
        }
        let maps_buf = tables + tables_space;
        // The context lives at the top of the new stack's guard page slot.
        let ctx_addr = hole + loader_len + STACK_SIZE;
        let ctx = ctx_addr as *mut Ctx;
        ctx.write(Ctx {
            fd,
            page,
            header,
            tables,
            tables_len,
            hole_start: hole,
            hole_len,
            maps_buf,
            maps_buf_len: MAPS_BUF_SIZE,
            force_vdso_redirect: opts.force_vdso_redirect,
            vdso_at: vdso,
            exe_fd: opts.exe_fd,
            settings_fd: opts.settings_fd,
            shm: opts.shm,
            num_shm: opts.num_shm,
        });
        let stage2: extern "C" fn(usize) -> ! = restore::stage2;
        let stage2_moved: extern "C" fn(usize) -> ! = core::mem::transmute((stage2 as usize).wrapping_add(delta));
        let stack_top = (hole + loader_len + STACK_SIZE) & !15;
        dmtcp_arch::switch_stack_and_call(stack_top, stage2_moved, ctx_addr)
    }
}

pub(crate) fn map_hole_at(addr: usize, len: usize) -> bool {
    // SAFETY: MAP_FIXED_NOREPLACE never replaces an existing mapping.
    match unsafe { sys::mmap(addr, len, PROT_RWX, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) } {
        Ok(a) if a == addr => true,
        Ok(a) => {
            // An old kernel took the address as a hint only.
            // SAFETY: `a` is the mapping just made.
            let _ = unsafe { sys::munmap(a, len) };
            false
        }
        Err(_) => false,
    }
}
