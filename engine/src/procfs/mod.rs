pub mod anon_fds;
pub mod fd_state;
pub mod fds;
pub mod maps;
pub mod pagemap;
pub mod pty;
pub mod unix_diag;
