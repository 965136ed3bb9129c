//! Self-relocation of the static-PIE loader: applies its own R_*_RELATIVE relocations, first for
//! where the kernel loaded it, then again after it copied itself into a hole.
//!
//! Runs before any relocated data may be used: no statics holding pointers, no slicing (a failed
//! bounds check would reach panic data that is not relocated yet), no allocation, and no calls to
//! out-of-line functions (they may go through a GOT entry that is not relocated yet; the loader's
//! crates are always built optimized so that core's small helpers are inlined).

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_PHDR: u32 = 6;
const DT_NULL: usize = 0;
const DT_RELA: usize = 7;
const DT_RELASZ: usize = 8;
const DT_REL: usize = 17;
const DT_RELSZ: usize = 18;
const DT_RELR: usize = 36;

/// Program header, in the native word size (Elf64_Phdr / Elf32_Phdr).
#[repr(C)]
#[cfg(target_pointer_width = "64")]
struct Phdr {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_paddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

#[repr(C)]
#[cfg(target_pointer_width = "32")]
struct Phdr {
    p_type: u32,
    p_offset: u32,
    p_vaddr: u32,
    p_paddr: u32,
    p_filesz: u32,
    p_memsz: u32,
    p_flags: u32,
    p_align: u32,
}

const MAX_SEGMENTS: usize = 8;

/// Where the loader sits in memory.
#[derive(Clone, Copy)]
pub struct SelfImage {
    pub base: usize,
    /// Page-aligned extent of all PT_LOAD segments.
    pub start: usize,
    pub end: usize,
    pub dynamic: usize,
    /// The PT_LOAD segments [start, end): the gaps between them may be inaccessible (CPUs with
    /// 64 KiB segment alignment), so copies are made segment by segment.
    pub segments: [(usize, usize); MAX_SEGMENTS],
    pub num_segments: usize,
}

/// Where the kernel loaded the loader, and its dynamic section: just enough to relocate.
/// Returns two words in registers: no memcpy/memset may be emitted before relocation.
///
/// # Safety
/// `phdr` and `phnum` must come from the kernel's auxiliary vector.
pub unsafe fn base_and_dynamic(phdr: usize, phnum: usize) -> Option<(usize, usize)> {
    // SAFETY: forwarded contract.
    let base = unsafe { load_base(phdr, phnum) }?;
    let phdrs = phdr as *const Phdr;
    let mut i = 0;
    while i < phnum {
        // SAFETY: the kernel maps phnum program headers at phdr.
        let p = unsafe { &*phdrs.add(i) };
        if p.p_type == PT_DYNAMIC {
            return Some((base, base + p.p_vaddr as usize));
        }
        i += 1;
    }
    None
}

/// # Safety
/// `phdr` and `phnum` must come from the kernel's auxiliary vector.
unsafe fn load_base(phdr: usize, phnum: usize) -> Option<usize> {
    let phdrs = phdr as *const Phdr;
    let mut i = 0;
    while i < phnum {
        // SAFETY: the kernel maps phnum program headers at phdr.
        let p = unsafe { &*phdrs.add(i) };
        if p.p_type == PT_PHDR {
            return Some(phdr - p.p_vaddr as usize);
        }
        i += 1;
    }
    // GNU ld writes no PT_PHDR for a static PIE: the program headers then follow the ELF
    // header at file offset 0, mapped at link address 0.
    let ehdr_size = if core::mem::size_of::<usize>() == 8 { 64 } else { 52 };
    let b = phdr - ehdr_size;
    // SAFETY: the first PT_LOAD maps the ELF header at `b` if our assumption holds; magic and
    // e_phoff are checked before trusting it.
    let (magic, phoff) = unsafe {
        let m = *(b as *const [u8; 4]);
        let off = if ehdr_size == 64 { *((b + 32) as *const u64) as usize } else { *((b + 28) as *const u32) as usize };
        (m, off)
    };
    if magic != [0x7f, b'E', b'L', b'F'] || phoff != ehdr_size {
        return None;
    }
    Some(b)
}

/// The loader's whole layout, once it is relocated.
///
/// # Safety
/// `phdr` and `phnum` must come from the kernel's auxiliary vector.
pub unsafe fn locate(phdr: usize, phnum: usize, page: usize) -> Option<SelfImage> {
    let phdrs = phdr as *const Phdr;
    // SAFETY: forwarded contract.
    let base = unsafe { load_base(phdr, phnum) }?;
    let (mut lo, mut hi, mut dynamic) = (usize::MAX, 0usize, 0usize);
    let mut segments = [(0usize, 0usize); MAX_SEGMENTS];
    let mut num_segments = 0;
    let mut i = 0;
    while i < phnum {
        // SAFETY: as above.
        let p = unsafe { &*phdrs.add(i) };
        if p.p_type == PT_LOAD {
            let (s, e) = (base + p.p_vaddr as usize, base + p.p_vaddr as usize + p.p_memsz as usize);
            if s < lo {
                lo = s;
            }
            if e > hi {
                hi = e;
            }
            if num_segments == MAX_SEGMENTS {
                return None;
            }
            segments[num_segments] = (s, e);
            num_segments += 1;
        } else if p.p_type == PT_DYNAMIC {
            dynamic = base + p.p_vaddr as usize;
        }
        i += 1;
    }
    if dynamic == 0 || hi == 0 {
        return None;
    }
    Some(SelfImage { base, start: lo & !(page - 1), end: (hi + page - 1) & !(page - 1), dynamic, segments, num_segments })
}

/// Apply the RELATIVE relocations of the image whose dynamic section is at `dynamic` and which
/// sits at `base`. `moved_by: None` relocates a fresh image (link address 0); `Some(delta)`
/// re-relocates an already relocated copy that moved by `delta` bytes.
/// Returns false on a relocation kind the loader cannot have.
///
/// # Safety
/// `base`/`dynamic` must describe a writable copy of this very executable.
pub unsafe fn relocate(base: usize, dynamic: usize, moved_by: Option<usize>) -> bool {
    let word = core::mem::size_of::<usize>();
    let (mut rela, mut relasz, mut rel, mut relsz) = (0usize, 0usize, 0usize, 0usize);
    let mut d = dynamic as *const usize;
    loop {
        // SAFETY: the dynamic section is an array of (tag, value) words ending with DT_NULL.
        let (tag, val) = unsafe { (*d, *d.add(1)) };
        match tag {
            DT_NULL => break,
            DT_RELA => rela = val,
            DT_RELASZ => relasz = val,
            DT_REL => rel = val,
            DT_RELSZ => relsz = val,
            DT_RELR => return false,
            _ => {}
        }
        // SAFETY: still inside the dynamic array (DT_NULL not reached yet).
        d = unsafe { d.add(2) };
    }
    let relative = dmtcp_arch::RELATIVE_RELOC as usize;
    // RELA entries: offset, info, addend (3 words); REL entries: offset, info (2 words).
    let tables = [(rela, relasz, 3 * word), (rel, relsz, 2 * word)];
    let mut t = 0;
    while t < 2 {
        let (table, size, entsize) = tables[t];
        let mut off = 0;
        while table != 0 && off + entsize <= size {
            let e = (base + table + off) as *const usize;
            // SAFETY: the entry lies inside the relocation table of this image.
            let (r_offset, r_info) = unsafe { (*e, *e.add(1)) };
            // ELF64 keeps the type in the low 32 bits of r_info, ELF32 in the low 8.
            let kind = if word == 8 { (r_info as u64 & 0xffff_ffff) as usize } else { r_info & 0xff };
            if kind != relative {
                return false;
            }
            let place = (base + r_offset) as *mut usize;
            // SAFETY: RELATIVE relocations point at writable words of this image; a RELA entry
            // has its addend as third word.
            unsafe {
                *place = match moved_by {
                    Some(delta) => (*place).wrapping_add(delta),
                    None if entsize == 3 * word => base.wrapping_add(*e.add(2)),
                    None => (*place).wrapping_add(base),
                }
            };
            off += entsize;
        }
        t += 1;
    }
    true
}
