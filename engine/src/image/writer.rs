//! Writing an image: fixed tables, postcard metadata, then page data, streamed in large
//! sequential writes; gzip on top when asked; atomically replacing the previous image.

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
    /// Pages to store, in increasing order.
    pub runs: Vec<Run>,
}

pub struct ImageContents<'a> {
    /// cpu, page_size, word_bits, restart_info_addr, mm, vdso ranges, ckpt_signal, hwcap and
    /// kernel_release are the caller's; the writer fills in counts, offsets and checksums.
    pub header: FileHeader,
    pub threads: &'a [ThreadRecord],
    pub sigactions: &'a [SigactionRecord; NUM_SIGNALS],
    pub areas: &'a mut [AreaToWrite],
    pub meta: &'a ProcessMeta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip { level: u32 },
}

/// Copies of process memory are made in chunks of this size.
const CHUNK: usize = 1 << 20;

/// Lay the tables out and fill in every offset, count and checksum of the header and areas.
fn plan(img: &mut ImageContents, path: &Path) -> Result<(Vec<u8>, Vec<u8>), ImageError> {
    let page = img.header.page_size as u64;
    let mut strtab = Vec::new();
    let mut runs = Vec::new();
    for a in img.areas.iter_mut() {
        a.record.path_off = strtab.len() as u32;
        a.record.path_len = a.path.len() as u32;
        strtab.extend_from_slice(a.path.as_bytes());
        a.record.runs_index = runs.len() as u64;
        a.record.num_runs = a.runs.len() as u32;
        runs.extend_from_slice(&a.runs);
    }
    let meta = postcard::to_allocvec(img.meta).map_err(|source| ImageError::Encode { path: path.to_path_buf(), source })?;
    let h = &mut img.header;
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

/// Write the raw (uncompressed) image to `out`. Returns the final header.
pub fn write_raw<W: Write>(
    mut out: W,
    img: &mut ImageContents,
    read_mem: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
    path: &Path,
) -> Result<FileHeader, ImageError> {
    let (tables, meta) = plan(img, path)?;
    let h = img.header;
    let io_err = |e| ImageError::io(path, e);
    let mut hb = [0u8; HEADER_SIZE];
    h.encode(&mut hb);
    out.write_all(&hb).map_err(io_err)?;
    out.write_all(&tables).map_err(io_err)?;
    out.write_all(&meta).map_err(io_err)?;
    let mut pos = h.meta_off + h.meta_len;
    let page = h.page_size as u64;
    let mut buf = vec![0u8; CHUNK];
    let mut crcs = Vec::with_capacity(4 * (img.areas.len() + 1));
    for a in img.areas.iter() {
        zeros(&mut out, a.record.data_off - pos).map_err(io_err)?;
        pos = a.record.data_off;
        let mut crc = crc32fast::Hasher::new();
        for r in &a.runs {
            let mut addr = a.record.start + r.first_page * page;
            let mut left = r.num_pages * page;
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                read_mem(addr, &mut buf[..n]).map_err(io_err)?;
                crc.update(&buf[..n]);
                out.write_all(&buf[..n]).map_err(io_err)?;
                addr += n as u64;
                left -= n as u64;
                pos += n as u64;
            }
        }
        crcs.extend_from_slice(&crc.finalize().to_le_bytes());
    }
    zeros(&mut out, h.data_off + h.data_len - pos).map_err(io_err)?;
    let trailer_crc = crc32(&crcs);
    crcs.extend_from_slice(&trailer_crc.to_le_bytes());
    out.write_all(&crcs).map_err(io_err)?;
    out.flush().map_err(io_err)?;
    Ok(h)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".temp");
    PathBuf::from(s)
}

/// Write the image to `<path>.temp`, fsync it, rename it over `path` and fsync the directory:
/// a crash or an error at any point leaves the previous image as it was.
pub fn write_image_file(
    path: &Path,
    compression: Compression,
    img: &mut ImageContents,
    read_mem: &mut dyn FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> Result<FileHeader, ImageError> {
    let tmp = temp_path(path);
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| ImageError::io(&tmp, e))?;
        let buffered = io::BufWriter::with_capacity(4 << 20, file);
        let (h, buffered) = match compression {
            Compression::None => {
                let mut w = buffered;
                let h = write_raw(&mut w, img, read_mem, &tmp)?;
                (h, w)
            }
            Compression::Gzip { level } => {
                let mut gz = flate2::write::GzEncoder::new(buffered, flate2::Compression::new(level.min(9)));
                let h = write_raw(&mut gz, img, read_mem, &tmp)?;
                (h, gz.finish().map_err(|e| ImageError::io(&tmp, e))?)
            }
        };
        let file = buffered.into_inner().map_err(|e| ImageError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| ImageError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ImageError::io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(h)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
