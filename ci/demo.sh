#!/usr/bin/env bash
# Demo: build, launch a sample program under DMTCP, checkpoint it, kill it, restart it from the
# image, and watch it continue where it was checkpointed.
#   ci/demo.sh            (debug build; set PROFILE=release for an optimized one)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

profile=${PROFILE:-debug}
if [ "$profile" = release ]; then
  cargo build --workspace --release
else
  cargo build --workspace
fi
bin=${CARGO_TARGET_DIR:-$root/target}/$profile

work=$(mktemp -d "${TMPDIR:-/tmp}/dmtcp-demo.XXXXXX")
coord_pid=
app_pid=
cleanup() {
  [ -n "$app_pid" ] && kill -9 "$app_pid" 2>/dev/null || true
  [ -n "$coord_pid" ] && kill "$coord_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "==> compiling the sample program (tests/fixtures/counter.c: prints 1..N, 50 ms apart)"
cc -O1 -g -pthread -o "$work/counter" "$root/tests/fixtures/counter.c"

unset DMTCP_COORD_HOST DMTCP_COORD_PORT DMTCP_CHECKPOINT_DIR DMTCP_GZIP LD_PRELOAD
echo "==> starting a coordinator on a free port"
"$bin/dmtcp_coordinator" --port 0 --port-file "$work/port" --exit-on-last --timeout 300 -q \
  </dev/null >"$work/coordinator.log" 2>&1 &
coord_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
port=$(cat "$work/port")
echo "    coordinator pid $coord_pid, port $port"

cd "$work"
echo "==> dmtcp_launch ./counter 60"
"$bin/dmtcp_launch" --coord-port "$port" ./counter 60 >"$work/before.log" 2>&1 &
app_pid=$!
while [ "$(wc -l <"$work/before.log")" -lt 20 ]; do sleep 0.1; done

echo "==> dmtcp_command --bcheckpoint"
"$bin/dmtcp_command" -p "$port" --bcheckpoint
ls -l "$work"/ckpt_counter_*.dmtcp "$work"/dmtcp_restart_script.sh

echo "==> kill -9 $app_pid"
kill -9 "$app_pid"
wait "$app_pid" 2>/dev/null || true
app_pid=

echo "==> output before the kill:"
tr '\n' ' ' <"$work/before.log"; echo

echo "==> dmtcp_restart ckpt_counter_*.dmtcp"
"$bin/dmtcp_restart" --coord-port "$port" "$work"/ckpt_counter_*.dmtcp >"$work/after.log"
echo "==> output after the restart (it resumes at the checkpoint, then runs to 60):"
tr '\n' ' ' <"$work/after.log"; echo

expected=$(seq 1 60 | tr '\n' ' ')
last_after=$(tail -n 1 "$work/after.log")
first_after=$(head -n 1 "$work/after.log")
if [ "$last_after" = 60 ] && [ "$(sed -n "$((first_after - 1))p" "$work/before.log")" = "$((first_after - 1))" ]; then
  echo "==> OK: the restarted program continued from line $first_after to 60 (uninterrupted: $expected)"
else
  echo "==> FAILED: the restarted output does not continue the first run" >&2
  exit 1
fi
