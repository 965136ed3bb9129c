//! Fixed-size little-endian records of the raw image and their codecs.
//!
//! Runs in the static restart loader: no allocation, no panics on bad input (every decode checks
//! lengths and returns `LayoutError`).

use crate::{Cpu, LayoutError, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};

/// Bytes reserved for the header at the start of the raw image; the last 4 hold its CRC.
pub const HEADER_SIZE: usize = 4096;
pub const THREAD_SIZE: usize = 128;
pub const SIGACTION_SIZE: usize = 32;
pub const AREA_SIZE: usize = 96;
/// Room for the auxiliary vector in the header: the kernel keeps at most about 50 words.
pub const AUXV_MAX: usize = 1024;
pub const RUN_SIZE: usize = 16;
/// Signal actions recorded per image: signals 1 to 64.
pub const NUM_SIGNALS: usize = 64;
/// Most threads one image may hold; bounds the loader's fixed tables.
pub const MAX_THREADS: usize = 4096;
/// Most memory areas one image may hold (the kernel's default vm.max_map_count is 65530).
pub const MAX_AREAS: usize = 1 << 20;

/// Sequential little-endian writer over a fixed buffer. Writing past the end is a programming
/// error in this crate (every record has a fixed size checked by the tests), so it saturates.
struct Put<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Put<'_> {
    fn bytes(&mut self, b: &[u8]) {
        let end = (self.pos + b.len()).min(self.buf.len());
        let n = end - self.pos;
        self.buf[self.pos..end].copy_from_slice(&b[..n]);
        self.pos = end;
    }
    fn u8(&mut self, v: u8) {
        self.bytes(&[v]);
    }
    fn u16(&mut self, v: u16) {
        self.bytes(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }
}

/// Sequential little-endian reader; the caller checked the total length first.
struct Get<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Get<'a> {
    fn new(buf: &'a [u8], need: usize) -> Result<Self, LayoutError> {
        if buf.len() < need {
            return Err(LayoutError::Truncated { need, have: buf.len() });
        }
        Ok(Get { buf, pos: 0 })
    }
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        out
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Process-wide memory-map fields of the kernel's mm_struct, restored with PR_SET_MM_MAP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MmFields {
    pub start_code: u64,
    pub end_code: u64,
    pub start_data: u64,
    pub end_data: u64,
    pub start_brk: u64,
    pub brk: u64,
    pub start_stack: u64,
    pub arg_start: u64,
    pub arg_end: u64,
    pub env_start: u64,
    pub env_end: u64,
}

/// An address range [start, end); zero-length means "absent".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    pub start: u64,
    pub end: u64,
}

impl Range {
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The header at offset 0 of a raw image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub major: u16,
    pub minor: u16,
    pub cpu: u16,
    pub word_bits: u8,
    pub page_size: u32,
    pub num_threads: u32,
    pub num_areas: u32,
    pub num_runs: u64,
    /// Offsets are absolute in the raw (uncompressed) file.
    pub threads_off: u64,
    pub sigactions_off: u64,
    pub areas_off: u64,
    pub runs_off: u64,
    pub strtab_off: u64,
    pub strtab_len: u64,
    /// CRC of every byte in [threads_off, meta_off): all the record tables and the string table.
    pub tables_crc: u32,
    /// Postcard-encoded process metadata, for the std-side tools only.
    pub meta_off: u64,
    pub meta_len: u64,
    pub meta_crc: u32,
    pub data_off: u64,
    pub data_len: u64,
    /// Address, in the checkpointed process, of libdmtcp's `RestartInfo` that the loader fills in.
    pub restart_info_addr: u64,
    pub mm: MmFields,
    pub vdso: Range,
    pub vvar: Range,
    pub vvar_vclock: Range,
    pub ckpt_signal: u32,
    /// AT_HWCAP and AT_HWCAP2 of the checkpointed process: the CPU features it may have used.
    pub hwcap: u64,
    pub hwcap2: u64,
    /// uname release of the kernel the image was taken on, NUL-padded.
    pub kernel_release: [u8; 65],
    /// The process's auxiliary vector as /proc/self/auxv gave it (since 1.1): the loader hands it
    /// back to the kernel, so that debuggers find the program's entry point and headers again.
    pub auxv_len: u32,
    pub auxv: [u8; AUXV_MAX],
    /// Since 1.1, x86 only: XCR0 (high half) and CPUID leaf 0xD sub-leaf 1 EAX (low half).
    pub hwcap3: u64,
    /// Since 1.1: the process group and session of the process (0 in 1.0 images).
    pub pgid: u32,
    pub sid: u32,
}

