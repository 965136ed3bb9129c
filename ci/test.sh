#!/usr/bin/env bash
# The test command: format, lints, build everything (the commands, libdmtcp.so and mtcp_restart
# must sit side by side in the target directory before the end-to-end tests run), then every test.
# Exits non-zero on the first failure. Runs from any directory; honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace"
cargo build --workspace

step "cargo test --workspace"
cargo test --workspace --no-fail-fast

# The other CPUs, where their toolchains are installed (ci/setup-cross.sh; .ci/run does it).
cross=()
command -v i686-linux-gnu-gcc >/dev/null && [ -e /lib/ld-linux.so.2 ] && cross+=(i686-unknown-linux-gnu)
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v aarch64-linux-gnu-gcc >/dev/null && cross+=(aarch64-unknown-linux-gnu)
[ -e /proc/sys/fs/binfmt_misc/qemu-arm ] && command -v arm-linux-gnueabihf-gcc >/dev/null && cross+=(armv7-unknown-linux-gnueabihf)
if [ "${#cross[@]}" -gt 0 ]; then
  step "other CPUs: ${cross[*]}"
  ci/cross.sh "${cross[@]}"
else
  printf '\n==> other CPUs skipped: run ci/setup-cross.sh (as root) to install their toolchains and qemu-user\n'
fi

# The real-kernel tier: Debian kernels under qemu-system (TCG), where its packages are installed.
if [ "$(command -v qemu-system-aarch64 qemu-system-arm qemu-system-x86_64 aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc | wc -l)" = 5 ]; then
  step "qemu-system tier (real Debian kernels under TCG)"
  ci/qemu-system.sh
else
  printf '\n==> qemu-system tier skipped: needs qemu-system-arm, qemu-system-x86 (bookworm-backports) and the cross gcc; run ci/setup-cross.sh as root\n'
fi

printf '\nci/test.sh: all checks passed\n'
