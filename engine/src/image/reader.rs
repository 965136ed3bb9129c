//! Reading and verifying images: header and tables first (what dmtcp_inspect prints), then,
//! for a restart, every byte of page data against its checksum, streaming in constant memory.
//!
//! Every length and offset comes from a file we do not trust: all arithmetic on them is
//! checked, every allocation is bounded before it is made, and no byte sequence makes this
//! module panic.

use super::{ImageError, MAX_META_LEN, MAX_TABLES_LEN};
use crate::meta::ProcessMeta;
use dmtcp_layout::*;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

#[derive(Debug)]
pub struct ImageInfo {
    pub header: FileHeader,
    pub threads: Vec<ThreadRecord>,
    pub sigactions: Vec<SigactionRecord>,
    pub areas: Vec<AreaRecord>,
    pub runs: Vec<Run>,
    pub strtab: Vec<u8>,
    pub meta: ProcessMeta,
    pub compressed: bool,
    /// Size of the file on disk.
    pub file_len: u64,
}

impl ImageInfo {
    /// The backing file name of an area ("" for anonymous memory).
    pub fn area_path(&self, a: &AreaRecord) -> &str {
        let (s, n) = (a.path_off as usize, a.path_len as usize);
        self.strtab.get(s..s.saturating_add(n)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or("?")
    }

    /// The stored page runs of an area.
    pub fn area_runs(&self, a: &AreaRecord) -> &[Run] {
        let s = a.runs_index as usize;
        self.runs.get(s..s.saturating_add(a.num_runs as usize)).unwrap_or(&[])
    }
}

fn corrupted(path: &Path, what: impl Into<String>) -> ImageError {
    ImageError::Corrupted { path: path.to_path_buf(), what: what.into() }
}

fn read_exact(r: &mut dyn Read, buf: &mut [u8], path: &Path) -> Result<(), ImageError> {
    r.read_exact(buf).map_err(|e| ImageError::io(path, e))
}

fn skip(r: &mut dyn Read, n: u64, path: &Path) -> Result<(), ImageError> {
    let copied = io::copy(&mut r.take(n), &mut io::sink()).map_err(|e| ImageError::io(path, e))?;
    if copied != n {
        return Err(ImageError::Truncated { path: path.to_path_buf() });
    }
    Ok(())
}

/// The writer lays the sections out back to back in a fixed order; anything else is damage.
/// Checking the exact layout here also means every later offset computation stays in bounds.
fn check_layout(h: &FileHeader, path: &Path) -> Result<(), ImageError> {
    let bad = || corrupted(path, "inconsistent section offsets in the header");
    let after = |off: u64, n: u64, size: usize| n.checked_mul(size as u64).and_then(|len| off.checked_add(len)).ok_or_else(bad);
    let page = h.page_size as u64;
    let meta_end = h.meta_off.checked_add(h.meta_len).ok_or_else(bad)?;
    let ok = h.threads_off == HEADER_SIZE as u64
        && h.sigactions_off == after(h.threads_off, h.num_threads as u64, THREAD_SIZE)?
        && h.areas_off == after(h.sigactions_off, NUM_SIGNALS as u64, SIGACTION_SIZE)?
        && h.runs_off == after(h.areas_off, h.num_areas as u64, AREA_SIZE)?
        && h.strtab_off == after(h.runs_off, h.num_runs, RUN_SIZE)?
        && h.meta_off == after(h.strtab_off, h.strtab_len, 1)?
        && meta_end < u64::MAX - FILE_ALIGN
        && h.data_off == align_up(meta_end, FILE_ALIGN)
        && page <= FILE_ALIGN
        && h.data_off.checked_add(h.data_len).is_some_and(|e| e < u64::MAX / 2);
    if !ok {
        return Err(bad());
    }
    Ok(())
}

/// Parse header, tables and metadata from the start of a raw image stream.
fn read_front(r: &mut dyn Read, path: &Path, compressed: bool, file_len: u64) -> Result<ImageInfo, ImageError> {
    let layout = |e| ImageError::layout(path, e);
    let mut hb = vec![0u8; HEADER_SIZE];
    let mut got = 0;
    while got < HEADER_SIZE {
        match r.read(&mut hb[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io(path, e)),
        }
    }
    // A prefix of the magic is a truncated image; anything else is some other file.
    if hb[..got.min(MAGIC.len())] != MAGIC[..got.min(MAGIC.len())] {
        return Err(ImageError::NotAnImage { path: path.to_path_buf() });
    }
    if got < HEADER_SIZE {
        return Err(ImageError::Truncated { path: path.to_path_buf() });
    }
    let header = FileHeader::decode(&hb).map_err(layout)?;
    check_layout(&header, path)?;
    let tables_len = header.meta_off - header.threads_off;
    if tables_len > MAX_TABLES_LEN || header.meta_len > MAX_META_LEN {
        return Err(corrupted(
            path,
            format!("record tables ({tables_len} bytes) or metadata ({} bytes) larger than any real image", header.meta_len),
        ));
    }
    // Fallible: a 32-bit restart may not find room for the largest lengths accepted above.
    let zeroed = |len: u64, what: &str| -> Result<Vec<u8>, ImageError> {
        let mut v = Vec::new();
        v.try_reserve_exact(len as usize).map_err(|_| corrupted(path, format!("no memory for {len} bytes of {what}")))?;
        v.resize(len as usize, 0);
        Ok(v)
    };
    let mut tables = zeroed(tables_len, "record tables")?;
    read_exact(r, &mut tables, path)?;
    if crc32(&tables) != header.tables_crc {
        return Err(layout(LayoutError::BadChecksum { what: "record tables" }));
    }
    let mut meta_bytes = zeroed(header.meta_len, "process metadata")?;
    read_exact(r, &mut meta_bytes, path)?;
    if crc32(&meta_bytes) != header.meta_crc {
        return Err(layout(LayoutError::BadChecksum { what: "process metadata" }));
    }
    let meta = ProcessMeta::decode(&meta_bytes, header.minor).map_err(|e| corrupted(path, format!("undecodable process metadata ({e})")))?;
    // check_layout made every table lie inside `tables`; `get` keeps that from being a panic.
    let table = |off: u64, n: u64, size: usize| -> Result<std::slice::ChunksExact<'_, u8>, ImageError> {
        let s = (off - header.threads_off) as usize;
        let len = n as usize * size;
        Ok(tables.get(s..s + len).ok_or_else(|| corrupted(path, "record table outside the tables section"))?.chunks_exact(size))
    };
    let threads = table(header.threads_off, header.num_threads as u64, THREAD_SIZE)?
        .map(ThreadRecord::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(layout)?;
    let sigactions = table(header.sigactions_off, NUM_SIGNALS as u64, SIGACTION_SIZE)?
        .map(SigactionRecord::decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(layout)?;
    let areas =
        table(header.areas_off, header.num_areas as u64, AREA_SIZE)?.map(AreaRecord::decode).collect::<Result<Vec<_>, _>>().map_err(layout)?;
    let runs = table(header.runs_off, header.num_runs, RUN_SIZE)?.map(Run::decode).collect::<Result<Vec<_>, _>>().map_err(layout)?;
    let strtab = table(header.strtab_off, header.strtab_len, 1)?.flatten().copied().collect();
    let info = ImageInfo { header, threads, sigactions, areas, runs, strtab, meta, compressed, file_len };
    check_consistency(&info, path)?;
    Ok(info)
}

/// Cross-record rules the loader relies on: areas sorted and disjoint, runs inside their areas
/// and used in order, data blocks back to back (page-aligned) filling the data section, paths
/// inside the string table.
fn check_consistency(info: &ImageInfo, path: &Path) -> Result<(), ImageError> {
    let h = &info.header;
    let page = h.page_size as u64;
    let mut prev_end = 0u64;
    let mut data_pos = h.data_off;
    let mut runs_used = 0u64;
    for a in &info.areas {
        let at = a.start;
        if a.start < prev_end || a.start % page != 0 || a.end % page != 0 {
            return Err(corrupted(path, format!("memory area at {at:#x} overlaps the previous one or is misaligned")));
        }
        prev_end = a.end;
        if a.path_off as u64 + a.path_len as u64 > h.strtab_len {
            return Err(corrupted(path, format!("path of the memory area at {at:#x} outside the string table")));
        }
        if a.runs_index != runs_used || a.runs_index.saturating_add(a.num_runs as u64) > h.num_runs {
            return Err(corrupted(path, format!("page runs of the memory area at {at:#x} outside the run table")));
        }
        runs_used += a.num_runs as u64;
        let area_pages = a.len() / page;
        let mut pages = 0u64;
        let mut next = 0u64;
        for r in info.area_runs(a) {
            let end = r.first_page.checked_add(r.num_pages);
            if r.first_page < next || r.num_pages == 0 || end.is_none_or(|e| e > area_pages) {
                return Err(corrupted(path, format!("page run outside the memory area at {at:#x}")));
            }
            next = r.first_page + r.num_pages;
            pages += r.num_pages; // at most area_pages in total: no overflow
        }
        // Blocks are page-aligned, in order and back to back; data_pos stays below
        // data_off + data_len (< u64::MAX / 2, see check_layout) so these sums cannot overflow.
        if a.data_off != align_up(data_pos, page) || pages.checked_mul(page) != Some(a.data_len) {
            return Err(corrupted(path, format!("page data block of the memory area at {at:#x}")));
        }
        data_pos = a.data_off.saturating_add(a.data_len);
        if data_pos > h.data_off + h.data_len {
            return Err(corrupted(path, "page data beyond the data section"));
        }
    }
    if data_pos != h.data_off + h.data_len || runs_used != h.num_runs {
        return Err(corrupted(path, "data section or run table larger than its memory areas"));
    }
    if !info.threads.iter().all(|t| t.resume_sp != 0) {
        return Err(corrupted(path, "thread without a saved context"));
    }
    Ok(())
}

/// Check every area's data against its checksum in the trailer, then that the stream ends there.
fn verify_data(r: &mut dyn Read, info: &ImageInfo, path: &Path) -> Result<(), ImageError> {
    let h = &info.header;
    let mut pos = h.meta_off + h.meta_len;
    let mut buf = vec![0u8; 1 << 20];
    let mut crcs = Vec::with_capacity(info.areas.len());
    for a in &info.areas {
        skip(r, a.data_off - pos, path)?;
        let mut crc = crc32fast::Hasher::new();
        let mut left = a.data_len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            read_exact(r, &mut buf[..n], path)?;
            crc.update(&buf[..n]);
            left -= n as u64;
        }
        crcs.push(crc.finalize());
        pos = a.data_off + a.data_len;
    }
    skip(r, h.trailer_off() - pos, path)?;
    let mut trailer = vec![0u8; 4 * (info.areas.len() + 1)];
    read_exact(r, &mut trailer, path)?;
    let (table, last) = trailer.split_at(4 * info.areas.len());
    let word = |b: &[u8]| b.try_into().map(u32::from_le_bytes).unwrap_or(0);
    if crc32(table) != word(last) {
        return Err(ImageError::layout(path, LayoutError::BadChecksum { what: "page checksum trailer" }));
    }
    for (a, (computed, stored)) in info.areas.iter().zip(crcs.iter().zip(table.chunks_exact(4))) {
        if *computed != word(stored) {
            return Err(corrupted(path, format!("bad checksum of the page data of the memory area at {:#x}", a.start)));
        }
    }
    // Reading on to the end also makes the gzip decoder check the last member's CRC.
    let mut extra = [0u8; 1];
    loop {
        match r.read(&mut extra) {
            Ok(0) => return Ok(()),
            Ok(_) => return Err(corrupted(path, "unexpected bytes after the end of the image")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io(path, e)),
        }
    }
}

/// Open `path`; returns the file (at offset 0), whether it is gzip, and its size.
fn open(path: &Path) -> Result<(File, bool, u64), ImageError> {
    let mut f = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let md = f.metadata().map_err(|e| ImageError::io(path, e))?;
    if md.is_dir() {
        return Err(ImageError::NotAnImage { path: path.to_path_buf() });
    }
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| ImageError::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(path, e))?;
    if n == 0 {
        return Err(ImageError::Truncated { path: path.to_path_buf() });
    }
    Ok((f, n == 2 && magic == GZIP_MAGIC, md.len()))
}

