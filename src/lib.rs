//! The DMTCP-compatible commands: dmtcp_launch, dmtcp_restart, dmtcp_command,
//! dmtcp_coordinator and dmtcp_inspect. Each binary in src/bin is a thin main over these modules.

pub mod cli;
pub mod coord_client;
pub mod coordinator;
pub mod inspect;
pub mod locate;
pub mod pid_map;
pub mod proctree;
pub mod restore_fds;
pub mod shared_memory;
pub mod sockets;
pub mod staging;
pub mod sysv;
pub mod unlinked;
