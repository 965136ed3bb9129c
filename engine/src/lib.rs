//! The shared engine: image format (std side), /proc readers, coordinator protocol.
//! Target-independent: compiles for every CPU we support and names none.

pub mod image;
pub mod meta;
pub mod pidmap;
pub mod procfs;
pub mod protocol;
pub mod tcp_pairs;

pub use dmtcp_layout as layout;