/// A reader over the raw image, decompressing gzip images on the fly.
fn raw_stream<R: Read + 'static>(f: R, compressed: bool) -> Box<dyn Read> {
    let buffered = io::BufReader::with_capacity(1 << 20, f);
    if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    }
}

/// An uncompressed image's size is known from its header: compare before anything else reads
/// past the tables, so a cut-off image is reported as such even by a header-only read.
fn check_raw_size(info: &ImageInfo, path: &Path) -> Result<(), ImageError> {
    let want = info.header.file_len();
    if info.compressed || info.file_len == want {
        Ok(())
    } else if info.file_len < want {
        Err(ImageError::Truncated { path: path.to_path_buf() })
    } else {
        Err(corrupted(path, format!("{} unexpected bytes after the end of the image", info.file_len - want)))
    }
}

/// Read and validate the header, tables and metadata (not the page data).
pub fn read_image_info(path: &Path) -> Result<ImageInfo, ImageError> {
    let (f, compressed, len) = open(path)?;
    let info = read_front(&mut raw_stream(f, compressed), path, compressed, len)?;
    check_raw_size(&info, path)?;
    Ok(info)
}

/// Full validation, page data included, in constant memory.
pub fn verify_image(path: &Path) -> Result<ImageInfo, ImageError> {
    let (f, compressed, len) = open(path)?;
    verify_stream(raw_stream(f, compressed), path, compressed, len)
}

