// The loader is a static, position-independent, libc-free executable: it relocates itself
// (src/reloc.rs), so it can run wherever the kernel maps it and move out of the image's way.
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--no-dynamic-linker", "-Wl,-z,norelro", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    // On ARM, rustc's first object (symbols.o) carries no EABI version, which GNU ld then
    // refuses to merge with the EABI 5 objects that follow.
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("arm") {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-mismatch");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
