pub mod fds;
pub mod maps;
pub mod pagemap;
