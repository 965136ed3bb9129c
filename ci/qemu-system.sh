#!/usr/bin/env bash
# The qemu-system tier: boot a real Debian 12 kernel per CPU under qemu-system (TCG) with an
# initramfs holding busybox, the target's glibc, our commands and the C fixtures, and run
# tests/qemu-system/guest.sh inside: counter, threads, growth (exact sbrk contiguity after
# restart: needs PR_SET_MM_MAP, which qemu-user lacks) and restart-of-restart round trips, plus on
# x86_64 a restart of an image checkpointed on this host (another kernel build). The guest prints
# PASS/FAIL/XFAIL lines and a summary to its serial console; this script prints the console and
# fails on any FAIL, a missing summary or a timeout. See tests/qemu-system/README.md.
#
# Usage: ci/qemu-system.sh [aarch64|armv7|x86_64 ...]   (default: all three)
# Needs the cross gcc packages (ci/setup-cross.sh); installs qemu-system-arm/x86 (from
# bookworm-backports), cpio and the like itself when run as root. Kernels and busybox are
# downloaded once with a private apt configuration and cached in $CARGO_TARGET_DIR/qemu-system
# (default target/qemu-system); delete that directory to fetch newer ones.
# Environment: QSYS_TIMEOUT (seconds per guest, default 300), QSYS_CASES (guest cases to run,
# space-separated function suffixes of guest.sh), QSYS_SERIAL=1 (boot guests one at a time),
# QSYS_TRACE=1 (the guest prints each step of a case with its time).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir = /* ]] || target_dir=$repo/$target_dir
cache=$target_dir/qemu-system
guest_timeout=${QSYS_TIMEOUT:-300}
export DEBIAN_FRONTEND=noninteractive
# The caller's DMTCP settings must not leak into the host-side checkpoint (as in tests/common).
unset DMTCP_COORD_HOST DMTCP_COORD_PORT DMTCP_CHECKPOINT_DIR DMTCP_CHECKPOINT_INTERVAL DMTCP_GZIP \
  DMTCP_FAIL_RC DMTCP_TMPDIR LD_PRELOAD

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'ci/qemu-system.sh: %s\n' "$*" >&2; exit 1; }

# Per CPU: rust target, Debian architecture, kernel flavour, C compiler, strip, the glibc
# runtime to copy, its multiarch name, qemu command and machine options, console device; the
# cargo command that builds our binaries and where they land.
cpu_config() {
  case $1 in
    aarch64)
      triple=aarch64-unknown-linux-gnu debarch=arm64 flavour=arm64 cc=aarch64-linux-gnu-gcc
      strip=aarch64-linux-gnu-strip libdir=/usr/aarch64-linux-gnu/lib multiarch=aarch64-linux-gnu
      qemu=(qemu-system-aarch64 -M virt -cpu max) console=ttyAMA0 ;;
    armv7)
      triple=armv7-unknown-linux-gnueabihf debarch=armhf flavour=armmp-lpae cc=arm-linux-gnueabihf-gcc
      strip=arm-linux-gnueabihf-strip libdir=/usr/arm-linux-gnueabihf/lib multiarch=arm-linux-gnueabihf
      qemu=(qemu-system-arm -M virt -cpu cortex-a15) console=ttyAMA0 ;;
    x86_64)
      triple=x86_64-unknown-linux-gnu debarch=amd64 flavour=amd64 cc=x86_64-linux-gnu-gcc
      strip=strip libdir=/lib/x86_64-linux-gnu multiarch=x86_64-linux-gnu
      qemu=(qemu-system-x86_64 -cpu max) console=ttyS0 ;;
    *) die "unknown CPU $1 (aarch64, armv7 or x86_64)" ;;
  esac
  # The host's own CPU is built without --target, into target/debug: ci/test.sh has built it
  # already, so the tier adds no third build there.
  if [ "$triple" = "$(uname -m)-unknown-linux-gnu" ]; then
    build=(cargo build --workspace) bindir=$target_dir/debug
  else
    build=(cargo build --workspace --target "$triple") bindir=$target_dir/$triple/debug
  fi
}

cpus=("$@")
[ "${#cpus[@]}" -gt 0 ] || cpus=(aarch64 armv7 x86_64)
for cpu in "${cpus[@]}"; do cpu_config "$cpu"; done