impl FileHeader {
    pub fn new_for(cpu: Cpu, word_bits: u8, page_size: u32) -> Self {
        FileHeader {
            major: FORMAT_MAJOR,
            minor: FORMAT_MINOR,
            cpu: cpu as u16,
            word_bits,
            page_size,
            num_threads: 0,
            num_areas: 0,
            num_runs: 0,
            threads_off: 0,
            sigactions_off: 0,
            areas_off: 0,
            runs_off: 0,
            strtab_off: 0,
            strtab_len: 0,
            tables_crc: 0,
            meta_off: 0,
            meta_len: 0,
            meta_crc: 0,
            data_off: 0,
            data_len: 0,
            restart_info_addr: 0,
            mm: MmFields::default(),
            vdso: Range::default(),
            vvar: Range::default(),
            vvar_vclock: Range::default(),
            ckpt_signal: 0,
            hwcap: 0,
            hwcap2: 0,
            kernel_release: [0; 65],
            auxv_len: 0,
            auxv: [0; AUXV_MAX],
            hwcap3: 0,
            pgid: 0,
            sid: 0,
        }
    }

    /// The saved auxiliary vector (empty for a 1.0 image).
    pub fn auxv(&self) -> &[u8] {
        &self.auxv[..(self.auxv_len as usize).min(AUXV_MAX)]
    }

