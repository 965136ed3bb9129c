#!/usr/bin/env bash
# Cross-build everything for the other CPUs and run the end-to-end suite on each:
#   i686     natively (this x86_64 kernel runs 32-bit programs),
#   armv7    under qemu-user through binfmt_misc,
#   aarch64  under qemu-user through binfmt_misc.
# Needs the cross gcc packages, libc6-i386, qemu-user-static and registered binfmt handlers
# (.ci/run installs and registers them). Usage: ci/cross.sh [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests. Under qemu-user (armv7, aarch64) e2e_growth is left out: qemu does not
# emulate PR_SET_MM_MAP, so a restored program break cannot be put back and the fixture's exact
# sbrk check cannot hold there (malloc still works through the __curbrk fallback); it runs on
# x86_64 and i686, and belongs to the qemu-system tier for the ARM CPUs.
E2E=(--test e2e_roundtrip --test e2e_threads --test e2e_files --test e2e_lifecycle --test e2e_bad_input --test inspect_cli --test e2e_fork --test e2e_api --test e2e_plugins --test e2e_pids)

run_target() {
  local target=$1 cc=$2 prefix=${3:-}
  printf '\n==> %s: clippy and build\n' "$target"
  cargo clippy --workspace --all-targets --target "$target" -- -D warnings
  cargo build --workspace --target "$target"
  printf '\n==> %s: unit tests (arch, engine, layout)\n' "$target"
  CC=$cc cargo test --target "$target" -p dmtcp-arch -p dmtcp-layout -p dmtcp-engine
  printf '\n==> %s: end-to-end tests\n' "$target"
  if [ "$target" = i686-unknown-linux-gnu ] && [ "$(uname -m)" = x86_64 ]; then
    printf '\n==> multilib: the x86_64 commands with 32-bit programs\n'
    cargo build --workspace
    DMTCP_TEST_LIB32_DIR="$PWD/target/i686-unknown-linux-gnu/debug" cargo test -p dmtcp-rs --test e2e_multilib
  fi
  if [ -n "$prefix" ]; then
    # Every program the tests start (our commands, the fixtures) finds its libraries here.
    # qemu-user has no clone3, so every restarted process gets a new pid there: the fork tests
    # run on the pid virtualization. Left out: without PR_SET_MM_MAP a restarted process's
    # /proc/<pid>/environ is unreadable (that test finds the computation's processes by it).
    QEMU_LD_PREFIX=$prefix CC=$cc cargo test --no-fail-fast --target "$target" -p dmtcp-rs "${E2E[@]}" -- \
      --skip kill_and_quit_leave_no_process_of_the_computation
  else
    # Natively also the tests that need a real kernel under them (PR_SET_MM_MAP, ptrace for gdb,
    # NETLINK_SOCK_DIAG for socketpair peers, which qemu-user refuses; /proc/self/timers, which under qemu-user lists the
    # emulator's own timers).
    # bash_in_a_pseudo_terminal_survives and gnu_screen_session_survives run the host's 64-bit
    # bash and screen, which a 32-bit libdmtcp.so cannot follow into (e2e_multilib covers exec
    # across word sizes).
    CC=$cc cargo test --no-fail-fast --target "$target" -p dmtcp-rs "${E2E[@]}" --test e2e_growth --test e2e_restart_options --test e2e_ipc --test e2e_timers \
      -- --skip bash_in_a_pseudo_terminal_survives --skip gnu_screen_session_survives
  fi
}

targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(i686-unknown-linux-gnu aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
for t in "${targets[@]}"; do
  case "$t" in
    i686-unknown-linux-gnu) run_target "$t" i686-linux-gnu-gcc ;;
    aarch64-unknown-linux-gnu) run_target "$t" aarch64-linux-gnu-gcc /usr/aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) run_target "$t" arm-linux-gnueabihf-gcc /usr/arm-linux-gnueabihf ;;
    *) echo "ci/cross.sh: unknown target $t" >&2; exit 2 ;;
  esac
done
printf '\nci/cross.sh: all targets passed\n'