# --- Host tools ------------------------------------------------------------------------------
# qemu-system comes from bookworm-backports: the machine carries qemu-utils 10 from there, which
# blocks Debian 12's own 7.2 qemu-system packages (ci/setup-cross.sh adds the source).
host_packages() {
  local missing=() p
  for p in qemu-system-arm qemu-system-x86 cpio gzip binutils; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return
  [ "$(id -u)" = 0 ] || die "missing packages ${missing[*]}: install them as root (qemu-system-* from bookworm-backports)"
  grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/ ||
    die "no bookworm-backports apt source: run ci/setup-cross.sh first"
  say "apt-get install ${missing[*]}"
  apt-get update -q </dev/null
  apt-get install -y -q --no-install-recommends -t bookworm-backports "${missing[@]}" </dev/null
}
host_packages
for cpu in "${cpus[@]}"; do
  cpu_config "$cpu"
  command -v "$cc" >/dev/null || die "$cc not found: run ci/setup-cross.sh (as root)"
  command -v "${qemu[0]}" >/dev/null || die "${qemu[0]} not found"
done

# --- Kernels and busybox from Debian ----------------------------------------------------------
# A private apt configuration (APT_CONFIG, read before anything in /etc/apt) that knows the
# foreign architectures for downloads only: `dpkg --add-architecture` is never configured,
# because the system's apt-get update then fails on foreign indexes and multiarch libc mixed
# with the cross sysroots breaks qemu-user runs (multiarch-notes.md).
apt_private() {
  local a=$cache/apt
  mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/parts" "$a/prefs"
  : >"$a/status"
  cat >"$a/sources.list" <<'SRC'
deb [arch=amd64,arm64,armhf signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
SRC
  cat >"$a/apt.conf" <<CONF
Dir::Etc::Main "/dev/null";
Dir::Etc::Parts "$a/parts";
Dir::Etc::SourceList "$a/sources.list";
Dir::Etc::SourceParts "$a/parts";
Dir::Etc::Preferences "/dev/null";
Dir::Etc::PreferencesParts "$a/prefs";
Dir::State::Lists "$a/lists";
Dir::State::status "$a/status";
Dir::Cache "$a/cache";
APT::Architecture "amd64";
APT::Architectures { "amd64"; "arm64"; "armhf"; };
Acquire::Languages "none";
APT::Sandbox::User "root";
CONF
  export APT_CONFIG=$a/apt.conf
}

apt_updated=
fetch_guest_debs() {
  local cpu=$1 dir=$cache/$1 tmp pkg
  [ -s "$dir/vmlinuz" ] && [ -s "$dir/busybox" ] && [ -d "$dir/modules" ] && return
  say "$cpu: download a Debian kernel and busybox-static ($debarch)"
  apt_private
  if [ -z "$apt_updated" ]; then
    apt-get update -q </dev/null
    apt_updated=1
  fi
  # The flavour's metapackage names the current kernel package of the release.
  pkg=$(apt-cache depends "linux-image-$flavour:$debarch" | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
  pkg=${pkg%%:*}
  [ -n "$pkg" ] || die "no kernel package behind linux-image-$flavour:$debarch"
  tmp=$(mktemp -d "$cache/dl.XXXXXX")
  (cd "$tmp" && apt-get download -q "$pkg:$debarch" "busybox-static:$debarch" </dev/null)
  # Of the kernel package /boot (virtio, serial and initramfs support are built in) and the
  # socket-diagnostics modules: without unix_diag the checkpoint cannot tell which socketpair
  # ends belong together (NETLINK_SOCK_DIAG). A module that is built in is simply not there.
  mkdir -p "$tmp/x" "$dir/modules"
  dpkg-deb --fsys-tarfile "$tmp/${pkg}"_*.deb | tar -x -C "$tmp/x" ./boot
  dpkg-deb --fsys-tarfile "$tmp/${pkg}"_*.deb |
    tar -x -C "$tmp/x" --wildcards './lib/modules/*/kernel/net/core/sock_diag.ko*' './lib/modules/*/kernel/net/unix/unix_diag.ko*' 2>/dev/null || true
  find "$tmp/x/lib" -name '*_diag.ko*' -exec cp {} "$dir/modules/" \; 2>/dev/null || true
  for f in "$dir"/modules/*.ko.xz; do [ -e "$f" ] && xz -d -f "$f"; done
  for f in "$dir"/modules/*.ko.zst; do [ -e "$f" ] && zstd -q -d --rm "$f"; done
  dpkg-deb -x "$tmp"/busybox-static_*.deb "$tmp/x"
  cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz"
  cp "$tmp/x/bin/busybox" "$dir/busybox"
  echo "$pkg" >"$dir/kernel-package"
  rm -rf "$tmp"
}

mkdir -p "$cache"
for cpu in "${cpus[@]}"; do
  cpu_config "$cpu"
  fetch_guest_debs "$cpu"
done
unset APT_CONFIG
# The package indexes (about 280 MiB unpacked) are only needed to fetch.
rm -rf "$cache/apt"

# --- Our binaries and the fixtures ------------------------------------------------------------
bins=(dmtcp_launch dmtcp_restart dmtcp_command dmtcp_coordinator dmtcp_inspect libdmtcp.so mtcp_restart)
fixtures=(counter growth threads forker ipc)

# The shared libraries an ELF file needs, found in $libdir, recursively (cross readelf is not
# needed: binutils' readelf reads every architecture).
needed_libs() {
  local todo=("$@") seen=" " f lib
  while [ "${#todo[@]}" -gt 0 ]; do
    f=${todo[0]}
    todo=("${todo[@]:1}")
    for lib in $(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      case $seen in *" $lib "*) continue ;; esac
      seen="$seen$lib "
      [ -e "$libdir/$lib" ] || die "$f needs $lib, not found in $libdir"
      echo "$lib"
      todo+=("$libdir/$lib")
    done
  done
}

# build_initramfs CPU: the root file system of one guest, packed as $cache/CPU/initrd.gz.
build_initramfs() {
  local cpu=$1 root=$cache/$1/root interp f
  rm -rf "$root"
  mkdir -p "$root"/{bin,dev,proc,sys,tmp,etc,lib,usr,dmtcp,tests}
  # One library directory under every name a loader may search.
  ln -s lib "$root/lib64"
  ln -s ../lib "$root/usr/lib"
  ln -s ../bin "$root/usr/bin"
  ln -s bin "$root/sbin"
  ln -s . "$root/lib/$multiarch"
  cp "$cache/$cpu/busybox" "$root/bin/busybox"
  mkdir -p "$root/lib/diag"
  cp "$cache/$cpu"/modules/*.ko "$root/lib/diag/" 2>/dev/null || true
  ln -s busybox "$root/bin/sh"
  install -m 755 tests/qemu-system/init "$root/init"
  install -m 755 tests/qemu-system/guest.sh "$root/tests/guest.sh"
  printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
  printf 'root:x:0:0:root:/:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\n' >"$root/etc/group"
  # Debug builds carry hundreds of MiB of debug info: strip the copies, not the build.
  for f in "${bins[@]}"; do
    [ -e "$bindir/$f" ] || die "$bindir/$f missing after the build"
    "$strip" --strip-debug -o "$root/dmtcp/$f" "$bindir/$f"
  done
  for f in "${fixtures[@]}"; do
    "$cc" -O1 -g -pthread -o "$root/tests/$f" "tests/fixtures/$f.c"
  done
  interp=$(readelf -l "$root/dmtcp/dmtcp_launch" | sed -n 's/.*interpreter: \(.*\)]/\1/p')
  while read -r f; do
    cp -L "$libdir/$f" "$root/lib/$f"
  done < <(needed_libs "$root"/dmtcp/* "$root"/tests/counter "$root"/tests/growth "$root"/tests/threads)
  cp -L "$libdir/${interp##*/}" "$root/lib/${interp##*/}"
  if [ "$cpu" = x86_64 ] && [ "$(uname -m)" = x86_64 ]; then
    xkernel_image "$root"
  fi
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$cache/$cpu/initrd.gz"
}

# Close every descriptor above 2 of the calling (sub)shell.
close_inherited_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    [ "$fd" -le 2 ] || eval "exec $fd>&-"
  done
}

# xkernel_image ROOT: checkpoint the x86_64 counter fixture on this host (this kernel) and put
# the image, with the output before the kill and an uninterrupted run's, into the guest at the
# same absolute path (the image names its executable and checkpoint directory).
# glibc in the checkpointed process must not pick code paths that use features TCG's `-cpu max`
# lacks: AVX-512 and TSX string functions (SIGILL), and XSAVEC, which ld.so's lazy-binding
# trampoline (_dl_runtime_resolve_xsavec) uses on this host: its XRSTOR takes a general
# protection fault in the guest. The guest restarts with --no-strict-checking because the image
# still records the host's CPUID.
xkernel_image() {
  local root=$1 xk port i run plain
  xk=$(mktemp -d /tmp/dmtcp-qsys-xkernel.XXXXXX)
  cp "$root/tests/counter" "$xk/counter"
  (cd "$xk" && ./counter 100 >plain.out) &
  plain=$!
  "$bindir/dmtcp_coordinator" --port 0 --port-file "$xk/port" --daemon --timeout 300 >"$xk/coord.log" 2>&1
  port=
  for ((i = 0; i < 600; i++)); do
    port=$(cat "$xk/port" 2>/dev/null || true)
    [ -z "$port" ] || [ "$port" = 0 ] || break
    sleep 0.1
  done
  case $port in '' | 0) die "cross-kernel: the host coordinator wrote no port" ;; esac
  # Created here, not by the background job's redirection, so that the wait below finds it.
  : >"$xk/before.out"
  # A clean program: no descriptor this script inherited goes into the image (each would be
  # reopened on /dev/null with a warning at restart).
  (cd "$xk" && close_inherited_fds && exec env DMTCP_GZIP=0 GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512CD,-AVX512BW,-AVX512DQ,-AVX512VL,-AVX512ER,-AVX512PF,-RTM,-XSAVEC \
    "$bindir/dmtcp_launch" --coord-port "$port" "$xk/counter" 100 >"$xk/before.out" 2>"$xk/launch.err") &
  run=$!
  for ((i = 0; i < 600; i++)); do
    [ "$(wc -l <"$xk/before.out")" -lt 10 ] || break
    kill -0 "$run" 2>/dev/null || die "cross-kernel: the host run exited early: $(cat "$xk/launch.err")"
    sleep 0.1
  done
  "$bindir/dmtcp_command" -p "$port" -bc >/dev/null || die "cross-kernel: dmtcp_command -bc failed on the host"
  kill -9 "$run" 2>/dev/null || true
  wait "$run" 2>/dev/null || true
  "$bindir/dmtcp_command" -p "$port" -q >/dev/null 2>&1 || true
  wait "$plain"
  compgen -G "$xk/ckpt_counter_*.dmtcp" >/dev/null || die "cross-kernel: no image in $xk: $(ls "$xk")"
  mkdir -p "$root/$xk" "$root/tests/xkernel"
  cp -a "$xk"/. "$root/$xk/"
  echo "$xk" >"$root/tests/xkernel/dir"
  uname -r >"$root/tests/xkernel/kernel"
  rm -rf "$xk"
}

