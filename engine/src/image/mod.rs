//! The checkpoint image, std side: writing (in the checkpoint thread) and reading/verifying
//! (dmtcp_restart, dmtcp_inspect). The fixed records are in the `dmtcp-layout` crate; see
//! docs/image-format.md for the file layout.

pub mod reader;
pub mod writer;

use dmtcp_layout::LayoutError;
use std::path::PathBuf;

/// Most bytes of record tables or metadata a reader accepts before allocating: a corrupted
/// length must not make us allocate gigabytes.
pub const MAX_TABLES_LEN: u64 = 512 << 20;
pub const MAX_META_LEN: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: no such checkpoint image")]
    NotFound { path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: no space left on the device; the previous image is unchanged")]
    DiskFull { path: PathBuf },
    #[error("{path}: {source}")]
    Layout { path: PathBuf, source: LayoutError },
    #[error("{path}: image is truncated")]
    Truncated { path: PathBuf },
    #[error("{path}: image is corrupted: {what}")]
    Corrupted { path: PathBuf, what: String },
    #[error("{path}: cannot encode the image metadata: {source}")]
    Encode { path: PathBuf, source: postcard::Error },
}

impl ImageError {
    pub(crate) fn io(path: &std::path::Path, e: std::io::Error) -> ImageError {
        let path = path.to_path_buf();
        match e.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ImageError::DiskFull { path },
            _ if e.kind() == std::io::ErrorKind::NotFound => ImageError::NotFound { path },
            _ if e.kind() == std::io::ErrorKind::UnexpectedEof => ImageError::Truncated { path },
            _ => ImageError::Io { path, source: e },
        }
    }
}

#[cfg(test)]
mod tests;
