pub mod maps; pub mod pagemap; pub mod fds;
