//! libdmtcp.so's own memory allocator, on raw mmap.
//!
//! The checkpoint thread allocates while every other thread is stopped, possibly inside glibc's
//! malloc with its lock held: our Rust code therefore never uses glibc malloc. Size classes of
//! powers of two up to 64 KiB with free lists under one spin lock (only our own threads take it,
//! and never from a signal handler); larger blocks are mapped and unmapped directly.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, Ordering};
use dmtcp_arch::sys;

const MIN_SHIFT: usize = 4;
const MAX_SHIFT: usize = 16;
const CLASSES: usize = MAX_SHIFT - MIN_SHIFT + 1;
const REFILL: usize = 256 * 1024;
const PAGE: usize = 4096;
const PROT_RW: usize = 3;
const MAP_PRIVATE_ANON: usize = 0x22;

struct State {
    free: [usize; CLASSES],
    bump: [usize; CLASSES],
    bump_end: [usize; CLASSES],
}

pub struct DmtcpAlloc {
    lock: AtomicBool,
    state: core::cell::UnsafeCell<State>,
}

// SAFETY: `state` is only touched with `lock` held.
unsafe impl Sync for DmtcpAlloc {}

impl DmtcpAlloc {
    pub const fn new() -> Self {
        DmtcpAlloc {
            lock: AtomicBool::new(false),
            state: core::cell::UnsafeCell::new(State { free: [0; CLASSES], bump: [0; CLASSES], bump_end: [0; CLASSES] }),
        }
    }

    fn with_lock<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // SAFETY: sched_yield has no arguments.
            let _ = unsafe { syscalls::syscall0(syscalls::Sysno::sched_yield) };
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl DmtcpAlloc {
    /// pthread_atfork prepare: hold the lock across fork so the child never inherits it taken
    /// by a thread that does not exist there.
    pub fn lock_for_fork(&self) {
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            // SAFETY: sched_yield has no arguments.
            let _ = unsafe { syscalls::syscall0(syscalls::Sysno::sched_yield) };
        }
    }

    /// pthread_atfork parent and child: release what `lock_for_fork` took.
    pub fn unlock_after_fork(&self) {
        self.lock.store(false, Ordering::Release);
    }

    /// In a restored process: the image holds our allocator state as of the end of the write,
    /// but only the chunks that existed when the memory map was read. Blocks and bump space
    /// from chunks mapped later may be missing, so start over with fresh chunks. Live blocks
    /// from before the checkpoint stay valid; free ones are forgotten (a small, bounded leak:
    /// the writer's large buffers are mapped directly, not kept in free lists).
    pub fn forget_unsaved_chunks(&self) {
        self.with_lock(|s| {
            s.free = [0; CLASSES];
            s.bump = [0; CLASSES];
            s.bump_end = [0; CLASSES];
        })
    }
}

impl Default for DmtcpAlloc {
    fn default() -> Self {
        Self::new()
    }
}

fn class_of(layout: &Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_SHIFT);
    if size > 1 << MAX_SHIFT || layout.align() > PAGE {
        return None;
    }
    let shift = usize::BITS as usize - (size - 1).leading_zeros() as usize;
    Some(shift - MIN_SHIFT)
}

fn map(len: usize) -> *mut u8 {
    // SAFETY: a fresh anonymous mapping placed by the kernel.
    match unsafe { sys::mmap(0, len, PROT_RW, MAP_PRIVATE_ANON, -1, 0) } {
        Ok(a) => a as *mut u8,
        Err(_) => core::ptr::null_mut(),
    }
}

fn large_len(layout: &Layout) -> usize {
    (layout.size() + layout.align().max(PAGE) - 1 + PAGE - 1) & !(PAGE - 1)
}

// SAFETY: blocks handed out are valid for their layout and not reused until dealloc.
unsafe impl GlobalAlloc for DmtcpAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class_of(&layout) else {
            let p = map(large_len(&layout));
            if p.is_null() || layout.align() <= PAGE {
                return p;
            }
            let aligned = (p as usize + layout.align() - 1) & !(layout.align() - 1);
            return aligned as *mut u8;
        };
        let size = 1usize << (c + MIN_SHIFT);
        self.with_lock(|s| {
            let head = s.free[c];
            if head != 0 {
                // SAFETY: free blocks store the next free block's address in their first word.
                s.free[c] = unsafe { *(head as *const usize) };
                return head as *mut u8;
            }
            if s.bump[c] + size > s.bump_end[c] {
                let chunk = map(REFILL.max(size));
                if chunk.is_null() {
                    return chunk;
                }
                s.bump[c] = chunk as usize;
                s.bump_end[c] = chunk as usize + REFILL.max(size);
            }
            let p = s.bump[c];
            s.bump[c] += size;
            p as *mut u8
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(c) = class_of(&layout) else {
            if layout.align() <= PAGE {
                // SAFETY: a large block is exactly one mapping of large_len bytes.
                let _ = unsafe { sys::munmap(ptr as usize, large_len(&layout)) };
            }
            // Over-aligned large blocks are rare; their leading slack is not tracked, so keep them.
            return;
        };
        self.with_lock(|s| {
            // SAFETY: the block is at least 16 bytes and no longer used by the caller.
            unsafe { *(ptr as *mut usize) = s.free[c] };
            s.free[c] = ptr as usize;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_classes() {
        assert_eq!(class_of(&Layout::from_size_align(1, 1).unwrap()), Some(0));
        assert_eq!(class_of(&Layout::from_size_align(16, 8).unwrap()), Some(0));
        assert_eq!(class_of(&Layout::from_size_align(17, 8).unwrap()), Some(1));
        assert_eq!(class_of(&Layout::from_size_align(65536, 8).unwrap()), Some(CLASSES - 1));
        assert_eq!(class_of(&Layout::from_size_align(65537, 8).unwrap()), None);
    }

    #[test]
    fn blocks_are_reused_and_distinct() {
        let a = DmtcpAlloc::new();
        let l = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: paired alloc/dealloc with the same layout.
        unsafe {
            let p = a.alloc(l);
            let q = a.alloc(l);
            assert_ne!(p, q);
            a.dealloc(p, l);
            assert_eq!(a.alloc(l), p);
            let big = Layout::from_size_align(1 << 20, 8).unwrap();
            let b = a.alloc(big);
            b.write_bytes(7, 1 << 20);
            a.dealloc(b, big);
        }
    }
}
