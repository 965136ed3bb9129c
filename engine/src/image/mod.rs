//! The checkpoint image, std side: writing (in the checkpoint thread) and reading/verifying
//! (dmtcp_restart, dmtcp_inspect). The fixed records are in the `dmtcp-layout` crate; see
//! docs/image-format.md for the file layout.

pub mod reader;
pub mod writer;

use dmtcp_layout::LayoutError;
use std::path::{Path, PathBuf};

/// Most bytes of record tables or metadata a reader accepts before allocating: a crafted length
/// must not make us allocate without bound (a corrupted one fails the header checksum first).
/// The metadata holds what was queued in pipes and sockets and drained from TCP connections.
pub const MAX_TABLES_LEN: u64 = 512 << 20;
pub const MAX_META_LEN: u64 = 1 << 30;

/// Everything that can go wrong writing or reading an image. Each message is one sentence that
/// starts with the file it is about.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: cannot write the checkpoint image: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path}: no space left on the device; the previous image is unchanged")]
    DiskFull { path: PathBuf },
    #[error("{path}: cannot read process memory at {addr:#x} ({len} bytes): {source}")]
    ReadMemory { path: PathBuf, addr: u64, len: usize, source: std::io::Error },
    #[error("{path}: not a dmtcp-rs checkpoint image")]
    NotAnImage { path: PathBuf },
    #[error(
        "{path}: image format version {major}.{minor} is not supported (this build reads {}.0 to {}.{})",
        dmtcp_layout::FORMAT_MAJOR,
        dmtcp_layout::FORMAT_MAJOR,
        dmtcp_layout::FORMAT_MINOR
    )]
    UnsupportedVersion { path: PathBuf, major: u16, minor: u16 },
    #[error("{path}: image is truncated (the checkpoint was probably interrupted or the disk filled up)")]
    Truncated { path: PathBuf },
    #[error("{path}: image is corrupted: {what}")]
    Corrupted { path: PathBuf, what: String },
    /// The caller handed the writer contents that would not make a valid image.
    #[error("{path}: refusing to write an invalid image: {what}")]
    InvalidContents { path: PathBuf, what: String },
    #[error("{path}: cannot encode the image metadata: {source}")]
    Meta { path: PathBuf, source: postcard::Error },
}

impl ImageError {
    /// An I/O error while reading `path`.
    pub(crate) fn io(path: &Path, e: std::io::Error) -> ImageError {
        let path = path.to_path_buf();
        match e.kind() {
            std::io::ErrorKind::NotFound => ImageError::NotFound { path },
            std::io::ErrorKind::UnexpectedEof => ImageError::Truncated { path },
            // flate2 reports a damaged gzip stream (bad deflate data, bad member CRC) like this.
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput => {
                ImageError::Corrupted { path, what: format!("bad compressed data ({e})") }
            }
            _ => ImageError::Io { path, source: e },
        }
    }

    /// An I/O error while writing `path`.
    pub(crate) fn write(path: &Path, e: std::io::Error) -> ImageError {
        let path = path.to_path_buf();
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ImageError::DiskFull { path },
            _ => ImageError::Write { path, source: e },
        }
    }

    /// A record-level format error found in `path`.
    pub(crate) fn layout(path: &Path, e: LayoutError) -> ImageError {
        let path = path.to_path_buf();
        match e {
            LayoutError::BadMagic => ImageError::NotAnImage { path },
            LayoutError::UnsupportedVersion { major, minor } => ImageError::UnsupportedVersion { path, major, minor },
            LayoutError::Truncated { .. } => ImageError::Truncated { path },
            LayoutError::BadChecksum { what } => ImageError::Corrupted { path, what: format!("bad checksum of the {what}") },
            LayoutError::BadField { what } => ImageError::Corrupted { path, what: format!("invalid {what}") },
        }
    }

    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ImageError::NotFound { path }
            | ImageError::Io { path, .. }
            | ImageError::Write { path, .. }
            | ImageError::DiskFull { path }
            | ImageError::ReadMemory { path, .. }
            | ImageError::NotAnImage { path }
            | ImageError::UnsupportedVersion { path, .. }
            | ImageError::Truncated { path }
            | ImageError::Corrupted { path, .. }
            | ImageError::InvalidContents { path, .. }
            | ImageError::Meta { path, .. } => path,
        }
    }
}

#[cfg(test)]
mod tests;
