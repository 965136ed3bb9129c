//! Everything that differs per CPU, behind one interface.
//!
//! Each CPU module (`x86_64.rs`, and next `x86.rs`, `arm.rs`, `aarch64.rs`) exports the same
//! names; the rest of the workspace calls only what this file re-exports and never names a CPU.
//!
//! Much of this runs in a signal handler, in the checkpoint thread while the others are stopped,
//! or in the static restart loader: nothing here allocates, takes a lock or calls libc.
#![no_std]

pub mod sys;
pub mod vdso;
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod x86_features;

cfg_if::cfg_if! {
    if #[cfg(target_arch = "x86_64")] {
        #[path = "x86_64.rs"]
        mod cpu;
    } else if #[cfg(target_arch = "x86")] {
        #[path = "x86.rs"]
        mod cpu;
    } else if #[cfg(target_arch = "aarch64")] {
        #[path = "aarch64.rs"]
        mod cpu;
    } else if #[cfg(target_arch = "arm")] {
        #[path = "arm.rs"]
        mod cpu;
    } else {
        compile_error!("dmtcp-arch: this CPU is not supported yet");
    }
}

pub use cpu::{
    cpu_features, current_tls, encode_enosys, encode_jump, park, restore_current_thread_tls, resume_context, save_and_run, spawn_restored_thread,
    switch_stack_and_call, sync_icache, CPU, DEFAULT_PAGE_SIZE, JUMP_MAX, RELATIVE_RELOC, RELOCS_HAVE_ADDEND, RSEQ_SIG, WORD_BITS,
};
pub use syscalls::{Errno, Sysno};

/// What a restored thread needs before it jumps back into its saved context.
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadResume {
    /// Stack pointer saved by `park` or `save_and_run`.
    pub sp: usize,
    pub tls: usize,
    pub tls_aux: usize,
    /// glibc's &pthread->tid: the kernel writes the new tid there and clears it at exit.
    pub tid_address: usize,
    pub robust_head: usize,
    pub robust_len: usize,
    pub rseq_addr: usize,
    pub rseq_len: u32,
    pub rseq_sig: u32,
}

/// rt_sigaction with the kernel's struct (sigset size 8 on every CPU we support).
///
/// # Safety
/// Installing a handler changes process-wide behaviour; the handler address must be valid.
pub unsafe fn rt_sigaction(sig: i32, new: Option<&KernelSigaction>, old: Option<&mut KernelSigaction>) -> Result<(), Errno> {
    let new_ptr = new.map_or(0, |n| n as *const KernelSigaction as usize);
    let old_ptr = old.map_or(0, |o| o as *mut KernelSigaction as usize);
    syscalls::syscall4(Sysno::rt_sigaction, sig as usize, new_ptr, old_ptr, 8).map(|_| ())
}

/// rt_sigprocmask on the calling thread with a 64-bit set.
pub fn rt_sigprocmask(how: i32, new: Option<&u64>, old: Option<&mut u64>) -> Result<(), Errno> {
    let new_ptr = new.map_or(0, |n| n as *const u64 as usize);
    let old_ptr = old.map_or(0, |o| o as *mut u64 as usize);
    // SAFETY: both pointers are null or valid 8-byte sets.
    unsafe { syscalls::syscall4(Sysno::rt_sigprocmask, how as usize, new_ptr, old_ptr, 8) }.map(|_| ())
}

/// The per-thread kernel state every CPU restores the same way once its TLS register is set:
/// the tid word (the kernel writes the new tid there and clears it at exit), the robust futex
/// list and the rseq area.
///
/// # Safety
/// The restored process's memory must be mapped; `t` describes the calling thread.
pub unsafe fn restore_thread_kernel_state(t: &ThreadResume) -> Result<(), Errno> {
    if t.tid_address != 0 {
        let tid = syscalls::syscall1(Sysno::set_tid_address, t.tid_address)?;
        // SAFETY (caller): tid_address points into restored, writable memory.
        core::ptr::write_volatile(t.tid_address as *mut u32, tid as u32);
    }
    if t.robust_head != 0 {
        syscalls::syscall2(Sysno::set_robust_list, t.robust_head, t.robust_len)?;
    }
    if t.rseq_addr != 0 {
        // Not fatal: without it glibc's sched_getcpu falls back to the syscall.
        let _ = syscalls::syscall4(Sysno::rseq, t.rseq_addr, t.rseq_len as usize, 0, t.rseq_sig as usize);
    }
    Ok(())
}

const MASK_WORDS: usize = 64 / usize::BITS as usize;

/// The kernel's `struct sigaction` for rt_sigaction. Every CPU we support has the same field
/// order (handler, flags, restorer, 64-bit mask in native words: 4-byte aligned on 32-bit ARM).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelSigaction {
    pub handler: usize,
    pub flags: usize,
    pub restorer: usize,
    pub mask: [usize; MASK_WORDS],
}

impl KernelSigaction {
    pub fn from_record(r: &dmtcp_layout::SigactionRecord) -> Self {
        let mut mask = [0usize; MASK_WORDS];
        for (i, w) in mask.iter_mut().enumerate() {
            *w = (r.mask >> (i as u32 * usize::BITS)) as usize;
        }
        KernelSigaction { handler: r.handler as usize, flags: r.flags as usize, restorer: r.restorer as usize, mask }
    }

    pub fn to_record(&self) -> dmtcp_layout::SigactionRecord {
        let mask = self.mask.iter().enumerate().fold(0u64, |m, (i, &w)| m | ((w as u64) << (i as u32 * usize::BITS)));
        dmtcp_layout::SigactionRecord { handler: self.handler as u64, flags: self.flags as u64, restorer: self.restorer as u64, mask }
    }
}
