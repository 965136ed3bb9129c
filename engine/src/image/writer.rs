//! Writing an image: fixed tables, postcard metadata, then page data, streamed in large
//! sequential writes in one pass (the per-area checksums go into a trailer after the data, so
//! nothing is written twice and a gzip stream never seeks); gzip on top when asked; atomically
//! replacing the previous image.
//!
//! Runs in the checkpointed process's checkpoint thread while every other thread is stopped:
//! allocation is fine (libdmtcp routes it to its own allocator), locks held by user threads are
//! not, so nothing here takes one beyond what std's file I/O does.

use super::ImageError;
use crate::meta::ProcessMeta;
use dmtcp_layout::*;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct AreaToWrite {
    /// start, end, prot, kind, flags and file_offset are the caller's; the writer fills in
    /// path_off/path_len, runs_index/num_runs and data_off/data_len.
    pub record: AreaRecord,
    pub path: String,
    /// Pages to store, counted from the area's start, in increasing order, not overlapping.
    pub runs: Vec<Run>,
}

pub struct ImageContents<'a> {
    /// cpu, page_size, word_bits, restart_info_addr, mm, vdso ranges, ckpt_signal, hwcap and
    /// kernel_release are the caller's; the writer fills in version, counts, offsets and
    /// checksums.
    pub header: FileHeader,
    pub threads: &'a [ThreadRecord],
    pub sigactions: &'a [SigactionRecord; NUM_SIGNALS],
    /// Sorted by address, not overlapping.
    pub areas: &'a mut [AreaToWrite],
    pub meta: &'a ProcessMeta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    /// gzip at `level` (0-9; higher is clamped to 9).
    Gzip {
        level: u32,
    },
}

impl Compression {
    /// Level 1: the checkpoint is bound by disk and memory bandwidth; higher levels cost several
    /// times the CPU for a few percent of size.
    pub const DEFAULT_GZIP: Compression = Compression::Gzip { level: 1 };
}

/// Process memory is copied, checksummed and written in chunks of up to this size.
const CHUNK: usize = 1 << 20;
/// The output buffer: as large as a chunk, so whole chunks bypass it (BufWriter writes
/// buffers at least its capacity straight through) while small records are gathered.
const OUT_BUFFER: usize = 1 << 20;

/// Reject contents the reader would refuse, so that a bad caller fails at checkpoint time with
/// a reason instead of producing an image that cannot be restarted.
fn validate(img: &ImageContents, path: &Path) -> Result<(), ImageError> {
    let bad = |what: String| Err(ImageError::InvalidContents { path: path.to_path_buf(), what });
    let page = img.header.page_size as u64;
    if !page.is_power_of_two() || page < 4096 {
        return bad(format!("page size {page}"));
    }
    if img.threads.is_empty() || img.threads.len() > MAX_THREADS {
        return bad(format!("{} threads (1 to {MAX_THREADS} allowed)", img.threads.len()));
    }
    if img.areas.len() > MAX_AREAS {
        return bad(format!("{} memory areas (at most {MAX_AREAS})", img.areas.len()));
    }
    let mut prev_end = 0u64;
    for a in img.areas.iter() {
        let r = &a.record;
        if r.end <= r.start || r.start % page != 0 || r.end % page != 0 || r.start < prev_end {
            return bad(format!("memory area {:#x}-{:#x} is empty, misaligned or out of order", r.start, r.end));
        }
        if AreaKind::from_u32(r.kind).is_none() {
            return bad(format!("memory area at {:#x} has unknown kind {}", r.start, r.kind));
        }
        prev_end = r.end;
        let pages = r.len() / page;
        let mut next = 0u64;
        for run in &a.runs {
            let end = run.first_page.checked_add(run.num_pages);
            if run.num_pages == 0 || run.first_page < next || end.is_none_or(|e| e > pages) {
                return bad(format!(
                    "page run {}+{} of the area at {:#x} is empty, out of order or outside it",
                    run.first_page, run.num_pages, r.start
                ));
            }
            next = run.first_page + run.num_pages;
        }
    }
    Ok(())
}

