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

printf '\nci/test.sh: all checks passed\n'
