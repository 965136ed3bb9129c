//! The CPU features an x86 or x86_64 image records, from CPUID and XCR0 (shared by both modes).
//!
//! Runs in the checkpoint thread and in dmtcp_restart: no allocation, no locks.

#[cfg(target_arch = "x86")]
use core::arch::x86::{__cpuid, __cpuid_count};
#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{__cpuid, __cpuid_count};

/// CPU features the checkpointed code may rely on: CPUID leaf 1 (ECX:EDX) and leaf 7 (ECX:EBX),
/// without the bits that describe the environment rather than the CPU (hypervisor, OSXSAVE); and
/// the XSAVE facts ld.so chose its code and buffer sizes by: XCR0 (the state components the kernel
/// enables; high half) and CPUID leaf 0xD sub-leaf 1 EAX (XSAVEOPT, XSAVEC, XSAVES; low half).
/// `None`: use the kernel's AT_HWCAP instead.
pub fn cpu_features() -> Option<[u64; 3]> {
    #[allow(unused_unsafe)]
    // SAFETY: CPUID is available on every CPU this target runs on.
    let (l1, l7, max) = unsafe { (__cpuid(1), __cpuid_count(7, 0), __cpuid(0).eax) };
    let ecx1 = l1.ecx & !((1 << 31) | (1 << 27));
    let mut xsave = 0u64;
    if l1.ecx & (1 << 27) != 0 && max >= 0xd {
        let (lo, hi): (u32, u32);
        // SAFETY: OSXSAVE is set, so XGETBV with ECX = 0 (XCR0) is allowed at any privilege.
        unsafe { core::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
        let _ = hi; // components above bit 31 are not user state
        #[allow(unused_unsafe)]
        // SAFETY: leaf 0xD exists (max >= 0xd).
        let d1 = unsafe { __cpuid_count(0xd, 1) };
        xsave = ((lo as u64) << 32) | (d1.eax & 0xf) as u64;
    }
    Some([((ecx1 as u64) << 32) | l1.edx as u64, ((l7.ecx as u64) << 32) | l7.ebx as u64, xsave])
}