/// Lay the tables out and fill in every offset, count and checksum of the header and areas.
/// Returns the encoded tables region [threads_off, meta_off) and the metadata bytes.
fn plan(img: &mut ImageContents, path: &Path) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    validate(img, path)?;
    let too_big = || ImageError::InvalidContents { path: path.to_path_buf(), what: "the area paths exceed 4 GiB".into() };
    let page = img.header.page_size as u64;
    let mut strtab = Vec::new();
    let mut runs = Vec::new();
    for a in img.areas.iter_mut() {
        a.record.path_off = u32::try_from(strtab.len()).map_err(|_| too_big())?;
        a.record.path_len = u32::try_from(a.path.len()).map_err(|_| too_big())?;
        strtab.extend_from_slice(a.path.as_bytes());
        a.record.runs_index = runs.len() as u64;
        a.record.num_runs = u32::try_from(a.runs.len()).map_err(|_| too_big())?;
        runs.extend_from_slice(&a.runs);
    }
    u32::try_from(strtab.len()).map_err(|_| too_big())?;
    let meta = postcard::to_allocvec(img.meta).map_err(|source| ImageError::Meta { path: path.to_path_buf(), source })?;
    if meta.len() as u64 > super::MAX_META_LEN {
        // A reader would refuse it: better no new image (the previous one stays) than one that
        // cannot be restarted.
        return Err(ImageError::InvalidContents {
            path: path.to_path_buf(),
            what: format!(
                "{} MiB of metadata (queued and drained bytes) is over the {} MiB a reader accepts",
                meta.len() >> 20,
                super::MAX_META_LEN >> 20
            ),
        });
    }
    let h = &mut img.header;
    h.major = FORMAT_MAJOR;
    h.minor = FORMAT_MINOR;
    h.num_threads = img.threads.len() as u32;
    h.num_areas = img.areas.len() as u32;
    h.num_runs = runs.len() as u64;
    h.threads_off = HEADER_SIZE as u64;
    h.sigactions_off = h.threads_off + (img.threads.len() * THREAD_SIZE) as u64;
    h.areas_off = h.sigactions_off + (NUM_SIGNALS * SIGACTION_SIZE) as u64;
    h.runs_off = h.areas_off + (img.areas.len() * AREA_SIZE) as u64;
    h.strtab_off = h.runs_off + (runs.len() * RUN_SIZE) as u64;
    h.strtab_len = strtab.len() as u64;
    h.meta_off = h.strtab_off + h.strtab_len;
    h.meta_len = meta.len() as u64;
    h.meta_crc = crc32(&meta);
    h.data_off = align_up(h.meta_off + h.meta_len, FILE_ALIGN);
    let mut cursor = h.data_off;
    for a in img.areas.iter_mut() {
        cursor = align_up(cursor, page);
        a.record.data_off = cursor;
        a.record.data_len = a.runs.iter().map(|r| r.num_pages * page).sum();
        cursor += a.record.data_len;
    }
    h.data_len = cursor - h.data_off;
    // The tables region [threads_off, meta_off), checksummed as one block.
    let mut tables = Vec::with_capacity((h.meta_off - h.threads_off) as usize);
    for t in img.threads {
        let mut b = [0u8; THREAD_SIZE];
        t.encode(&mut b);
        tables.extend_from_slice(&b);
    }
    for s in img.sigactions.iter() {
        let mut b = [0u8; SIGACTION_SIZE];
        s.encode(&mut b);
        tables.extend_from_slice(&b);
    }
    for a in img.areas.iter() {
        let mut b = [0u8; AREA_SIZE];
        a.record.encode(&mut b);
        tables.extend_from_slice(&b);
    }
    for r in &runs {
        let mut b = [0u8; RUN_SIZE];
        r.encode(&mut b);
        tables.extend_from_slice(&b);
    }
    tables.extend_from_slice(&strtab);
    h.tables_crc = crc32(&tables);
    Ok((tables, meta))
}

