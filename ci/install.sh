#!/usr/bin/env bash
# Install dmtcp-rs under PREFIX: the commands in bin/, libdmtcp.so, mtcp_restart and the modify-env
# plugin in lib/dmtcp/, dmtcp.h in include/, and, when a 32-bit x86 build exists, its support files
# in lib/dmtcp/32/. The `$LIB` links let
# dmtcp_launch set one LD_PRELOAD that ld.so resolves for 64-bit and 32-bit programs alike
# (`$LIB` is lib/x86_64-linux-gnu or lib64 for 64-bit glibc, lib32 or lib/i386-linux-gnu for
# 32-bit), so programs that exec across ELF classes stay checkpointed.
#
# Usage: ci/install.sh PREFIX [NATIVE_DIR [LIB32_DIR]]
#   NATIVE_DIR defaults to target/release, LIB32_DIR to target/i686-unknown-linux-gnu/release;
#   build them first (cargo build --workspace --release [--target i686-unknown-linux-gnu]).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=${1:?usage: ci/install.sh PREFIX [NATIVE_DIR [LIB32_DIR]]}
native=${2:-$root/target/release}
lib32=${3:-$root/target/i686-unknown-linux-gnu/release}

support=(libdmtcp.so mtcp_restart libdmtcp_modify_env.so)
for f in dmtcp_launch dmtcp_restart dmtcp_command dmtcp_coordinator dmtcp_inspect "${support[@]}"; do
  [ -f "$native/$f" ] || { echo "ci/install.sh: $native/$f is missing: build first" >&2; exit 1; }
done
install -d "$prefix/bin" "$prefix/lib/dmtcp" "$prefix/include"
install -m 755 "$native"/dmtcp_{launch,restart,command,coordinator,inspect} "$prefix/bin/"
install -m 755 "${support[@]/#/$native/}" "$prefix/lib/dmtcp/"
install -m 644 "$root/include/dmtcp.h" "$prefix/include/"
ln -sfn . "$prefix/lib/dmtcp/lib64"
install -d "$prefix/lib/dmtcp/lib"
ln -sfn ../../dmtcp "$prefix/lib/dmtcp/lib/x86_64-linux-gnu"
ln -sfn ../../dmtcp "$prefix/lib/dmtcp/lib/aarch64-linux-gnu"
if [ -f "$lib32/libdmtcp.so" ] && [ -f "$lib32/mtcp_restart" ] && [ -f "$lib32/libdmtcp_modify_env.so" ]; then
  install -d "$prefix/lib/dmtcp/32"
  install -m 755 "${support[@]/#/$lib32/}" "$prefix/lib/dmtcp/32/"
  ln -sfn 32 "$prefix/lib/dmtcp/lib32"
  ln -sfn ../32 "$prefix/lib/dmtcp/lib/i386-linux-gnu"
  echo "ci/install.sh: installed into $prefix (with 32-bit support)"
else
  echo "ci/install.sh: installed into $prefix (no 32-bit build in $lib32)"
fi
