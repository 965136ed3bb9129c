//! Reading and verifying images: header and tables first (what dmtcp_inspect prints), then,
//! for a restart, every byte of page data against its checksum, streaming in constant memory.

use super::{ImageError, MAX_META_LEN, MAX_TABLES_LEN};
use crate::meta::ProcessMeta;
use dmtcp_layout::*;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
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

/// Parse header, tables and metadata from the start of a raw image stream.
fn read_front(r: &mut dyn Read, path: &Path, compressed: bool, file_len: u64) -> Result<ImageInfo, ImageError> {
    let layout = |source| ImageError::Layout { path: path.to_path_buf(), source };
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
    if got < MAGIC.len() || hb[..MAGIC.len()] != MAGIC {
        return Err(layout(LayoutError::BadMagic));
    }
    if got < HEADER_SIZE {
        return Err(ImageError::Truncated { path: path.to_path_buf() });
    }
    let header = FileHeader::decode(&hb).map_err(layout)?;
    let tables_len = header.meta_off - header.threads_off;
    if tables_len > MAX_TABLES_LEN || header.meta_len > MAX_META_LEN {
        return Err(corrupted(path, "table sizes out of range"));
    }
    let mut tables = vec![0u8; tables_len as usize];
    read_exact(r, &mut tables, path)?;
    if crc32(&tables) != header.tables_crc {
        return Err(layout(LayoutError::BadChecksum { what: "record tables" }));
    }
    let mut meta_bytes = vec![0u8; header.meta_len as usize];
    read_exact(r, &mut meta_bytes, path)?;
    if crc32(&meta_bytes) != header.meta_crc {
        return Err(layout(LayoutError::BadChecksum { what: "metadata" }));
    }
    let meta: ProcessMeta = postcard::from_bytes(&meta_bytes).map_err(|e| corrupted(path, format!("metadata: {e}")))?;
    let base = header.threads_off;
    let at = |off: u64, i: usize, size: usize| -> &[u8] {
        let s = (off - base) as usize + i * size;
        &tables[s..s + size]
    };
    let threads = (0..header.num_threads as usize)
        .map(|i| ThreadRecord::decode(at(header.threads_off, i, THREAD_SIZE)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(layout)?;
    let sigactions = (0..NUM_SIGNALS)
        .map(|i| SigactionRecord::decode(at(header.sigactions_off, i, SIGACTION_SIZE)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(layout)?;
    let areas = (0..header.num_areas as usize)
        .map(|i| AreaRecord::decode(at(header.areas_off, i, AREA_SIZE)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(layout)?;
    let runs = (0..header.num_runs as usize).map(|i| Run::decode(at(header.runs_off, i, RUN_SIZE))).collect::<Result<Vec<_>, _>>().map_err(layout)?;
    let s = (header.strtab_off - base) as usize;
    let strtab = tables[s..s + header.strtab_len as usize].to_vec();
    let info = ImageInfo { header, threads, sigactions, areas, runs, strtab, meta, compressed, file_len };
    check_consistency(&info, path)?;
    Ok(info)
}

/// Cross-record rules the loader relies on: areas sorted and disjoint, runs inside their areas,
/// data blocks in order inside the data section, paths inside the string table.
fn check_consistency(info: &ImageInfo, path: &Path) -> Result<(), ImageError> {
    let h = &info.header;
    let page = h.page_size as u64;
    let mut prev_end = 0u64;
    let mut data_pos = h.data_off;
    for a in &info.areas {
        if a.start < prev_end || a.start % page != 0 || a.end % page != 0 {
            return Err(corrupted(path, format!("memory area at {:#x} overlaps or is misaligned", a.start)));
        }
        prev_end = a.end;
        if a.path_off as u64 + a.path_len as u64 > h.strtab_len {
            return Err(corrupted(path, "area path outside the string table"));
        }
        if a.runs_index.saturating_add(a.num_runs as u64) > h.num_runs {
            return Err(corrupted(path, "page runs outside the run table"));
        }
        let mut pages = 0u64;
        let mut next = 0u64;
        for r in info.area_runs(a) {
            if r.first_page < next || r.num_pages == 0 || (r.first_page + r.num_pages) * page > a.len() {
                return Err(corrupted(path, format!("page run outside its area at {:#x}", a.start)));
            }
            next = r.first_page + r.num_pages;
            pages += r.num_pages;
        }
        if pages * page != a.data_len || a.data_off < data_pos || a.data_off % page != 0 {
            return Err(corrupted(path, format!("data block of the area at {:#x}", a.start)));
        }
        data_pos = a.data_off + a.data_len;
    }
    if data_pos > h.data_off + h.data_len {
        return Err(corrupted(path, "page data beyond the data section"));
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
    let word = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if crc32(table) != word(last) {
        return Err(ImageError::Layout { path: path.to_path_buf(), source: LayoutError::BadChecksum { what: "data trailer" } });
    }
    for (a, (computed, stored)) in info.areas.iter().zip(crcs.iter().zip(table.chunks_exact(4))) {
        if *computed != word(stored) {
            return Err(corrupted(path, format!("bad checksum of the page data of the area at {:#x}", a.start)));
        }
    }
    let mut extra = [0u8; 1];
    match r.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupted(path, "unexpected bytes after the end of the image")),
        Err(e) => Err(ImageError::io(path, e)),
    }
}

fn open(path: &Path) -> Result<(File, bool, u64), ImageError> {
    let mut f = File::open(path).map_err(|e| ImageError::io(path, e))?;
    let len = f.metadata().map_err(|e| ImageError::io(path, e))?.len();
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(|e| ImageError::io(path, e))?;
    f.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(path, e))?;
    if n == 0 {
        return Err(ImageError::Truncated { path: path.to_path_buf() });
    }
    Ok((f, n == 2 && magic == GZIP_MAGIC, len))
}

/// A reader over the raw image, decompressing gzip images on the fly.
fn raw_stream(f: File, compressed: bool) -> Box<dyn Read> {
    let buffered = io::BufReader::with_capacity(1 << 20, f);
    if compressed {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    }
}

/// Read and validate the header, tables and metadata (not the page data).
pub fn read_image_info(path: &Path) -> Result<ImageInfo, ImageError> {
    let (f, compressed, len) = open(path)?;
    read_front(&mut raw_stream(f, compressed), path, compressed, len)
}

/// Full validation, page data included, in constant memory.
pub fn verify_image(path: &Path) -> Result<ImageInfo, ImageError> {
    let (f, compressed, len) = open(path)?;
    let mut r = raw_stream(f, compressed);
    let info = read_front(&mut r, path, compressed, len)?;
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

/// A verified raw image for the restart loader: the file itself when uncompressed, otherwise
/// its decompressed copy in a memfd (or an unlinked file in `tmpdir`). Positioned at 0.
pub fn open_raw_for_restart(path: &Path, tmpdir: &Path) -> Result<(File, ImageInfo), ImageError> {
    let (f, compressed, len) = open(path)?;
    if !compressed {
        let info = verify_image(path)?;
        return Ok((f, info));
    }
    let mut out = match memfd(c"dmtcp-restart-image") {
        Ok(m) => m,
        Err(_) => {
            let tmp = tmpdir.join(format!("dmtcp-restart-{}.raw", std::process::id()));
            let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
            let _ = std::fs::remove_file(&tmp);
            file
        }
    };
    let mut gz = raw_stream(f, true);
    io::copy(&mut gz, &mut out).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ImageError::Truncated { path: path.to_path_buf() },
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => corrupted(path, format!("gzip stream: {e}")),
        _ => ImageError::io(path, e),
    })?;
    out.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(path, e))?;
    let mut r = io::BufReader::with_capacity(1 << 20, &out);
    let info = read_front(&mut r, path, true, len)?;
    verify_data(&mut r, &info, path)?;
    drop(r);
    out.seek(SeekFrom::Start(0)).map_err(|e| ImageError::io(path, e))?;
    Ok((out, info))
}
