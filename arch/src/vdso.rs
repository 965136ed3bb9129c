//! The exported functions of a vdso, read from its ELF image in memory (the kernel's vdso, or
//! the copy of an older kernel's vdso that an image carries). The restart loader uses them to
//! send the calls a program makes through an old kernel's vdso to this kernel's.
//!
//! Runs in the static loader: no allocation, no locks; every offset is checked against the
//! image's length, so a damaged copy yields `None`, never a fault.

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const STT_FUNC: u8 = 2;

#[cfg(target_pointer_width = "64")]
mod class {
    pub const WORD: usize = 8;
    pub const EHDR_PHOFF: usize = 32;
    pub const EHDR_PHENTSIZE: usize = 54;
    pub const EHDR_PHNUM: usize = 56;
    pub const PHDR_VADDR: usize = 16;
    pub const PHDR_MEMSZ: usize = 40;
    pub const SYM_SIZE: usize = 24;
    pub const SYM_INFO: usize = 4;
    pub const SYM_SHNDX: usize = 6;
    pub const SYM_VALUE: usize = 8;
    pub const SYM_SIZE_FIELD: usize = 16;
}

#[cfg(target_pointer_width = "32")]
mod class {
    pub const WORD: usize = 4;
    pub const EHDR_PHOFF: usize = 28;
    pub const EHDR_PHENTSIZE: usize = 42;
    pub const EHDR_PHNUM: usize = 44;
    pub const PHDR_VADDR: usize = 8;
    pub const PHDR_MEMSZ: usize = 20;
    pub const SYM_SIZE: usize = 16;
    pub const SYM_INFO: usize = 12;
    pub const SYM_SHNDX: usize = 14;
    pub const SYM_VALUE: usize = 4;
    pub const SYM_SIZE_FIELD: usize = 8;
}

use class::*;

/// One exported function: its name, its address where this image is mapped, and its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VdsoSym<'a> {
    pub name: &'a [u8],
    pub addr: usize,
    pub size: usize,
}

/// A parsed vdso image: where its dynamic symbol and string tables are.
pub struct Vdso<'a> {
    image: &'a [u8],
    base: usize,
    bias: usize,
    symtab: usize,
    strtab: usize,
    strsz: usize,
    count: usize,
}

fn rd<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}
fn u16_at(b: &[u8], off: usize) -> Option<usize> {
    rd::<2>(b, off).map(|v| u16::from_ne_bytes(v) as usize)
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    rd::<4>(b, off).map(u32::from_ne_bytes)
}
fn word_at(b: &[u8], off: usize) -> Option<u64> {
    if WORD == 8 {
        rd::<8>(b, off).map(u64::from_ne_bytes)
    } else {
        u32_at(b, off).map(u64::from)
    }
}

impl<'a> Vdso<'a> {
    /// Parse the ELF image `image`, mapped at address `base`.
    pub fn parse(image: &'a [u8], base: usize) -> Option<Vdso<'a>> {
        if image.get(..4)? != b"\x7fELF" || image.get(4)? != &(if WORD == 8 { 2 } else { 1 }) {
            return None;
        }
        let phoff = word_at(image, EHDR_PHOFF)? as usize;
        let (phentsize, phnum) = (u16_at(image, EHDR_PHENTSIZE)?, u16_at(image, EHDR_PHNUM)?);
        let (mut first_load, mut dynamic) = (None, None);
        for i in 0..phnum {
            let ph = phoff.checked_add(i.checked_mul(phentsize)?)?;
            let vaddr = word_at(image, ph + PHDR_VADDR)? as usize;
            match u32_at(image, ph)? {
                PT_LOAD if first_load.is_none() => first_load = Some(vaddr),
                PT_DYNAMIC => dynamic = Some((vaddr, word_at(image, ph + PHDR_MEMSZ)? as usize)),
                _ => {}
            }
        }
        // The image is linked at first_load (0 for most vdsos); addresses in it are link-time.
        let bias = base.wrapping_sub(first_load?);
        let (dyn_vaddr, dyn_len) = dynamic?;
        let dyn_off = bias.wrapping_add(dyn_vaddr).wrapping_sub(base);
        let mut v = Vdso { image, base, bias, symtab: 0, strtab: 0, strsz: 0, count: 0 };
        let (mut hash, mut gnu_hash) = (None, None);
        let mut d = dyn_off;
        while d + 2 * WORD <= dyn_off.checked_add(dyn_len)? {
            let (tag, val) = (word_at(image, d)?, word_at(image, d + WORD)? as usize);
            match tag {
                DT_NULL => break,
                DT_HASH => hash = Some(v.offset_of(val)?),
                DT_GNU_HASH => gnu_hash = Some(v.offset_of(val)?),
                DT_STRTAB => v.strtab = v.offset_of(val)?,
                DT_SYMTAB => v.symtab = v.offset_of(val)?,
                DT_STRSZ => v.strsz = val,
                _ => {}
            }
            d += 2 * WORD;
        }
        v.count = match (hash, gnu_hash) {
            (Some(h), _) => u32_at(image, h + 4)? as usize, // nchain: one entry per symbol
            (None, Some(g)) => gnu_hash_count(image, g)?,
            (None, None) => return None,
        };
        if v.symtab == 0 || v.strtab == 0 || v.strtab.checked_add(v.strsz)? > image.len() {
            return None;
        }
        Some(v)
    }

    /// A link-time address of the image as an offset into it.
    fn offset_of(&self, vaddr: usize) -> Option<usize> {
        let off = self.bias.wrapping_add(vaddr).wrapping_sub(self.base);
        (off < self.image.len()).then_some(off)
    }

    fn name_at(&self, off: usize) -> Option<&'a [u8]> {
        let s = self.image.get(self.strtab + off..self.strtab + self.strsz)?;
        Some(&s[..s.iter().position(|&c| c == 0)?])
    }

