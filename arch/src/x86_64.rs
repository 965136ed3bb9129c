//! x86_64: saved context layout, thread creation for restore, TLS (FS base), loader entry.
//!
//! Runs in signal handlers and in the static loader: no allocation, no locks, no libc.

use crate::ThreadResume;
use dmtcp_layout::Cpu;
use syscalls::{syscall2, Errno, Sysno};

pub use crate::x86_features::cpu_features;

pub const CPU: Cpu = Cpu::X86_64;
pub const WORD_BITS: u8 = 64;
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// glibc's RSEQ_SIG for x86 (the bytes of a `ud1` instruction that must precede abort handlers).
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// R_X86_64_RELATIVE; x86_64 uses RELA (explicit addends).
pub const RELATIVE_RELOC: u32 = 8;
pub const RELOCS_HAVE_ADDEND: bool = true;

const ARCH_SET_FS: usize = 0x1002;
const ARCH_GET_FS: usize = 0x1003;

/// The calling thread's TLS: (thread pointer = FS base, unused).
pub fn current_tls() -> (u64, u64) {
    let mut fs: usize = 0;
    // SAFETY: ARCH_GET_FS writes one word to the valid pointer given.
    let _ = unsafe { syscall2(Sysno::arch_prctl, ARCH_GET_FS, &mut fs as *mut usize as usize) };
    (fs as u64, 0)
}

/// Save the callee-saved registers on the stack, publish the stack pointer in `*sp_slot`, then
/// sleep until `*wait_word != wait_value`. Returns 0 then; returns 1 when a restored process
/// resumes this context through `resume_context`.
///
/// # Safety
/// `sp_slot` and `wait_word` must stay valid; the stack above the published pointer must not be
/// touched by anyone else until this returns.
#[unsafe(naked)]
pub unsafe extern "C" fn park(sp_slot: *mut usize, wait_word: *const u32, wait_value: u32) -> usize {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        "mov [rdi], rsp",
        "mov r12, rsi",
        "mov r13d, edx",
        "2:",
        "mov eax, [r12]",
        "cmp eax, r13d",
        "jne 3f",
        "mov rdi, r12",
        "mov esi, 128", // FUTEX_WAIT_PRIVATE
        "mov edx, r13d",
        "xor r10d, r10d",
        "mov eax, 202", // futex
        "syscall",
        "jmp 2b",
        "3:",
        "xor eax, eax",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Save the callee-saved registers, publish the stack pointer in `*sp_slot`, run `f(arg)` below
/// it, and return 0. Returns 1 when a restored process resumes the saved context instead.
///
/// # Safety
/// `f` must not unwind; the frames above the published pointer must stay as they are while `f`
/// runs (they are what a restart resumes).
#[unsafe(naked)]
pub unsafe extern "C" fn save_and_run(sp_slot: *mut usize, f: extern "C" fn(*mut u8), arg: *mut u8) -> usize {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "sub rsp, 8",
        "stmxcsr [rsp]",
        "fnstcw [rsp + 4]",
        "mov [rdi], rsp",
        "mov rdi, rdx",
        "call rsi",
        "xor eax, eax",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// Jump into a context saved by `park` or `save_and_run`, making it return 1.
///
/// # Safety
/// `sp` must be a stack pointer published by `park`/`save_and_run` in this address space.
#[unsafe(naked)]
pub unsafe extern "C" fn resume_context(sp: usize) -> ! {
    core::arch::naked_asm!(
        "mov rsp, rdi",
        "mov eax, 1",
        "ldmxcsr [rsp]",
        "fldcw [rsp + 4]",
        "add rsp, 8",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
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

/// Create a thread that re-registers its robust list and rseq area and resumes `t.sp`.
/// Returns the new tid.
///
/// # Safety
/// The memory of the restored process (the stack at `t.sp`, TLS, the tid word) must be mapped.
pub unsafe fn spawn_restored_thread(t: &ThreadResume) -> Result<u32, Errno> {
    let mut flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
    if t.tid_address != 0 {
        flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    }
    let rseq_packed = t.rseq_len as usize | ((t.rseq_sig as usize) << 32);
    let ret: isize;
    // SAFETY: the child never returns into Rust: it runs only the instructions below, on the
    // restored thread's own stack, then jumps into its saved context. The parent only sees
    // rax/rcx/r11 change, as declared.
    core::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        "test r12, r12",
        "jz 3f",
        "mov rdi, r12",
        "mov rsi, r13",
        "mov eax, 273", // set_robust_list
        "syscall",
        "3:",
        "test r14, r14",
        "jz 4f",
        "mov rdi, r14",
        "mov esi, r15d",
        "xor edx, edx",
        "mov r10, r15",
        "shr r10, 32",
        "mov eax, 334", // rseq
        "syscall",
        "4:",
        "mov rdi, rsp",
        "jmp {resume}",
        "2:",
        resume = sym resume_context,
        inlateout("rax") 56isize => ret, // clone
        in("rdi") flags,
        in("rsi") t.sp,
        in("rdx") t.tid_address,
        in("r10") t.tid_address,
        in("r8") t.tls,
        in("r12") t.robust_head,
        in("r13") t.robust_len,
        in("r14") t.rseq_addr,
        in("r15") rseq_packed,
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    if ret < 0 {
        Err(Errno::new((-ret) as i32))
    } else {
        Ok(ret as u32)
    }
}

/// Give the calling thread the restored thread's TLS, tid word, robust list and rseq area.
/// After this no code that depends on the old TLS (the loader's own has none) may run.
///
/// # Safety
/// The restored process's memory must be mapped; the caller then jumps with `resume_context`.
pub unsafe fn restore_current_thread_tls(t: &ThreadResume) -> Result<(), Errno> {
    syscall2(Sysno::arch_prctl, ARCH_SET_FS, t.tls)?;
    crate::restore_thread_kernel_state(t)
}

/// Switch to `sp` and call `f(arg)`, which must not return.
///
/// # Safety
/// `sp` must be the top of a writable stack, 16-byte aligned.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stack_and_call(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    core::arch::naked_asm!("mov rsp, rdi", "xor ebp, ebp", "mov rdi, rdx", "call rsi", "ud2")
}

/// Define the static loader's `_start`, which calls `$main(initial_sp: *const usize) -> !`.
#[macro_export]
macro_rules! define_loader_entry {
    ($main:path) => {
        #[unsafe(naked)]
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn _start() -> ! {
            core::arch::naked_asm!(
                "xor ebp, ebp",
                "mov rdi, rsp",
                "and rsp, -16",
                "call {main}",
                "ud2",
                main = sym $main,
            )
        }
    };
}

/// The longest code `encode_jump` writes.
pub const JUMP_MAX: usize = 16;

/// Code at `at` that jumps to `target` (an absolute jump through r11, which every calling
/// convention lets a callee clobber). Returns where to write it and its length.
pub fn encode_jump(at: usize, target: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[..2].copy_from_slice(&[0x49, 0xbb]); // movabs r11, imm64
    out[2..10].copy_from_slice(&(target as u64).to_le_bytes());
    out[10..13].copy_from_slice(&[0x41, 0xff, 0xe3]); // jmp r11
    (at, 13)
}

/// Code at `at` that returns -ENOSYS (glibc then makes the system call instead).
pub fn encode_enosys(at: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[..8].copy_from_slice(&[0x48, 0xc7, 0xc0, 0xda, 0xff, 0xff, 0xff, 0xc3]); // mov rax, -38; ret
    (at, 8)
}

/// x86 keeps instruction fetch coherent with stores: nothing to do after writing code.
pub fn sync_icache(_start: usize, _len: usize) {}
