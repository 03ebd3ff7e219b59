#!/usr/bin/env bash
# Deterministic per-request costs of a daemon (CPU load does not change them): instructions
# per request of the thread that serves the requests (valgrind callgrind), heap allocations
# and bytes per request (valgrind dhat), and the peak RSS split into anonymous, file-backed
# and shared pages (no valgrind). Thread pool 0 (default): the vring thread serves every
# request. POOL=N runs the daemon with --thread-pool-size=N; the instructions of all the
# daemon's threads per request (vring thread, workers, the rest) are printed too, which is
# the number to compare at pools 1 and 4 (the hand-off to the workers is in it).
#
# Usage: benches/profile.sh DAEMON_BIN [WORKLOAD [SECONDS]]     (WORKLOAD: meta, rand-read, ...)
#   e.g. benches/profile.sh target/release/virtiofsd rand-read 2
#        benches/profile.sh ~/.cache/vufs-bench/upstream-1.14.0/bin/virtiofsd rand-read 2
# Environment: DAEMON_ARGS (extra daemon arguments), POOL (thread pool size, default 0). Needs valgrind, root, and `cargo build --release -p vufs-loadgen`. Daemon arguments:
# --sandbox=none --cache=auto --thread-pool-size=0 --seccomp=none (valgrind's own system
# calls are outside any allowlist).
set -euo pipefail
BIN=$(realpath "$1") WL=${2:-meta} SECS=${3:-2}
cd "$(dirname "$0")/.."
LOADGEN=${CARGO_TARGET_DIR:-$PWD/target}/release/vufs-loadgen
[ -x "$LOADGEN" ] || { echo "build vufs-loadgen first: cargo build --release -p vufs-loadgen" >&2; exit 2; }
S=$(mktemp -d /tmp/vufs-profile.XXXXXX)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/share"
"$LOADGEN" --prepare-only --shared-dir "$S/share" --file-mib 64
ARGS=(--shared-dir="$S/share" --sandbox=none --cache=auto --thread-pool-size="${POOL:-0}" --seccomp=none)
# Extra daemon arguments, e.g. DAEMON_ARGS="--fs-bw-size=100G --fs-ops-size=100M" for the
# limiter's cost when it does not bind.
read -r -a EXTRA <<<"${DAEMON_ARGS:-}"
ARGS+=("${EXTRA[@]}")

# run TOOL_PREFIX... : start the daemon under the prefix, run the workload, print ops.
run() {
  rm -f "$S/sock"
  "$@" "$BIN" --socket-path="$S/sock" "${ARGS[@]}" 2>"$S/daemon.log" &
  local pid=$!
  for _ in $(seq 400); do [ -S "$S/sock" ] && break; sleep 0.05; done
  "$LOADGEN" --socket "$S/sock" --shared-dir "$S/share" --workloads "$WL" --duration "$SECS" \
    --warmup 0 --file-mib 64 --churn-files 1000 --json --output "$S/report.json" >/dev/null
  wait "$pid"
  python3 -c "import json,sys; print(sum(w['ops'] for w in json.load(open(sys.argv[1]))['results']))" "$S/report.json"
}

# Two runs of each tool, SECS and 3*SECS: the difference cancels start-up and INIT.
declare -a OPS IR ALL AL BY
for k in 1 2; do
  secs=$SECS; [ $k = 2 ] && SECS=$((secs * 3))
  OPS[$k]=$(run valgrind -q --tool=callgrind --separate-threads=yes --callgrind-out-file="$S/cg")
  IR[$k]=$(for f in "$S"/cg-*; do awk '/^(summary|totals):/{print $2; exit}' "$f"; done | sort -n | tail -1)
  ALL[$k]=$(for f in "$S"/cg-*; do awk '/^(summary|totals):/{print $2; exit}' "$f"; done | awk '{s+=$1}END{print s}')
  rm -f "$S"/cg-*
  SECS=$secs
done
d=$((OPS[2] - OPS[1]))
((d > 0)) || { echo "no more requests in the longer run (machine too busy?): rerun" >&2; exit 1; }
echo "instructions per request (busiest thread): $(((IR[2] - IR[1]) / d))  (runs of ${OPS[1]} and ${OPS[2]} requests)"
echo "instructions per request (all threads, pool ${POOL:-0}): $(((ALL[2] - ALL[1]) / d))"
for k in 1 2; do
  secs=$SECS; [ $k = 2 ] && SECS=$((secs * 3))
  OPS[$k]=$(run valgrind -q --tool=dhat --dhat-out-file="$S/dhat")
  read -r AL[$k] BY[$k] < <(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sum(p['tbk'] for p in d['pps']), sum(p['tb'] for p in d['pps']))" "$S/dhat")
  SECS=$secs
done
d=$((OPS[2] - OPS[1]))
((d > 0)) || { echo "no more requests in the longer run (machine too busy?): rerun" >&2; exit 1; }
python3 -c "print('heap allocations per request: %.2f, bytes per request: %.0f' % ((${AL[2]}-${AL[1]})/$d, (${BY[2]}-${BY[1]})/$d))"

# Peak RSS, sampled every 50 ms, split by kind (anonymous pages are the daemon's own).
rm -f "$S/sock"
"$BIN" --socket-path="$S/sock" "${ARGS[@]}" 2>"$S/daemon.log" &
pid=$!
for _ in $(seq 100); do [ -S "$S/sock" ] && break; sleep 0.05; done
"$LOADGEN" --socket "$S/sock" --shared-dir "$S/share" --workloads "$WL" --duration "$SECS" \
  --warmup 0 --file-mib 64 --churn-files 1000 --json >/dev/null &
lg=$!
ma=0 mf=0 ms=0 hwm=0
while kill -0 "$lg" 2>/dev/null; do
  read -r a f s h < <(awk '/RssAnon/{a=$2}/RssFile/{f=$2}/RssShmem/{s=$2}/VmHWM/{h=$2}END{print a+0,f+0,s+0,h+0}' "/proc/$pid/status" 2>/dev/null || echo 0 0 0 0)
  ((a > ma)) && ma=$a; ((f > mf)) && mf=$f; ((s > ms)) && ms=$s; ((h > hwm)) && hwm=$h
  sleep 0.05
done
wait "$lg" || true; wait "$pid" || true
echo "peak KiB: VmHWM $hwm, RssAnon $ma, RssFile $mf, RssShmem $ms (guest memory the frontend shares)"