    fn sym(&self, i: usize) -> Option<VdsoSym<'a>> {
        let s = self.symtab.checked_add(i.checked_mul(SYM_SIZE)?)?;
        let info = *self.image.get(s + SYM_INFO)?;
        let value = word_at(self.image, s + SYM_VALUE)? as usize;
        if info & 0xf != STT_FUNC || u16_at(self.image, s + SYM_SHNDX)? == 0 || value == 0 {
            return None;
        }
        Some(VdsoSym {
            name: self.name_at(u32_at(self.image, s)? as usize)?,
            addr: self.bias.wrapping_add(value),
            size: word_at(self.image, s + SYM_SIZE_FIELD)? as usize,
        })
    }

    /// Every defined function the image exports.
    pub fn functions(&self) -> impl Iterator<Item = VdsoSym<'a>> + '_ {
        (1..self.count).filter_map(|i| self.sym(i))
    }

    pub fn lookup(&self, name: &[u8]) -> Option<VdsoSym<'a>> {
        self.functions().find(|s| s.name == name)
    }
}

/// The number of symbols a DT_GNU_HASH table covers: past the highest bucket's chain end.
fn gnu_hash_count(image: &[u8], g: usize) -> Option<usize> {
    let nbuckets = u32_at(image, g)? as usize;
    let symoffset = u32_at(image, g + 4)? as usize;
    let bloom_words = u32_at(image, g + 8)? as usize;
    let buckets = g.checked_add(16)?.checked_add(bloom_words.checked_mul(WORD)?)?;
    let chains = buckets.checked_add(nbuckets.checked_mul(4)?)?;
    let mut last = 0;
    for b in 0..nbuckets {
        last = last.max(u32_at(image, buckets + 4 * b)? as usize);
    }
    if last < symoffset {
        return Some(symoffset);
    }
    loop {
        let c = u32_at(image, chains + 4 * (last - symoffset))?;
        last += 1;
        if c & 1 != 0 {
            return Some(last);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// This process's own vdso (when the kernel gives one: not under qemu-user).
    fn own_vdso() -> Option<(&'static [u8], usize)> {
        // SAFETY: getauxval has no preconditions.
        let base = unsafe { libc_getauxval(33) };
        if base == 0 {
            return None;
        }
        let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
        let line = maps.lines().find(|l| l.ends_with("[vdso]"))?;
        let (a, b) = line.split_whitespace().next()?.split_once('-')?;
        let len = usize::from_str_radix(b, 16).ok()? - usize::from_str_radix(a, 16).ok()?;
        // SAFETY: the kernel's vdso stays mapped and readable for the life of the process.
        Some((unsafe { core::slice::from_raw_parts(base as *const u8, len) }, base))
    }

    unsafe extern "C" {
        #[link_name = "getauxval"]
        fn libc_getauxval(t: usize) -> usize;
    }

    #[test]
    fn own_vdso_exports_clock_gettime() {
        let Some((image, base)) = own_vdso() else { return };
        let v = Vdso::parse(image, base).expect("the kernel's vdso parses");
        let names: std::vec::Vec<&[u8]> = v.functions().map(|s| s.name).collect();
        let want: &[u8] = if cfg!(target_arch = "aarch64") { b"__kernel_clock_gettime" } else { b"__vdso_clock_gettime" };
        let f = v.lookup(want).unwrap_or_else(|| panic!("no clock_gettime among {names:?}"));
        assert!(f.addr > base && f.addr < base + image.len() && f.size > 0);
    }

    extern "C" fn plus_one(x: usize) -> usize {
        x + 1
    }

    /// The jump and the -ENOSYS stub of this CPU, written into fresh memory and called.
    #[test]
    fn written_jump_and_enosys_stub_run() {
        // SAFETY: a fresh private anonymous mapping.
        let page = unsafe { crate::sys::mmap(0, 4096, 7, 0x22, -1, 0) }.expect("mmap rwx");
        let mut buf = [0u8; crate::JUMP_MAX];
        for (at, stub) in [(page + 64, false), (page + 128, true)] {
            let (write_at, n) = if stub {
                crate::encode_enosys(at, &mut buf)
            } else {
                crate::encode_jump(at, plus_one as extern "C" fn(usize) -> usize as usize, &mut buf)
            };
            // SAFETY: [write_at, write_at + n) lies inside our page.
            unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), write_at as *mut u8, n) };
            crate::sync_icache(write_at, n);
        }
        type F = extern "C" fn(usize) -> usize;
        // SAFETY: the page now holds a jump to plus_one at +64 and the stub at +128, both with
        // plus_one's C signature (the stub ignores its argument).
        let (f, g) = unsafe { (core::mem::transmute::<usize, F>(page + 64), core::mem::transmute::<usize, F>(page + 128)) };
        assert_eq!(f(41), 42);
        assert_eq!(g(0) as isize, -38);
        // SAFETY: our own mapping, no longer used.
        let _ = unsafe { crate::sys::munmap(page, 4096) };
    }

    #[test]
    fn damaged_images_are_refused() {
        let Some((image, base)) = own_vdso() else { return };
        let mut copy = std::vec::Vec::from(image);
        for cut in [0, 3, 16, 64, image.len() / 2] {
            let _ = Vdso::parse(&copy[..cut], base).map(|v| v.functions().count());
        }
        copy[0] = 0;
        assert!(Vdso::parse(&copy, base).is_none());
    }
}