fn zeros(out: &mut dyn Write, mut n: u64) -> io::Result<()> {
    const Z: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(Z.len() as u64) as usize;
        out.write_all(&Z[..k])?;
        n -= k as u64;
    }
    Ok(())
}

/// Write the raw (uncompressed) image to `out`; returns the final header. `read_mem(addr, buf)`
/// fills `buf` with the process memory at `addr` (in-process, a plain copy).
pub fn write_raw<W: Write>(
    out: W,
    img: &mut ImageContents,
    read_mem: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<FileHeader, ImageError> {
    write_raw_named(out, img, read_mem, Path::new("(image stream)"))
}

/// [`write_raw`], naming `path` in its errors.
pub fn write_raw_named<W: Write>(
    mut out: W,
    img: &mut ImageContents,
    read_mem: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    path: &Path,
) -> Result<FileHeader, ImageError> {
    let (tables, meta) = plan(img, path)?;
    let h = img.header;
    let werr = |e| ImageError::write(path, e);
    let mut hb = [0u8; HEADER_SIZE];
    h.encode(&mut hb);
    out.write_all(&hb).map_err(werr)?;
    out.write_all(&tables).map_err(werr)?;
    out.write_all(&meta).map_err(werr)?;
    let mut pos = h.meta_off + h.meta_len;
    let page = h.page_size as u64;
    let mut buf = vec![0u8; CHUNK];
    let mut crcs = Vec::with_capacity(4 * (img.areas.len() + 1));
    for a in img.areas.iter() {
        zeros(&mut out, a.record.data_off - pos).map_err(werr)?;
        pos = a.record.data_off;
        let mut crc = crc32fast::Hasher::new();
        for r in &a.runs {
            let mut addr = a.record.start + r.first_page * page;
            let mut left = r.num_pages * page;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                read_mem(addr, &mut buf[..n]).map_err(|source| ImageError::ReadMemory { path: path.to_path_buf(), addr, len: n, source })?;
                crc.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(werr)?;
                addr += n as u64;
                left -= n as u64;
                pos += n as u64;
            }
        }
        crcs.extend_from_slice(&crc.finalize().to_le_bytes());
    }
    zeros(&mut out, h.data_off + h.data_len - pos).map_err(werr)?;
    let trailer_crc = crc32(&crcs);
    crcs.extend_from_slice(&trailer_crc.to_le_bytes());
    out.write_all(&crcs).map_err(werr)?;
    out.flush().map_err(werr)?;
    Ok(h)
}

/// `<path>.temp`: where an image is written before it replaces `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".temp");
    PathBuf::from(s)
}

fn create_private(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    // 0600: an image holds the whole memory of the process, secrets included (DMTCP does the same).
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)
}

/// Write the image to `<path>.temp` (create, write, fsync), rename it over `path` and fsync the
/// directory: a crash or an error at any point leaves the previous image as it was. On error
/// the temporary file is removed.
pub fn write_image_file(
    path: &Path,
    compression: Compression,
    img: &mut ImageContents,
    read_mem: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<FileHeader, ImageError> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = create_private(&tmp).map_err(|e| ImageError::write(&tmp, e))?;
        let buffered = io::BufWriter::with_capacity(OUT_BUFFER, file);
        let (h, buffered) = match compression {
            Compression::None => {
                let mut w = buffered;
                let h = write_raw_named(&mut w, img, read_mem, path)?;
                (h, w)
            }
            Compression::Gzip { level } => {
                let mut gz = flate2::write::GzEncoder::new(buffered, flate2::Compression::new(level.min(9)));
                let h = write_raw_named(&mut gz, img, read_mem, path)?;
                (h, gz.finish().map_err(|e| ImageError::write(path, e))?)
            }
        };
        let file = buffered.into_inner().map_err(|e| ImageError::write(path, e.into_error()))?;
        file.sync_all().map_err(|e| ImageError::write(path, e))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(|e| ImageError::write(path, e))?;
        // The rename is durable only once the directory is: a failure here leaves a complete
        // image behind either name, so it is not an error.
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(h)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