    pub fn encode(&self, out: &mut [u8; HEADER_SIZE]) {
        out.fill(0);
        let mut p = Put { buf: &mut out[..], pos: 0 };
        p.bytes(&MAGIC);
        p.u16(self.major);
        p.u16(self.minor);
        p.u16(self.cpu);
        p.u8(self.word_bits);
        p.u8(0);
        p.u32(self.page_size);
        p.u32(self.num_threads);
        p.u32(self.num_areas);
        p.u64(self.num_runs);
        for v in [self.threads_off, self.sigactions_off, self.areas_off, self.runs_off, self.strtab_off, self.strtab_len] {
            p.u64(v);
        }
        p.u32(self.tables_crc);
        p.u64(self.meta_off);
        p.u64(self.meta_len);
        p.u32(self.meta_crc);
        p.u64(self.data_off);
        p.u64(self.data_len);
        p.u64(self.restart_info_addr);
        let m = &self.mm;
        for v in
            [m.start_code, m.end_code, m.start_data, m.end_data, m.start_brk, m.brk, m.start_stack, m.arg_start, m.arg_end, m.env_start, m.env_end]
        {
            p.u64(v);
        }
        for r in [self.vdso, self.vvar, self.vvar_vclock] {
            p.u64(r.start);
            p.u64(r.end);
        }
        p.u32(self.ckpt_signal);
        p.u64(self.hwcap);
        p.u64(self.hwcap2);
        p.bytes(&self.kernel_release);
        p.bytes(&[0; 7]);
        p.u32(self.auxv_len);
        p.bytes(&self.auxv);
        p.u64(self.hwcap3);
        p.u32(self.pgid);
        p.u32(self.sid);
        let crc = crate::crc32(&out[..HEADER_SIZE - 4]);
        out[HEADER_SIZE - 4..].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decode and check magic, version and the header checksum.
    pub fn decode(b: &[u8]) -> Result<Self, LayoutError> {
        let mut g = Get::new(b, HEADER_SIZE)?;
        if g.take::<8>() != MAGIC {
            return Err(LayoutError::BadMagic);
        }
        let major = g.u16();
        let minor = g.u16();
        if major != FORMAT_MAJOR || minor > FORMAT_MINOR {
            return Err(LayoutError::UnsupportedVersion { major, minor });
        }
        let stored = u32::from_le_bytes([b[HEADER_SIZE - 4], b[HEADER_SIZE - 3], b[HEADER_SIZE - 2], b[HEADER_SIZE - 1]]);
        if crate::crc32(&b[..HEADER_SIZE - 4]) != stored {
            return Err(LayoutError::BadChecksum { what: "header" });
        }
        let cpu = g.u16();
        let word_bits = g.u8();
        let _reserved = g.u8();
        let page_size = g.u32();
        let num_threads = g.u32();
        let num_areas = g.u32();
        let num_runs = g.u64();
        let threads_off = g.u64();
        let sigactions_off = g.u64();
        let areas_off = g.u64();
        let runs_off = g.u64();
        let strtab_off = g.u64();
        let strtab_len = g.u64();
        let tables_crc = g.u32();
        let meta_off = g.u64();
        let meta_len = g.u64();
        let meta_crc = g.u32();
        let data_off = g.u64();
        let data_len = g.u64();
        let restart_info_addr = g.u64();
        let mm = MmFields {
            start_code: g.u64(),
            end_code: g.u64(),
            start_data: g.u64(),
            end_data: g.u64(),
            start_brk: g.u64(),
            brk: g.u64(),
            start_stack: g.u64(),
            arg_start: g.u64(),
            arg_end: g.u64(),
            env_start: g.u64(),
            env_end: g.u64(),
        };
        let mut range = || Range { start: g.u64(), end: g.u64() };
        let vdso = range();
        let vvar = range();
        let vvar_vclock = range();
        let ckpt_signal = g.u32();
        let hwcap = g.u64();
        let hwcap2 = g.u64();
        let kernel_release = g.take::<65>();
        g.take::<7>();
        let auxv_len = g.u32();
        let auxv = g.take::<AUXV_MAX>();
        let hwcap3 = g.u64();
        let pgid = g.u32();
        let sid = g.u32();
        let h = FileHeader {
            major,
            minor,
            cpu,
            word_bits,
            page_size,
            num_threads,
            num_areas,
            num_runs,
            threads_off,
            sigactions_off,
            areas_off,
            runs_off,
            strtab_off,
            strtab_len,
            tables_crc,
            meta_off,
            meta_len,
            meta_crc,
            data_off,
            data_len,
            restart_info_addr,
            mm,
            vdso,
            vvar,
            vvar_vclock,
            ckpt_signal,
            hwcap,
            hwcap2,
            kernel_release,
            auxv_len,
            auxv,
            hwcap3,
            pgid,
            sid,
        };
        h.check()?;
        Ok(h)
    }

    fn check(&self) -> Result<(), LayoutError> {
        if Cpu::from_u16(self.cpu).is_none() {
            return Err(LayoutError::BadField { what: "CPU" });
        }
        if self.auxv_len as usize > AUXV_MAX {
            return Err(LayoutError::BadField { what: "auxiliary vector length" });
        }
        if !self.page_size.is_power_of_two() || self.page_size < 4096 {
            return Err(LayoutError::BadField { what: "page size" });
        }
        if self.num_threads == 0 || self.num_threads as usize > MAX_THREADS {
            return Err(LayoutError::BadField { what: "thread count" });
        }
        if self.num_areas as usize > MAX_AREAS {
            return Err(LayoutError::BadField { what: "area count" });
        }
        let table_ends = [
            (self.threads_off, self.num_threads as u64 * THREAD_SIZE as u64),
            (self.sigactions_off, (NUM_SIGNALS * SIGACTION_SIZE) as u64),
            (self.areas_off, self.num_areas as u64 * AREA_SIZE as u64),
            (self.runs_off, self.num_runs.saturating_mul(RUN_SIZE as u64)),
            (self.strtab_off, self.strtab_len),
        ];
        for (off, len) in table_ends {
            if off < HEADER_SIZE as u64 || off.checked_add(len).is_none_or(|end| end > self.meta_off) {
                return Err(LayoutError::BadField { what: "table offsets" });
            }
        }
        if self.meta_off.checked_add(self.meta_len).is_none_or(|e| e > self.data_off) {
            return Err(LayoutError::BadField { what: "metadata offset" });
        }
        if self.data_off.checked_add(self.data_len).is_none() {
            return Err(LayoutError::BadField { what: "data length" });
        }
        Ok(())
    }

    pub fn cpu(&self) -> Option<Cpu> {
        Cpu::from_u16(self.cpu)
    }

    /// Where the data trailer starts: one CRC-32 per area (of its page data, in area order),
    /// then the CRC-32 of those CRCs. Written after the data so the image is written in one pass.
    pub fn trailer_off(&self) -> u64 {
        self.data_off + self.data_len
    }

    /// The raw image's exact size.
    pub fn file_len(&self) -> u64 {
        self.trailer_off() + 4 * (self.num_areas as u64 + 1)
    }

    pub fn kernel_release_str(&self) -> &str {
        let n = self.kernel_release.iter().position(|&c| c == 0).unwrap_or(65);
        core::str::from_utf8(&self.kernel_release[..n]).unwrap_or("?")
    }
}

pub const THREAD_IS_MAIN: u32 = 1;
pub const THREAD_IS_CKPT: u32 = 2;

/// One thread of the checkpointed process and how to resume it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadRecord {
    pub tid: u32,
    pub flags: u32,
    /// Stack pointer of the context saved by `arch::park` / `arch::save_and_run`.
    pub resume_sp: u64,
    /// TLS register value (x86_64 FS base, AArch64 TPIDR_EL0, ARM TPIDRURO, i686 GDT base).
    pub tls: u64,
    /// Per-CPU extra TLS datum (i686: the GDT entry number).
    pub tls_aux: u64,
    /// clear_child_tid address (glibc's &pthread->tid); the new tid is written there.
    pub tid_address: u64,
    pub robust_head: u64,
    pub robust_len: u64,
    pub rseq_addr: u64,
    pub rseq_len: u32,
    pub rseq_sig: u32,
    pub comm: [u8; 16],
}

