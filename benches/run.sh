#!/usr/bin/env bash
# Benchmarks: ours vs upstream virtiofsd 1.14.0, on the host (VM-less load generator) and in a
# TCG guest (fio), the limiter's cost, idle RSS, start-up time, a plot of a limited run, queue
# scaling (ours with 1, 2, 4 request queues vs upstream) and a 2-vCPU guest with 1 vs 2 queues.
# Writes benches/RESULTS.md and benches/results/*.json (regenerated on every run; never edit).
#
# Usage: benches/run.sh [--rounds N] [--duration S] [--pools L] [--guest-rounds N] [--no-guest]
#                       [--quick] [--ours-a PATH --ours-b PATH] [--only SECTIONS] [--disk-scratch]
#   --rounds N        host-tier rounds (default 5)
#   --duration S      measured seconds per workload (default 3; plus 0.5 s warm-up)
#   --pools L         thread-pool sizes, comma-separated (default 0,1,4; Kata's default is 1)
#   --ours-a PATH     our daemon binary to use instead of the freshly built one (the "old" build)
#   --ours-b PATH     a second build of ours ("new") alternating with the first in every round:
#                     the report gives new/old median ratios with the per-round min-max
#   --churn-files N   files alive at once per round of the churn workload (default 2000)
#   --guest-rounds N  guest-tier rounds (default: same as --rounds)
#   --guest-runtime S fio seconds per data job in the guest (default 3)
#   --queue-duration S  measured seconds per workload of the queue-scaling tier (default 2)
#   --no-guest        skip the guest tiers (guest, guest-queues)
#   --only SECTIONS   run only these, comma-separated: host, limited, guest, queues, guest-queues, group
#   --quick           CI smoke: 1 round, 1 s, 32 MiB files, pool 0 only, 1 guest round
#   --results DIR     where to write (default benches/results; RESULTS.md goes beside it)
#   --disk-scratch    keep the shared directories on /tmp's filesystem instead of a tmpfs
#                     (see benches/README.md, "Where the shares live")
# Environment: CARGO_TARGET_DIR (default: the workspace's target/), VUFS_BENCH_CACHE (where
# upstream is installed, default ~/.cache/vufs-bench), GUEST_ACCEL (tcg|kvm|auto). The
# guest-queues tier runs on the backports stack (QEMU 10 + Linux 6.12), installed by
# scripts/backports-stack.sh if missing.
# Needs root (upstream's --sandbox=none as root) and 2 cores (daemon on CPU 0, generator on 1).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ROUNDS=5 DURATION=3 GUEST_ROUNDS="" GUEST_RUNTIME=3 GUEST=1 QUICK=0 POOLS_OPT="" OURS_A="" OURS_B=""
CHURN_FILES=2000 QUEUE_DURATION="" ONLY="" DISK_SCRATCH=0
RESULTS=benches/results
while (($#)); do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --guest-rounds) GUEST_ROUNDS=$2; shift 2 ;;
    --pools) POOLS_OPT=$2; shift 2 ;;
    --ours-a) OURS_A=$2; shift 2 ;;
    --ours-b) OURS_B=$2; shift 2 ;;
    --churn-files) CHURN_FILES=$2; shift 2 ;;
    --guest-runtime) GUEST_RUNTIME=$2; shift 2 ;;
    --no-guest) GUEST=0; shift ;;
    --queue-duration) QUEUE_DURATION=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --results) RESULTS=$2; shift 2 ;;
    --disk-scratch) DISK_SCRATCH=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
POOLS=0,1,4 FILE_MIB=256 WARMUP=0.5 LIMITED_S=10 NRFILES=500 GUEST_FILE_MIB=128
if ((QUICK)); then
  ROUNDS=1 DURATION=1 GUEST_ROUNDS=1 GUEST_RUNTIME=1 POOLS=0 FILE_MIB=32 WARMUP=0.2
  LIMITED_S=3 NRFILES=50 GUEST_FILE_MIB=32 CHURN_FILES=500
fi
POOLS=${POOLS_OPT:-$POOLS}
QUEUE_DURATION=${QUEUE_DURATION:-$( ((QUICK)) && echo 1 || echo 2)}
QUEUE_WARMUP=0.3   # the queue tier's share of a full run stays small (about 7 of 45 minutes)
if ((QUICK)); then QUEUE_WARMUP=$WARMUP; fi
for sec in ${ONLY//,/ }; do
  case "$sec" in host|limited|guest|queues|guest-queues|group) ;; *) echo "--only: unknown section $sec" >&2; exit 2 ;; esac
done
# Whether section $1 runs (--only, and --no-guest for the guest tiers).
runs() {
  if ((!GUEST)) && [[ $1 == guest* ]]; then return 1; fi
  [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]
}
for b in "$OURS_A" "$OURS_B"; do
  if [ -n "$b" ] && [ ! -x "$b" ]; then echo "not an executable: $b" >&2; exit 2; fi
done
if [ -n "$OURS_B" ] && [ -z "$OURS_A" ]; then echo "--ours-b needs --ours-a" >&2; exit 2; fi
GUEST_ROUNDS=${GUEST_ROUNDS:-$ROUNDS}
CMDLINE="benches/run.sh --rounds $ROUNDS --duration $DURATION --pools $POOLS --guest-rounds $GUEST_ROUNDS --guest-runtime $GUEST_RUNTIME --churn-files $CHURN_FILES"
if [ -n "$OURS_A" ]; then CMDLINE+=" --ours-a $OURS_A"; fi
if [ -n "$OURS_B" ]; then CMDLINE+=" --ours-b $OURS_B"; fi
CMDLINE+=" --queue-duration $QUEUE_DURATION"
if ((!GUEST)); then CMDLINE+=" --no-guest"; fi
if ((DISK_SCRATCH)); then CMDLINE+=" --disk-scratch"; fi
if [ -n "$ONLY" ]; then CMDLINE+=" --only $ONLY"; fi
if ((QUICK)); then CMDLINE+=" --quick"; fi