for cpu in "${cpus[@]}"; do
  cpu_config "$cpu"
  say "$cpu: ${build[*]}"
  "${build[@]}"
  say "$cpu: initramfs"
  build_initramfs "$cpu"
done

# --- Boot -------------------------------------------------------------------------------------
# boot CPU: one guest, its console in $cache/CPU/console.log; its exit status is timeout's.
boot() {
  local cpu=$1 t0 rc=0
  cpu_config "$cpu"
  # No network card (the tests use lo only; it also spares x86 the iPXE ROM).
  t0=$(date +%s)
  timeout "$guest_timeout" "${qemu[@]}" -m 1024 -smp 2 -nic none -nographic -no-reboot \
    -kernel "$cache/$cpu/vmlinuz" -initrd "$cache/$cpu/initrd.gz" \
    -append "console=$console rdinit=/init panic=-1 quiet${QSYS_CASES:+ QSYS_CASES=\"$QSYS_CASES\"}${QSYS_TRACE:+ QSYS_TRACE=$QSYS_TRACE}" \
    </dev/null >"$cache/$cpu/console.log" 2>&1 || rc=$?
  echo "$(($(date +%s) - t0))" >"$cache/$cpu/seconds"
  return "$rc"
}

declare -A pid status
for cpu in "${cpus[@]}"; do
  say "$cpu: boot $(cat "$cache/$cpu/kernel-package") under ${QSYS_SERIAL:+serial }TCG"
  if [ -n "${QSYS_SERIAL:-}" ]; then
    status[$cpu]=0
    boot "$cpu" || status[$cpu]=$?
  else
    boot "$cpu" &
    pid[$cpu]=$!
  fi
