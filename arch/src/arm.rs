//! ARMv7 (gnueabihf): saved context layout, thread creation for restore, TLS (TPIDRURO, set
//! with the ARM-private set_tls call), loader entry.
//!
//! Runs in signal handlers and in the static loader: no allocation, no locks, no libc.
//! LLVM reserves r6, r7 (Thumb frame pointer) and r11 for inline asm, so clone's arguments and
//! the new thread's restore values travel through memory, as on i686.

use crate::ThreadResume;
use dmtcp_layout::Cpu;
use syscalls::Errno;

/// CPU features: `None` means the kernel's AT_HWCAP/AT_HWCAP2 describe them.
pub fn cpu_features() -> Option<[u64; 3]> {
    None
}

pub const CPU: Cpu = Cpu::Arm;
pub const WORD_BITS: u8 = 32;
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// glibc's RSEQ_SIG for ARM (an `udf #24381` in ARM state).
pub const RSEQ_SIG: u32 = 0xe7f5_def3;
/// R_ARM_RELATIVE; ARM uses REL.
pub const RELATIVE_RELOC: u32 = 23;
pub const RELOCS_HAVE_ADDEND: bool = false;

/// __ARM_NR_set_tls (0xf0005), an ARM-private call the syscalls crate does not know: r7 is
/// reserved by LLVM, so it is saved around the call by hand.
fn set_tls(tls: usize) -> Result<(), Errno> {
    let r: i32;
    // SAFETY: set_tls only changes TPIDRURO of the calling thread; r7 is restored.
    unsafe { core::arch::asm!("push {{r7}}", "movw r7, #5", "movt r7, #15", "svc #0", "pop {{r7}}", inlateout("r0") tls as i32 => r) };
    if r < 0 {
        Err(Errno::new(-r))
    } else {
        Ok(())
    }
}

/// The calling thread's TLS: (TPIDRURO, unused).
pub fn current_tls() -> (u64, u64) {
    let tp: u32;
    // SAFETY: reading the user read-only thread ID register has no side effects.
    unsafe { core::arch::asm!("mrc p15, 0, {0}, c13, c0, 3", out(reg) tp, options(nomem, nostack, preserves_flags)) };
    (tp as u64, 0)
}

/// See the x86_64 module. Frame (112 bytes, from the saved sp up): FPSCR and a pad word,
/// d8-d15, r4-r12 and lr.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn park(sp_slot: *mut usize, wait_word: *const u32, wait_value: u32) -> usize {
    core::arch::naked_asm!(
        "push {{r4-r12, lr}}",
        "vpush {{d8-d15}}",
        "vmrs r4, fpscr",
        "push {{r4, r5}}",
        "str sp, [r0]",
        "mov r4, r1",
        "mov r5, r2",
        "2:",
        "ldr r6, [r4]",
        "cmp r6, r5",
        "bne 3f",
        "mov r0, r4",
        "mov r1, #128", // FUTEX_WAIT_PRIVATE
        "mov r2, r5",
        "mov r3, #0",
        "mov r7, #240", // futex
        "svc #0",
        "b 2b",
        "3:",
        "mov r0, #0",
        "pop {{r4, r5}}",
        "vmsr fpscr, r4",
        "vpop {{d8-d15}}",
        "pop {{r4-r12, pc}}",
    )
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn save_and_run(sp_slot: *mut usize, f: extern "C" fn(*mut u8), arg: *mut u8) -> usize {
    core::arch::naked_asm!(
        "push {{r4-r12, lr}}",
        "vpush {{d8-d15}}",
        "vmrs r4, fpscr",
        "push {{r4, r5}}",
        "str sp, [r0]",
        "mov r0, r2",
        "blx r1",
        "mov r0, #0",
        "pop {{r4, r5}}",
        "vmsr fpscr, r4",
        "vpop {{d8-d15}}",
        "pop {{r4-r12, pc}}",
    )
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn resume_context(sp: usize) -> ! {
    core::arch::naked_asm!("mov sp, r0", "mov r0, #1", "pop {{r4, r5}}", "vmsr fpscr, r4", "vpop {{d8-d15}}", "pop {{r4-r12, pc}}")
}

const CLONE_VM: u32 = 0x100;
const CLONE_FS: u32 = 0x200;
const CLONE_FILES: u32 = 0x400;
const CLONE_SIGHAND: u32 = 0x800;
const CLONE_THREAD: u32 = 0x10000;
const CLONE_SYSVSEM: u32 = 0x40000;
const CLONE_SETTLS: u32 = 0x80000;
const CLONE_PARENT_SETTID: u32 = 0x100000;
const CLONE_CHILD_CLEARTID: u32 = 0x200000;

const SCRATCH_WORDS: usize = 8;

/// See the x86_64 module and the i686 one for the scratch block.
///
/// # Safety
/// As on x86_64.
pub unsafe fn spawn_restored_thread(t: &ThreadResume) -> Result<u32, Errno> {
    let scratch = (t.sp - SCRATCH_WORDS * 4) & !15;
    let words: [u32; SCRATCH_WORDS] = [t.robust_head as u32, t.robust_len as u32, t.rseq_addr as u32, t.rseq_len, t.rseq_sig, t.sp as u32, 0, 0];
    // SAFETY (caller): the restored thread's stack below its saved pointer is free memory.
    core::ptr::copy_nonoverlapping(words.as_ptr(), scratch as *mut u32, SCRATCH_WORDS);
    let mut flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
    if t.tid_address != 0 {
        flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    }
    // clone(flags, stack, ptid, tls, ctid)
    let args: [u32; 5] = [flags, scratch as u32, t.tid_address as u32, t.tls as u32, t.tid_address as u32];
    let ret: i32;
    // SAFETY: the child never returns into Rust: it runs only the instructions below, on the
    // scratch block, then jumps into its saved context. The parent restores r4-r7 itself.
    core::arch::asm!(
        "push {{r4, r5, r6, r7}}",
        "mov r6, r0",
        "ldr r0, [r6]",
        "ldr r1, [r6, #4]",
        "ldr r2, [r6, #8]",
        "ldr r3, [r6, #12]",
        "ldr r4, [r6, #16]",
        "mov r7, #120", // clone
        "svc #0",
        "cmp r0, #0",
        "bne 5f",
        "ldr r0, [sp]",
        "cmp r0, #0",
        "beq 3f",
        "ldr r1, [sp, #4]",
        "movw r7, #338", // set_robust_list
        "svc #0",
        "3:",
        "ldr r0, [sp, #8]",
        "cmp r0, #0",
        "beq 4f",
        "ldr r1, [sp, #12]",
        "mov r2, #0",
        "ldr r3, [sp, #16]",
        "movw r7, #398", // rseq
        "svc #0",
        "4:",
        "ldr r0, [sp, #20]",
        "mov sp, r0",
        "mov r0, #1",
        "pop {{r4, r5}}",
        "vmsr fpscr, r4",
        "vpop {{d8-d15}}",
        "pop {{r4-r12, pc}}",
        "5:",
        "pop {{r4, r5, r6, r7}}",
        inout("r0") args.as_ptr() => ret,
        out("r1") _,
        out("r2") _,
        out("r3") _,
    );
    if ret < 0 {
        Err(Errno::new(-ret))
    } else {
        Ok(ret as u32)
    }
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
pub unsafe fn restore_current_thread_tls(t: &ThreadResume) -> Result<(), Errno> {
    set_tls(t.tls)?;
    crate::restore_thread_kernel_state(t)
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stack_and_call(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    core::arch::naked_asm!("mov sp, r0", "mov r0, r2", "mov r11, #0", "blx r1", "udf #0")
}

/// Define the static loader's `_start`, which calls `$main(initial_sp: *const usize) -> !`,
/// and the EHABI personality routines that core's unwind tables name (never called: the loader
/// aborts on panic).
#[macro_export]
macro_rules! define_loader_entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn __aeabi_unwind_cpp_pr0() {}
        #[unsafe(no_mangle)]
        pub extern "C" fn __aeabi_unwind_cpp_pr1() {}
        #[unsafe(no_mangle)]
        pub extern "C" fn __aeabi_unwind_cpp_pr2() {}

        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!("mov r11, #0", "mov lr, #0", "mov r0, sp", "bic sp, sp, #15", "bl {main}", "udf #0", main = sym $main,)
        }
    };
}

