//! i686 (also 32-bit x86 programs on 64-bit kernels): saved context layout, thread creation for
//! restore, TLS (a GDT entry loaded into GS), loader entry. System calls use `int 0x80`.
//!
//! Runs in signal handlers and in the static loader: no allocation, no locks, no libc.

use crate::ThreadResume;
use dmtcp_layout::Cpu;
use syscalls::{syscall1, Errno, Sysno};

pub use crate::x86_features::cpu_features;

pub const CPU: Cpu = Cpu::X86;
pub const WORD_BITS: u8 = 32;
pub const DEFAULT_PAGE_SIZE: usize = 4096;
/// glibc's RSEQ_SIG for x86.
pub const RSEQ_SIG: u32 = 0x5305_3053;
/// R_386_RELATIVE; i386 uses REL (addends in place).
pub const RELATIVE_RELOC: u32 = 8;
pub const RELOCS_HAVE_ADDEND: bool = false;

/// The kernel's struct user_desc for set_thread_area / get_thread_area / CLONE_SETTLS.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct UserDesc {
    entry_number: u32,
    base_addr: u32,
    limit: u32,
    /// seg_32bit | limit_in_pages | useable: what glibc uses for its TLS segment.
    flags: u32,
}

const TLS_DESC_FLAGS: u32 = 0x51;

fn tls_desc(base: usize, entry: usize) -> UserDesc {
    UserDesc { entry_number: entry as u32, base_addr: base as u32, limit: 0xfffff, flags: TLS_DESC_FLAGS }
}

/// The calling thread's TLS: (GS segment base = thread pointer, GDT entry number).
pub fn current_tls() -> (u64, u64) {
    let sel: u16;
    // SAFETY: reading a segment register has no side effects.
    unsafe { core::arch::asm!("mov {0:x}, gs", out(reg) sel, options(nomem, nostack, preserves_flags)) };
    let entry = (sel >> 3) as u32;
    let mut d = UserDesc { entry_number: entry, ..Default::default() };
    // SAFETY: get_thread_area fills the struct we pass.
    let _ = unsafe { syscall1(Sysno::get_thread_area, &mut d as *mut UserDesc as usize) };
    (d.base_addr as u64, entry as u64)
}

/// See the x86_64 module: save callee-saved registers, publish the stack pointer, sleep while
/// `*wait_word == wait_value`; returns 0, or 1 when resumed by `resume_context`.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn park(sp_slot: *mut usize, wait_word: *const u32, wait_value: u32) -> usize {
    core::arch::naked_asm!(
        "push ebp",
        "push ebx",
        "push esi",
        "push edi",
        "sub esp, 8",
        "stmxcsr [esp]",
        "fnstcw [esp + 4]",
        "mov eax, [esp + 28]",
        "mov [eax], esp",
        "mov ebp, [esp + 32]",
        "mov edi, [esp + 36]",
        "2:",
        "mov eax, [ebp]",
        "cmp eax, edi",
        "jne 3f",
        "mov ebx, ebp",
        "mov ecx, 128", // FUTEX_WAIT_PRIVATE
        "mov edx, edi",
        "xor esi, esi",
        "mov eax, 240", // futex
        "int 0x80",
        "jmp 2b",
        "3:",
        "xor eax, eax",
        "ldmxcsr [esp]",
        "fldcw [esp + 4]",
        "add esp, 8",
        "pop edi",
        "pop esi",
        "pop ebx",
        "pop ebp",
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
        "push ebp",
        "push ebx",
        "push esi",
        "push edi",
        "sub esp, 8",
        "stmxcsr [esp]",
        "fnstcw [esp + 4]",
        "mov eax, [esp + 28]",
        "mov [eax], esp",
        "mov ecx, [esp + 32]",
        "mov edx, [esp + 36]",
        "push edx", // the stack is 16-byte aligned at the call
        "call ecx",
        "add esp, 4",
        "xor eax, eax",
        "ldmxcsr [esp]",
        "fldcw [esp + 4]",
        "add esp, 8",
        "pop edi",
        "pop esi",
        "pop ebx",
        "pop ebp",
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
        "mov eax, [esp + 4]",
        "mov esp, eax",
        "mov eax, 1",
        "ldmxcsr [esp]",
        "fldcw [esp + 4]",
        "add esp, 8",
        "pop edi",
        "pop esi",
        "pop ebx",
        "pop ebp",
        "ret",
    )
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

/// Words the new thread reads from its scratch block, just below its saved stack pointer.
const SCRATCH_WORDS: usize = 8;