impl ThreadRecord {
    pub fn encode(&self, out: &mut [u8; THREAD_SIZE]) {
        out.fill(0);
        let mut p = Put { buf: &mut out[..], pos: 0 };
        p.u32(self.tid);
        p.u32(self.flags);
        for v in [self.resume_sp, self.tls, self.tls_aux, self.tid_address, self.robust_head, self.robust_len, self.rseq_addr] {
            p.u64(v);
        }
        p.u32(self.rseq_len);
        p.u32(self.rseq_sig);
        p.bytes(&self.comm);
    }

    pub fn decode(b: &[u8]) -> Result<Self, LayoutError> {
        let mut g = Get::new(b, THREAD_SIZE)?;
        Ok(ThreadRecord {
            tid: g.u32(),
            flags: g.u32(),
            resume_sp: g.u64(),
            tls: g.u64(),
            tls_aux: g.u64(),
            tid_address: g.u64(),
            robust_head: g.u64(),
            robust_len: g.u64(),
            rseq_addr: g.u64(),
            rseq_len: g.u32(),
            rseq_sig: g.u32(),
            comm: g.take(),
        })
    }
}

/// One signal's disposition, in the kernel's terms (the arch crate converts to its struct).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigactionRecord {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigactionRecord {
    pub fn encode(&self, out: &mut [u8; SIGACTION_SIZE]) {
        let mut p = Put { buf: &mut out[..], pos: 0 };
        p.u64(self.handler);
        p.u64(self.flags);
        p.u64(self.restorer);
        p.u64(self.mask);
    }

    pub fn decode(b: &[u8]) -> Result<Self, LayoutError> {
        let mut g = Get::new(b, SIGACTION_SIZE)?;
        Ok(SigactionRecord { handler: g.u64(), flags: g.u64(), restorer: g.u64(), mask: g.u64() })
    }
}

/// How an area is recreated at restart.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AreaKind {
    /// Private memory (anonymous, heap, stacks, and private file mappings, whose pages are all
    /// saved so that an image restarts without the original files): anonymous mapping + data.
    Private = 0,
    /// MAP_SHARED file mapping: the data lives in the file; mapped again from `path`.
    SharedFile = 1,
    /// MAP_SHARED anonymous memory (or a deleted shared file): recreated shared, data saved.
    SharedAnon = 2,
}

impl AreaKind {
    pub fn from_u32(v: u32) -> Option<AreaKind> {
        match v {
            0 => Some(AreaKind::Private),
            1 => Some(AreaKind::SharedFile),
            2 => Some(AreaKind::SharedAnon),
            _ => None,
        }
    }
}

pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;
/// The area grows down (the main stack): mapped with MAP_GROWSDOWN.
pub const AREA_GROWSDOWN: u32 = 1;
/// The area is the brk heap.
pub const AREA_HEAP: u32 = 2;
/// The area is the main thread's stack.
pub const AREA_STACK: u32 = 4;
/// The area is a copy of the kernel's vdso code (the header's `vdso` range). On the same kernel
/// the loader moves the live vdso there instead; on another kernel it maps this copy and points
/// its functions at the new kernel's vdso.
pub const AREA_VDSO_TEXT: u32 = 8;