/// The longest code `encode_jump` writes.
pub const JUMP_MAX: usize = 16;

/// Code at `at` that jumps to `target` by loading pc from a literal (which switches to Thumb
/// when the target's bit 0 is set). An odd `at` is a Thumb function at `at - 1`; its literal
/// must be word-aligned, hence the nop when the function is only halfword-aligned. Returns
/// where to write it and its length.
pub fn encode_jump(at: usize, target: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    let lit = (target as u32).to_le_bytes();
    if at & 1 == 0 {
        out[..4].copy_from_slice(&0xe51f_f004u32.to_le_bytes()); // ldr pc, [pc, #-4]
        out[4..8].copy_from_slice(&lit);
        return (at, 8);
    }
    let code = at & !1;
    let pad = if code & 2 != 0 { 2 } else { 0 };
    out[..2].copy_from_slice(&[0x00, 0xbf]); // nop (only used when pad == 2)
    out[pad..pad + 4].copy_from_slice(&[0xdf, 0xf8, 0x00, 0xf0]); // ldr.w pc, [pc, #0]
    out[pad + 4..pad + 8].copy_from_slice(&lit);
    (code, pad + 8)
}

/// Code at `at` that returns -ENOSYS (glibc then makes the system call instead).
pub fn encode_enosys(at: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    if at & 1 == 0 {
        out[..8].copy_from_slice(&[0x25, 0x00, 0xe0, 0xe3, 0x1e, 0xff, 0x2f, 0xe1]); // mvn r0, #37; bx lr
        return (at, 8);
    }
    out[..6].copy_from_slice(&[0x6f, 0xf0, 0x25, 0x00, 0x70, 0x47]); // mvn.w r0, #37; bx lr
    (at & !1, 6)
}

/// Make code just written at [start, start+len) visible to instruction fetch: the ARM-private
/// cacheflush call (0xf0002); r7 is saved by hand as in `set_tls`.
pub fn sync_icache(start: usize, len: usize) {
    // SAFETY: cacheflush only cleans/invalidates caches over a range of our own mappings.
    unsafe {
        core::arch::asm!("push {{r7}}", "movw r7, #2", "movt r7, #15", "svc #0", "pop {{r7}}",
            inlateout("r0") start => _, in("r1") start + len, in("r2") 0usize)
    };
}
