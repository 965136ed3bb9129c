// The loader is a static, position-independent, libc-free executable: it relocates itself
// (src/reloc.rs), so it can run wherever the kernel maps it and move out of the image's way.
fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static-pie", "-Wl,--no-dynamic-linker", "-Wl,-z,norelro", "-Wl,--build-id=none"] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