log() { printf '\n=== %s (%s)\n' "$*" "$(date +%T)"; }

# --- dependencies -------------------------------------------------------------------------
need_debs=()
for p in libseccomp-dev libcap-ng-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_debs+=("$p")
done
if ((GUEST)); then
  for p in qemu-system-x86 linux-image-cloud-amd64 busybox-static fio cpio; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_debs+=("$p")
  done
fi
if ((${#need_debs[@]})); then
  log "installing Debian packages: ${need_debs[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_debs[@]}"
fi

CACHE=${VUFS_BENCH_CACHE:-$HOME/.cache/vufs-bench}
UPSTREAM=$CACHE/upstream-1.14.0/bin/virtiofsd
if [ ! -x "$UPSTREAM" ]; then
  log "installing upstream virtiofsd 1.14.0 into $CACHE (about 3 minutes, once)"
  cargo install --locked virtiofsd --version 1.14.0 --root "$CACHE/upstream-1.14.0"
fi

log "building release binaries"
cargo build --release --quiet -p virtiofsd -p vufs-loadgen
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OURS=${OURS_A:-$TARGET/release/virtiofsd}
OURS_B_ARGS=()
if [ -n "$OURS_B" ]; then OURS_B_ARGS=(--ours-b "$OURS_B"); fi
LOADGEN=$TARGET/release/vufs-loadgen
BENCH=$TARGET/release/vufs-bench

OUT=$ROOT/$RESULTS
[ "${RESULTS#/}" != "$RESULTS" ] && OUT=$RESULTS
mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT"/host.json "$OUT"/guest.json "$OUT"/limited.json "$OUT"/limited.svg "$OUT"/summary.json \
  "$OUT"/queues.json "$OUT"/guest-queues.json
SCRATCH=$(mktemp -d /tmp/vufs-bench.XXXXXX)
if ((DISK_SCRATCH)); then
  trap 'rm -rf "$SCRATCH"' EXIT
else
  # The shares live on a tmpfs, the same for every daemon and round: an ext4 without a journal
  # (this machine's root) makes a create cost grow with the inodes freed in the last minutes,
  # in bursts that hit both daemons (benches/README.md, "Where the shares live").
  mount -t tmpfs -o size=8G,mode=0755 vufs-bench "$SCRATCH"
  trap 'umount "$SCRATCH"; rm -rf "$SCRATCH"' EXIT
fi

if runs host; then
log "host tier: $ROUNDS rounds x pools $POOLS, $DURATION s per workload"
"$BENCH" host --ours "$OURS" --upstream "$UPSTREAM" --loadgen "$LOADGEN" \
  --rounds "$ROUNDS" --pools "$POOLS" --duration "$DURATION" --warmup "$WARMUP" \
  --file-mib "$FILE_MIB" --churn-files "$CHURN_FILES" "${OURS_B_ARGS[@]}" \
  --out "$OUT" --scratch "$SCRATCH/host"
fi

if runs limited; then
log "limited run for the plot ($LIMITED_S s)"
"$BENCH" limited --ours "$OURS" --loadgen "$LOADGEN" --seconds "$LIMITED_S" \
  --out "$OUT/limited.json" --scratch "$SCRATCH/limited"
"$BENCH" plot --input "$OUT/limited.json" --svg "$OUT/limited.svg"
fi

if runs queues; then
  log "queue scaling: $ROUNDS rounds x pools $POOLS, ours 1/2/4 queues vs upstream, $QUEUE_DURATION s per workload"
  "$BENCH" queues --ours "$OURS" --upstream "$UPSTREAM" --loadgen "$LOADGEN" \
    --rounds "$ROUNDS" --pools "$POOLS" --queues 1,2,4 --duration "$QUEUE_DURATION" \
    --warmup "$QUEUE_WARMUP" --file-mib "$FILE_MIB" --out "$OUT" --scratch "$SCRATCH/queues"
fi

if runs guest-queues; then
  . scripts/backports-stack.sh
  if [ ! -f "$(backports_stack_dir)/stack.env" ]; then
    log "installing the backports guest stack (QEMU 10 + Linux 6.12)"
    install_backports_stack
  fi
  log "guest queues: $GUEST_ROUNDS rounds, 2 vCPUs, fio numjobs=2, 1 vs 2 request queues"
  "$BENCH" guest-queues --ours "$OURS" --rounds "$GUEST_ROUNDS" --pool 0 \
    --runtime "$GUEST_RUNTIME" --file-mib "$GUEST_FILE_MIB" --out "$OUT" --scratch "$SCRATCH/guest-queues"
fi

if runs guest; then
  log "guest tier: $GUEST_ROUNDS rounds (fio in a guest; slow)"
  "$BENCH" guest --ours "$OURS" "${OURS_B_ARGS[@]}" --upstream "$UPSTREAM" --rounds "$GUEST_ROUNDS" --pools "$POOLS" \
    --runtime "$GUEST_RUNTIME" --nrfiles "$NRFILES" --file-mib "$GUEST_FILE_MIB" \
    --out "$OUT" --scratch "$SCRATCH/guest"
fi

if runs group; then
  log "node group: three members, weights 1:1:2, against the group's rate"
  "$TARGET/release/vufs-group-bench" --daemon "$OURS" --out "$OUT/group"
fi

log "report"
"$BENCH" report --results "$OUT" --md "$(dirname "$OUT")/RESULTS.md" --command "$CMDLINE"
echo "wrote $(dirname "$OUT")/RESULTS.md"
