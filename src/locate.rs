//! Finding our own installed pieces: libdmtcp.so, the restart loader and the sibling commands,
//! for the CPU of the program or image at hand.
//!
//! Layout: the commands in `<prefix>/bin`; `libdmtcp.so` and `mtcp_restart` for the commands' own
//! CPU in `<prefix>/lib/dmtcp`, and those for 32-bit x86 programs (on x86_64) in
//! `<prefix>/lib/dmtcp/32` (ci/install.sh makes it). A cargo build keeps the native ones beside
//! the commands in `target/<profile>`; both layouts are searched.

use dmtcp_layout::Cpu;
use std::path::{Path, PathBuf};

/// Directory holding the running command.
pub fn exe_dir() -> PathBuf {
    std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_else(|| PathBuf::from("."))
}

/// Find `name` beside the running command, then in ../lib/dmtcp.
pub fn find_sibling(name: &str) -> Option<PathBuf> {
    let dir = exe_dir();
    let candidates = [dir.join(name), dir.join("../lib/dmtcp").join(name)];
    candidates.into_iter().find(|p| p.exists())
}

/// The CPU an ELF executable is built for, from its header; None for scripts and other files
/// (they run through an interpreter of the native CPU).
pub fn elf_cpu(path: &Path) -> Option<Cpu> {
    use std::io::Read;
    let mut h = [0u8; 20];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut h)).ok()?;
    if h[..4] != *b"\x7fELF" {
        return None;
    }
    // e_machine: EM_386, EM_ARM, EM_X86_64, EM_AARCH64 (little-endian on all four).
    match (h[4], u16::from_le_bytes([h[18], h[19]])) {
        (1, 3) => Some(Cpu::X86),
        (1, 40) => Some(Cpu::Arm),
        (2, 62) => Some(Cpu::X86_64),
        (2, 183) => Some(Cpu::Aarch64),
        _ => None,
    }
}

/// The directory with libdmtcp.so and mtcp_restart for programs of `cpu`.
pub fn support_dir_for(cpu: Cpu) -> Result<PathBuf, String> {
    let native = find_sibling("libdmtcp.so")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .ok_or_else(|| format!("libdmtcp.so not found beside {} or in ../lib/dmtcp", exe_dir().display()))?;
    if cpu == dmtcp_arch::CPU {
        return Ok(native);
    }
    if cpu == Cpu::X86 && dmtcp_arch::CPU == Cpu::X86_64 {
        let dir = native.join("32");
        if dir.join("libdmtcp.so").exists() && dir.join("mtcp_restart").exists() {
            return Ok(dir);
        }
        return Err(format!("32-bit support is not installed ({} has no libdmtcp.so and mtcp_restart; see ci/install.sh)", dir.display()));
    }
    Err(format!("{} programs cannot run under this {} build", cpu.name(), dmtcp_arch::CPU.name()))
}

/// The LD_PRELOAD value for a program of `cpu`. Where the install has the `$LIB` links that
/// ci/install.sh makes, the value names both ELF classes at once (ld.so expands `$LIB` per
/// class), so a 64-bit program that execs a 32-bit one, or the reverse, stays checkpointed.
pub fn preload_value_for(cpu: Cpu) -> Result<String, String> {
    let dir = support_dir_for(cpu)?;
    let native = support_dir_for(dmtcp_arch::CPU)?;
    if native.join("lib32/libdmtcp.so").exists() && native.join("lib/x86_64-linux-gnu/libdmtcp.so").exists() {
        return Ok(format!("{}/$LIB/libdmtcp.so", native.display()));
    }
    Ok(dir.join("libdmtcp.so").display().to_string())
}

/// The static restart loader for images of `cpu`.
pub fn restart_loader_for(cpu: Cpu) -> Result<PathBuf, String> {
    Ok(support_dir_for(cpu)?.join("mtcp_restart"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_of_elf_files() {
        let exe = std::env::current_exe().unwrap();
        assert_eq!(elf_cpu(&exe), Some(dmtcp_arch::CPU));
        let script = std::env::temp_dir().join(format!("dmtcp-locate-{}", std::process::id()));
        std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
        assert_eq!(elf_cpu(&script), None);
        std::fs::remove_file(&script).unwrap();
    }
}
