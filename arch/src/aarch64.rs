//! AArch64: saved context layout, thread creation for restore, TLS (TPIDR_EL0), loader entry.
//!
//! Runs in signal handlers and in the static loader: no allocation, no locks, no libc.

use crate::ThreadResume;
use dmtcp_layout::Cpu;
use syscalls::Errno;

/// CPU features: `None` means the kernel's AT_HWCAP/AT_HWCAP2 describe them.
pub fn cpu_features() -> Option<[u64; 3]> {
    None
}

pub const CPU: Cpu = Cpu::Aarch64;
pub const WORD_BITS: u8 = 64;
/// The kernel may use 4, 16 or 64 KiB pages: the real size comes from AT_PAGESZ.
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// glibc's RSEQ_SIG for AArch64 (a `brk #0x45e0`).
pub const RSEQ_SIG: u32 = 0xd428_bc00;
/// R_AARCH64_RELATIVE; AArch64 uses RELA.
pub const RELATIVE_RELOC: u32 = 1027;
pub const RELOCS_HAVE_ADDEND: bool = true;

/// The calling thread's TLS: (TPIDR_EL0, unused).
pub fn current_tls() -> (u64, u64) {
    let tp: u64;
    // SAFETY: reading the thread pointer register has no side effects.
    unsafe { core::arch::asm!("mrs {0}, tpidr_el0", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    (tp, 0)
}

/// See the x86_64 module. Frame: x19-x30, d8-d15, FPCR (176 bytes).
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn park(sp_slot: *mut usize, wait_word: *const u32, wait_value: u32) -> usize {
    core::arch::naked_asm!(
        "sub sp, sp, #176",
        "stp x19, x20, [sp, #0]",
        "stp x21, x22, [sp, #16]",
        "stp x23, x24, [sp, #32]",
        "stp x25, x26, [sp, #48]",
        "stp x27, x28, [sp, #64]",
        "stp x29, x30, [sp, #80]",
        "stp d8, d9, [sp, #96]",
        "stp d10, d11, [sp, #112]",
        "stp d12, d13, [sp, #128]",
        "stp d14, d15, [sp, #144]",
        "mrs x9, fpcr",
        "str x9, [sp, #160]",
        "mov x9, sp",
        "str x9, [x0]",
        "mov x19, x1",
        "mov w20, w2",
        "2:",
        "ldr w9, [x19]",
        "cmp w9, w20",
        "b.ne 3f",
        "mov x0, x19",
        "mov x1, #128", // FUTEX_WAIT_PRIVATE
        "mov w2, w20",
        "mov x3, #0",
        "mov x8, #98", // futex
        "svc #0",
        "b 2b",
        "3:",
        "mov x0, #0",
        "ldr x9, [sp, #160]",
        "msr fpcr, x9",
        "ldp d14, d15, [sp, #144]",
        "ldp d12, d13, [sp, #128]",
        "ldp d10, d11, [sp, #112]",
        "ldp d8, d9, [sp, #96]",
        "ldp x29, x30, [sp, #80]",
        "ldp x27, x28, [sp, #64]",
        "ldp x25, x26, [sp, #48]",
        "ldp x23, x24, [sp, #32]",
        "ldp x21, x22, [sp, #16]",
        "ldp x19, x20, [sp, #0]",
        "add sp, sp, #176",
        "ret",
    )
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn save_and_run(sp_slot: *mut usize, f: extern "C" fn(*mut u8), arg: *mut u8) -> usize {
    core::arch::naked_asm!(
        "sub sp, sp, #176",
        "stp x19, x20, [sp, #0]",
        "stp x21, x22, [sp, #16]",
        "stp x23, x24, [sp, #32]",
        "stp x25, x26, [sp, #48]",
        "stp x27, x28, [sp, #64]",
        "stp x29, x30, [sp, #80]",
        "stp d8, d9, [sp, #96]",
        "stp d10, d11, [sp, #112]",
        "stp d12, d13, [sp, #128]",
        "stp d14, d15, [sp, #144]",
        "mrs x9, fpcr",
        "str x9, [sp, #160]",
        "mov x9, sp",
        "str x9, [x0]",
        "mov x0, x2",
        "blr x1",
        "mov x0, #0",
        "ldr x9, [sp, #160]",
        "msr fpcr, x9",
        "ldp d14, d15, [sp, #144]",
        "ldp d12, d13, [sp, #128]",
        "ldp d10, d11, [sp, #112]",
        "ldp d8, d9, [sp, #96]",
        "ldp x29, x30, [sp, #80]",
        "ldp x27, x28, [sp, #64]",
        "ldp x25, x26, [sp, #48]",
        "ldp x23, x24, [sp, #32]",
        "ldp x21, x22, [sp, #16]",
        "ldp x19, x20, [sp, #0]",
        "add sp, sp, #176",
        "ret",
    )
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn resume_context(sp: usize) -> ! {
    core::arch::naked_asm!(
        "mov sp, x0",
        "mov x0, #1",
        "ldr x9, [sp, #160]",
        "msr fpcr, x9",
        "ldp d14, d15, [sp, #144]",
        "ldp d12, d13, [sp, #128]",
        "ldp d10, d11, [sp, #112]",
        "ldp d8, d9, [sp, #96]",
        "ldp x29, x30, [sp, #80]",
        "ldp x27, x28, [sp, #64]",
        "ldp x25, x26, [sp, #48]",
        "ldp x23, x24, [sp, #32]",
        "ldp x21, x22, [sp, #16]",
        "ldp x19, x20, [sp, #0]",
        "add sp, sp, #176",
        "ret",
    )
}

const CLONE_VM: usize = 0x100;
const CLONE_FS: usize = 0x200;
const CLONE_FILES: usize = 0x400;
const CLONE_SIGHAND: usize = 0x800;
const CLONE_THREAD: usize = 0x10000;
const CLONE_SYSVSEM: usize = 0x40000;
const CLONE_SETTLS: usize = 0x80000;
const CLONE_PARENT_SETTID: usize = 0x100000;
const CLONE_CHILD_CLEARTID: usize = 0x200000;

/// See the x86_64 module. clone's argument order here is flags, stack, ptid, tls, ctid.
///
/// # Safety
/// As on x86_64.
pub unsafe fn spawn_restored_thread(t: &ThreadResume) -> Result<u32, Errno> {
    let mut flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
    if t.tid_address != 0 {
        flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    }
    let ret: isize;
    // SAFETY: the child never returns into Rust: it runs only the instructions below, on the
    // restored thread's own stack, then jumps into its saved context.
    core::arch::asm!(
        "mov x8, #220", // clone
        "svc #0",
        "cbnz x0, 2f",
        "cbz x20, 3f",
        "mov x0, x20",
        "mov x1, x21",
        "mov x8, #99", // set_robust_list
        "svc #0",
        "3:",
        "cbz x22, 4f",
        "mov x0, x22",
        "mov w1, w23",
        "mov x2, #0",
        "mov w3, w24",
        "mov x8, #293", // rseq
        "svc #0",
        "4:",
        "mov x0, sp",
        "b {resume}",
        "2:",
        resume = sym resume_context,
        inlateout("x0") flags => ret,
        in("x1") t.sp,
        in("x2") t.tid_address,
        in("x3") t.tls,
        in("x4") t.tid_address,
        in("x20") t.robust_head,
        in("x21") t.robust_len,
        in("x22") t.rseq_addr,
        in("x23") t.rseq_len as usize,
        in("x24") t.rseq_sig as usize,
        out("x8") _,
        options(nostack),
    );
    if ret < 0 {
        Err(Errno::new((-ret) as i32))
    } else {
        Ok(ret as u32)
    }
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
pub unsafe fn restore_current_thread_tls(t: &ThreadResume) -> Result<(), Errno> {
    core::arch::asm!("msr tpidr_el0, {0}", in(reg) t.tls, options(nomem, nostack, preserves_flags));
    crate::restore_thread_kernel_state(t)
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stack_and_call(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    core::arch::naked_asm!("mov sp, x0", "mov x0, x2", "mov x29, #0", "mov x30, #0", "blr x1", "brk #0")
}

/// Define the static loader's `_start`, which calls `$main(initial_sp: *const usize) -> !`.
#[macro_export]
macro_rules! define_loader_entry {
    ($main:path) => {
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!("mov x29, #0", "mov x30, #0", "mov x0, sp", "bl {main}", "brk #0", main = sym $main,)
        }
    };
}

/// The longest code `encode_jump` writes.
pub const JUMP_MAX: usize = 16;

/// Code at `at` that jumps to `target` through x16 (IP0, free for veneers by the ABI), with
/// the address in a literal right after. Returns where to write it and its length.
pub fn encode_jump(at: usize, target: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[..4].copy_from_slice(&0x5800_0050u32.to_le_bytes()); // ldr x16, .+8
    out[4..8].copy_from_slice(&0xd61f_0200u32.to_le_bytes()); // br x16
    out[8..16].copy_from_slice(&(target as u64).to_le_bytes());
    (at, 16)
}

/// Code at `at` that returns -ENOSYS (glibc then makes the system call instead).
pub fn encode_enosys(at: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[..4].copy_from_slice(&0x9280_04a0u32.to_le_bytes()); // mov x0, #-38
    out[4..8].copy_from_slice(&0xd65f_03c0u32.to_le_bytes()); // ret
    (at, 8)
}

/// Make code just written at [start, start+len) visible to instruction fetch: clean the data
/// cache lines to the point of unification, then invalidate the instruction cache lines (the
/// line sizes come from CTR_EL0, readable at EL0 on Linux).
pub fn sync_icache(start: usize, len: usize) {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr) };
    let (dline, iline) = (4usize << ((ctr >> 16) & 0xf), 4usize << (ctr & 0xf));
    let end = start + len;
    let mut a = start & !(dline - 1);
    while a < end {
        // SAFETY: cache maintenance by address on our own mapping.
        unsafe { core::arch::asm!("dc cvau, {}", in(reg) a) };
        a += dline;
    }
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ish") };
    let mut a = start & !(iline - 1);
    while a < end {
        // SAFETY: cache maintenance by address on our own mapping.
        unsafe { core::arch::asm!("ic ivau, {}", in(reg) a) };
        a += iline;
    }
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ish", "isb") };
}