fn verify_stream(mut r: impl Read, path: &Path, compressed: bool, len: u64) -> Result<ImageInfo, ImageError> {
    let info = read_front(&mut r, path, compressed, len)?;
    check_raw_size(&info, path)?;
    verify_data(&mut r, &info, path)?;
    Ok(info)
}

fn memfd(name: &core::ffi::CStr) -> io::Result<File> {
    // SAFETY: NUL-terminated name; no MFD_CLOEXEC: the restart loader inherits this fd.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// A file in `tmpdir` with no name, for when memfd_create is unavailable: O_TMPFILE, or else a
/// uniquely named file unlinked at once. Not close-on-exec (the loader inherits it).
fn unnamed_temp(tmpdir: &Path) -> Result<File, ImageError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut open = std::fs::OpenOptions::new();
    open.read(true).write(true).mode(0o600);
    if let Ok(f) = open.clone().custom_flags(libc::O_TMPFILE).open(tmpdir) {
        return Ok(f);
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let tmp = tmpdir.join(format!("dmtcp-restart-{}-{nanos}.raw", std::process::id()));
    let f = open.create_new(true).open(&tmp).map_err(|e| ImageError::Io { path: tmp.clone(), source: e })?;
    let _ = std::fs::remove_file(&tmp);
    Ok(f)
}

/// Copies everything read through it into `out`: decompression, verification and the copy for
/// the loader in one pass, and never more bytes than the image's own header announced.
struct Tee<R, W> {
    inner: R,
    out: W,
    write_error: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.write_error = Some(e);
            return Err(io::Error::other("cannot store the decompressed image"));
        }
        Ok(n)
    }
}