done
failed=()
for cpu in "${cpus[@]}"; do
  if [ -z "${QSYS_SERIAL:-}" ]; then
    status[$cpu]=0
    wait "${pid[$cpu]}" || status[$cpu]=$?
  fi
  # The console without carriage returns and the firmware's terminal escapes (SeaBIOS).
  log=$cache/$cpu/console.txt
  tr -d '\r' <"$cache/$cpu/console.log" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' >"$log"
  printf '\n==> %s: console (%s s)\n' "$cpu" "$(cat "$cache/$cpu/seconds")"
  cat "$log"
  summary=$(grep -E '^QSYS-SUMMARY ' "$log" || true)
  if [ "${status[$cpu]}" = 124 ]; then
    failed+=("$cpu (timed out after $guest_timeout s)")
  elif [ -z "$summary" ]; then
    failed+=("$cpu (no summary on the console; qemu exit ${status[$cpu]})")
  elif ! grep -q ' fail=0 ' <<<"$summary " || grep -q '^FAIL ' "$log"; then
    failed+=("$cpu ($summary)")
  fi
done

echo
for cpu in "${cpus[@]}"; do
  printf 'ci/qemu-system.sh: %s: %s (%s s)\n' "$cpu" \
    "$(grep -E '^QSYS-SUMMARY ' "$cache/$cpu/console.txt" || echo 'no summary')" "$(cat "$cache/$cpu/seconds")"
done
[ "${#failed[@]}" -eq 0 ] || die "failed: ${failed[*]}"
echo "ci/qemu-system.sh: all guests passed"
