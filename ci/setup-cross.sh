#!/usr/bin/env bash
# Install what building and testing the other CPUs needs on Debian 12 (run as root):
# rustup targets, Debian's cross gcc, 32-bit libc for native i686 runs, qemu-user from
# bookworm-backports, and binfmt_misc handlers so armv7/aarch64 programs run transparently.
# See ../shared/reference/multiarch-notes.md for why each piece is what it is.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

rustup target add i686-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu </dev/null

if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
apt-get update -q </dev/null
apt-get install -y -q --no-install-recommends \
  gcc-i686-linux-gnu gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu libc6-dev-i386-cross \
  libc6-dev-armhf-cross libc6-dev-arm64-cross libc6-i386 lib32gcc-s1 </dev/null
# The machine may carry qemu-utils from backports, which blocks Debian 12's own qemu packages.
# qemu-system-* and cpio are for the real-kernel tier (ci/qemu-system.sh).
apt-get install -y -q --no-install-recommends -t bookworm-backports qemu-user-static qemu-system-arm qemu-system-x86 cpio </dev/null

# PID 1 is not systemd here: mount binfmt_misc and register the handlers by hand.
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
for cpu in aarch64 arm; do
  [ -e "/proc/sys/fs/binfmt_misc/qemu-$cpu" ] && continue
  conf=/usr/lib/binfmt.d/qemu-$cpu.conf
  [ -f "$conf" ] || { echo "ci/setup-cross.sh: $conf missing" >&2; exit 1; }
  grep -v '^#' "$conf" > /proc/sys/fs/binfmt_misc/register
done
echo "ci/setup-cross.sh: cross toolchains, qemu-user and binfmt handlers ready"