/// One memory area. Its saved pages are the runs `runs_index .. runs_index + num_runs` of the
/// run table, stored back to back from `data_off`; their CRC is in the data trailer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AreaRecord {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub kind: u32,
    pub flags: u32,
    /// The backing file's name in the string table (empty for anonymous memory).
    pub path_off: u32,
    pub path_len: u32,
    pub file_offset: u64,
    pub data_off: u64,
    pub data_len: u64,
    pub runs_index: u64,
    pub num_runs: u32,
    /// Shared anonymous memory (MAP_SHARED anonymous, memfd, SysV): the object's inode (it fits
    /// in 32 bits on the kernel's shm mount), so that a restart can give the processes that
    /// shared it one object again; 0 = unknown. Since 1.2 (reserved before).
    pub shm_id: u32,
}

impl AreaRecord {
    pub fn encode(&self, out: &mut [u8; AREA_SIZE]) {
        out.fill(0);
        let mut p = Put { buf: &mut out[..], pos: 0 };
        p.u64(self.start);
        p.u64(self.end);
        p.u32(self.prot);
        p.u32(self.kind);
        p.u32(self.flags);
        p.u32(self.path_off);
        p.u32(self.path_len);
        p.u64(self.file_offset);
        p.u64(self.data_off);
        p.u64(self.data_len);
        p.u64(self.runs_index);
        p.u32(self.num_runs);
        p.u32(self.shm_id);
    }

    pub fn decode(b: &[u8]) -> Result<Self, LayoutError> {
        let mut g = Get::new(b, AREA_SIZE)?;
        let a = AreaRecord {
            start: g.u64(),
            end: g.u64(),
            prot: g.u32(),
            kind: g.u32(),
            flags: g.u32(),
            path_off: g.u32(),
            path_len: g.u32(),
            file_offset: g.u64(),
            data_off: g.u64(),
            data_len: g.u64(),
            runs_index: g.u64(),
            num_runs: g.u32(),
            shm_id: g.u32(),
        };
        if a.end <= a.start || AreaKind::from_u32(a.kind).is_none() {
            return Err(LayoutError::BadField { what: "memory area" });
        }
        Ok(a)
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    pub fn area_kind(&self) -> AreaKind {
        AreaKind::from_u32(self.kind).unwrap_or(AreaKind::Private)
    }
}

/// A run of consecutive saved pages of one area, counted in pages from the area's start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Run {
    pub first_page: u64,
    pub num_pages: u64,
}

impl Run {
    pub fn encode(&self, out: &mut [u8; RUN_SIZE]) {
        out[..8].copy_from_slice(&self.first_page.to_le_bytes());
        out[8..].copy_from_slice(&self.num_pages.to_le_bytes());
    }

    pub fn decode(b: &[u8]) -> Result<Self, LayoutError> {
        let mut g = Get::new(b, RUN_SIZE)?;
        Ok(Run { first_page: g.u64(), num_pages: g.u64() })
    }
}