/// See the x86_64 module. The new thread starts on a scratch block below `t.sp` in its own
/// (restored) stack, where its restore values were written, because LLVM reserves ebx, esi and
/// ebp on i686 and clone needs every other register for its arguments.
///
/// # Safety
/// As on x86_64.
pub unsafe fn spawn_restored_thread(t: &ThreadResume) -> Result<u32, Errno> {
    let scratch = (t.sp - SCRATCH_WORDS * 4) & !15;
    let words: [u32; SCRATCH_WORDS] =
        [t.robust_head as u32, t.robust_len as u32, t.rseq_addr as u32, t.rseq_len, t.rseq_sig, (t.tls_aux as u32) * 8 + 3, t.sp as u32, 0];
    // SAFETY (caller): the restored thread's stack below its saved pointer is free memory.
    core::ptr::copy_nonoverlapping(words.as_ptr(), scratch as *mut u32, SCRATCH_WORDS);
    let desc = tls_desc(t.tls, t.tls_aux);
    let mut flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM | CLONE_SETTLS;
    if t.tid_address != 0 {
        flags |= CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID;
    }
    let args: [u32; 5] = [flags, scratch as u32, t.tid_address as u32, &desc as *const UserDesc as u32, t.tid_address as u32];
    let ret: i32;
    // SAFETY: the child never returns into Rust: it runs only the instructions below, on the
    // scratch block, then jumps into its saved context. The parent restores ebx/esi/ebp itself.
    core::arch::asm!(
        "push ebx",
        "push esi",
        "push ebp",
        "mov ebp, eax",
        "mov ebx, [ebp]",
        "mov ecx, [ebp + 4]",
        "mov edx, [ebp + 8]",
        "mov esi, [ebp + 12]",
        "mov edi, [ebp + 16]",
        "mov eax, 120", // clone
        "int 0x80",
        "test eax, eax",
        "jnz 5f",
        "mov eax, [esp + 20]",
        "mov gs, ax",
        "mov ebx, [esp]",
        "test ebx, ebx",
        "jz 3f",
        "mov ecx, [esp + 4]",
        "mov eax, 311", // set_robust_list
        "int 0x80",
        "3:",
        "mov ebx, [esp + 8]",
        "test ebx, ebx",
        "jz 4f",
        "mov ecx, [esp + 12]",
        "xor edx, edx",
        "mov esi, [esp + 16]",
        "mov eax, 386", // rseq
        "int 0x80",
        "4:",
        "mov esp, [esp + 24]",
        "mov eax, 1",
        "ldmxcsr [esp]",
        "fldcw [esp + 4]",
        "add esp, 8",
        "pop edi",
        "pop esi",
        "pop ebx",
        "pop ebp",
        "ret",
        "5:",
        "pop ebp",
        "pop esi",
        "pop ebx",
        inout("eax") args.as_ptr() => ret,
        out("ecx") _,
        out("edx") _,
        out("edi") _,
    );
    if ret < 0 {
        Err(Errno::new(-ret))
    } else {
        Ok(ret as u32)
    }
}

/// See the x86_64 module: installs the GDT entry and loads GS.
///
/// # Safety
/// As on x86_64.
pub unsafe fn restore_current_thread_tls(t: &ThreadResume) -> Result<(), Errno> {
    let mut desc = tls_desc(t.tls, t.tls_aux);
    syscall1(Sysno::set_thread_area, &mut desc as *mut UserDesc as usize)?;
    let sel = (desc.entry_number * 8 + 3) as u16;
    core::arch::asm!("mov gs, {0:x}", in(reg) sel, options(nostack, preserves_flags));
    crate::restore_thread_kernel_state(t)
}

/// See the x86_64 module.
///
/// # Safety
/// As on x86_64.
#[unsafe(naked)]
pub unsafe extern "C" fn switch_stack_and_call(sp: usize, f: extern "C" fn(usize) -> !, arg: usize) -> ! {
    core::arch::naked_asm!(
        "mov eax, [esp + 4]",
        "mov ecx, [esp + 8]",
        "mov edx, [esp + 12]",
        "mov esp, eax",
        "xor ebp, ebp",
        "sub esp, 12",
        "push edx",
        "call ecx",
        "ud2",
    )
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
                "mov eax, esp",
                "and esp, -16",
                "sub esp, 12",
                "push eax",
                "call {main}",
                "ud2",
                main = sym $main,
            )
        }
    };
}

/// The longest code `encode_jump` writes.
pub const JUMP_MAX: usize = 16;

/// Code at `at` that jumps to `target`: a relative jmp reaches anywhere in 32 bits. Returns
/// where to write it and its length.
pub fn encode_jump(at: usize, target: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[0] = 0xe9; // jmp rel32, relative to the next instruction
    out[1..5].copy_from_slice(&(target.wrapping_sub(at.wrapping_add(5)) as u32).to_le_bytes());
    (at, 5)
}

/// Code at `at` that returns -ENOSYS (glibc then makes the system call instead).
pub fn encode_enosys(at: usize, out: &mut [u8; JUMP_MAX]) -> (usize, usize) {
    out[..6].copy_from_slice(&[0xb8, 0xda, 0xff, 0xff, 0xff, 0xc3]); // mov eax, -38; ret
    (at, 6)
}

/// x86 keeps instruction fetch coherent with stores: nothing to do after writing code.
pub fn sync_icache(_start: usize, _len: usize) {}