/// A verified raw image for the restart loader, positioned at 0: the file itself when it is
/// uncompressed, otherwise its decompressed copy in a memfd (or an unlinked file in `tmpdir`).
/// Every checksum is verified on the way; nothing is returned for a damaged image.
pub fn open_raw_for_restart(path: &Path, tmpdir: &Path) -> Result<(File, ImageInfo), ImageError> {
    let (mut f, compressed, len) = open(path)?;
    let io_err = |e| ImageError::io(path, e);
    if !compressed {
        // Verify through a clone of the same open file, so what we checked is what we return.
        let info = verify_stream(raw_stream(f.try_clone().map_err(io_err)?, false), path, false, len)?;
        f.seek(SeekFrom::Start(0)).map_err(io_err)?;
        return Ok((f, info));
    }
    let out = match memfd(c"dmtcp-restart-image") {
        Ok(m) => m,
        Err(_) => unnamed_temp(tmpdir)?,
    };
    let decoder = flate2::read::MultiGzDecoder::new(io::BufReader::with_capacity(1 << 20, f));
    let mut tee = Tee { inner: decoder, out: io::BufWriter::with_capacity(1 << 20, &out), write_error: None };
    let verified = verify_stream(&mut tee, path, true, len);
    if let Some(e) = tee.write_error.take() {
        return Err(ImageError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(e.kind(), format!("cannot store the decompressed image: {e}")),
        });
    }
    let info = verified?;
    tee.out.flush().map_err(|e| ImageError::Io { path: path.to_path_buf(), source: e })?;
    drop(tee);
    let mut out = out;
    out.seek(SeekFrom::Start(0)).map_err(io_err)?;
    Ok((out, info))
}