/// What the restart loader writes into the restored process (libdmtcp's `RESTART_INFO`), so the
/// checkpoint thread can unmap the loader and knows what it ran on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct RestartInfo {
    /// Incremented by the loader on every restart.
    pub generation: u64,
    pub loader_start: u64,
    pub loader_len: u64,
    /// Non-zero when the loader could not restore the mm fields (brk, arg/env) with PR_SET_MM_MAP.
    pub mm_not_restored: u64,
    /// Since 1.1: an fd holding dmtcp_restart's settings for this restart ("key=value" lines:
    /// the next checkpoint directory, a pause for a debugger), or -1.
    pub settings_fd: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> FileHeader {
        let mut h = FileHeader::new_for(Cpu::X86_64, 64, 4096);
        h.num_threads = 2;
        h.num_areas = 3;
        h.num_runs = 4;
        h.threads_off = HEADER_SIZE as u64;
        h.sigactions_off = h.threads_off + 2 * THREAD_SIZE as u64;
        h.areas_off = h.sigactions_off + (NUM_SIGNALS * SIGACTION_SIZE) as u64;
        h.runs_off = h.areas_off + 3 * AREA_SIZE as u64;
        h.strtab_off = h.runs_off + 4 * RUN_SIZE as u64;
        h.strtab_len = 10;
        h.meta_off = h.strtab_off + 10;
        h.meta_len = 5;
        h.data_off = 65536;
        h.data_len = 8192;
        h.vdso = Range { start: 0x7fff_0000, end: 0x7fff_2000 };
        h.kernel_release[..4].copy_from_slice(b"6.18");
        h.auxv_len = 5;
        h.auxv[..5].copy_from_slice(b"\x21\0\0\0\x07");
        h.hwcap3 = 0x2e7_0000_000f;
        (h.pgid, h.sid) = (4321, 4000);
        h
    }

    #[test]
    fn header_round_trips() {
        let h = sample_header();
        let mut buf = [0u8; HEADER_SIZE];
        h.encode(&mut buf);
        assert_eq!(FileHeader::decode(&buf), Ok(h));
        assert_eq!(h.kernel_release_str(), "6.18");
        assert_eq!(h.auxv(), b"\x21\0\0\0\x07");
        let mut long = h;
        long.auxv_len = AUXV_MAX as u32 + 1;
        long.encode(&mut buf);
        assert_eq!(FileHeader::decode(&buf), Err(LayoutError::BadField { what: "auxiliary vector length" }));
    }

    #[test]
    fn header_rejects_bad_magic_crc_version_and_truncation() {
        let h = sample_header();
        let mut buf = [0u8; HEADER_SIZE];
        h.encode(&mut buf);
        let mut bad = buf;
        bad[0] = b'X';
        assert_eq!(FileHeader::decode(&bad), Err(LayoutError::BadMagic));
        let mut bad = buf;
        bad[200] ^= 1;
        assert_eq!(FileHeader::decode(&bad), Err(LayoutError::BadChecksum { what: "header" }));
        assert!(matches!(FileHeader::decode(&buf[..100]), Err(LayoutError::Truncated { .. })));
        let mut newer = h;
        newer.minor = FORMAT_MINOR + 1;
        newer.encode(&mut buf);
        assert!(matches!(FileHeader::decode(&buf), Err(LayoutError::UnsupportedVersion { .. })));
        let mut other_major = h;
        other_major.major = FORMAT_MAJOR + 1;
        other_major.encode(&mut buf);
        assert!(matches!(FileHeader::decode(&buf), Err(LayoutError::UnsupportedVersion { .. })));
    }

    #[test]
    fn header_rejects_inconsistent_offsets() {
        let mut h = sample_header();
        h.meta_off = h.runs_off; // tables would overlap the metadata
        let mut buf = [0u8; HEADER_SIZE];
        h.encode(&mut buf);
        assert!(matches!(FileHeader::decode(&buf), Err(LayoutError::BadField { .. })));
        let mut h = sample_header();
        h.cpu = 99;
        h.encode(&mut buf);
        assert_eq!(FileHeader::decode(&buf), Err(LayoutError::BadField { what: "CPU" }));
    }

    #[test]
    fn records_round_trip() {
        let t = ThreadRecord {
            tid: 5,
            flags: THREAD_IS_MAIN,
            resume_sp: 1,
            tls: 2,
            tls_aux: 3,
            tid_address: 4,
            robust_head: 5,
            robust_len: 24,
            rseq_addr: 6,
            rseq_len: 32,
            rseq_sig: 7,
            comm: *b"counter\0\0\0\0\0\0\0\0\0",
        };
        let mut b = [0u8; THREAD_SIZE];
        t.encode(&mut b);
        assert_eq!(ThreadRecord::decode(&b), Ok(t));
        let a = AreaRecord {
            start: 0x1000,
            end: 0x3000,
            prot: 3,
            kind: 2,
            flags: 1,
            path_off: 1,
            path_len: 2,
            file_offset: 3,
            data_off: 4,
            data_len: 5,
            runs_index: 6,
            num_runs: 7,
            shm_id: 0,
        };
        let mut b = [0u8; AREA_SIZE];
        a.encode(&mut b);
        assert_eq!(AreaRecord::decode(&b), Ok(a));
        let s = SigactionRecord { handler: 1, flags: 2, restorer: 3, mask: 4 };
        let mut b = [0u8; SIGACTION_SIZE];
        s.encode(&mut b);
        assert_eq!(SigactionRecord::decode(&b), Ok(s));
        let r = Run { first_page: 9, num_pages: 10 };
        let mut b = [0u8; RUN_SIZE];
        r.encode(&mut b);
        assert_eq!(Run::decode(&b), Ok(r));
    }

    #[test]
    fn area_rejects_empty_range_and_unknown_kind() {
        let mut b = [0u8; AREA_SIZE];
        AreaRecord { start: 5, end: 5, ..Default::default() }.encode(&mut b);
        assert!(AreaRecord::decode(&b).is_err());
        AreaRecord { start: 0, end: 4096, kind: 9, ..Default::default() }.encode(&mut b);
        assert!(AreaRecord::decode(&b).is_err());
    }
}
