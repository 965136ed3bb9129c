//! The fixed-layout part of a dmtcp-rs checkpoint image: what the static restart loader reads.
//!
//! Everything here is `core` only, little-endian, and parsed from byte slices without allocation:
//! the loader (no libc, no allocator) and the std-side tools share this one definition.
//! See `docs/image-format.md` for the whole file layout.
#![no_std]

pub mod records;

pub use records::*;

/// First bytes of every uncompressed image.
pub const MAGIC: [u8; 8] = *b"DMTCPRS\0";
/// First bytes of a gzip stream (a compressed image).
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Incompatible changes bump the major version; readers refuse another major.
pub const FORMAT_MAJOR: u16 = 1;
/// Compatible additions bump the minor version; readers refuse a newer minor.
pub const FORMAT_MINOR: u16 = 3;
/// Page data and the record tables start on this alignment in the raw file, whatever the CPU's
/// page size, so that a later mmap-based restart can map page data straight from the file.
pub const FILE_ALIGN: u64 = 65536;

/// CPU an image was taken on. The numbers are part of the format.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpu {
    X86_64 = 1,
    X86 = 2,
    Arm = 3,
    Aarch64 = 4,
}

impl Cpu {
    pub fn from_u16(v: u16) -> Option<Cpu> {
        match v {
            1 => Some(Cpu::X86_64),
            2 => Some(Cpu::X86),
            3 => Some(Cpu::Arm),
            4 => Some(Cpu::Aarch64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cpu::X86_64 => "x86_64",
            Cpu::X86 => "i686",
            Cpu::Arm => "armv7",
            Cpu::Aarch64 => "aarch64",
        }
    }
}

/// Why a byte slice is not a valid record of this format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    BadMagic,
    /// The image's major version differs, or its minor version is newer than ours.
    UnsupportedVersion {
        major: u16,
        minor: u16,
    },
    Truncated {
        need: usize,
        have: usize,
    },
    BadChecksum {
        what: &'static str,
    },
    BadField {
        what: &'static str,
    },
}

impl core::fmt::Display for LayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LayoutError::BadMagic => write!(f, "not a dmtcp-rs checkpoint image (bad magic)"),
            LayoutError::UnsupportedVersion { major, minor } => write!(
                f,
                "image format version {major}.{minor} is not supported (this build reads {FORMAT_MAJOR}.0 to {FORMAT_MAJOR}.{FORMAT_MINOR})"
            ),
            LayoutError::Truncated { need, have } => {
                write!(f, "image is truncated (need {need} bytes, have {have})")
            }
            LayoutError::BadChecksum { what } => write!(f, "image is corrupted: bad checksum of {what}"),
            LayoutError::BadField { what } => write!(f, "image is corrupted: invalid {what}"),
        }
    }
}

/// CRC-32 (IEEE) of a byte slice; the checksum used throughout the format.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// Round `v` up to a multiple of `align` (a power of two).
pub const fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}

impl core::error::Error for LayoutError {}
