#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine (root, 2 cores are enough):
#   1. installs what is missing (QEMU, the guest kernel, busybox, fio, cargo-nextest);
#   2. builds the daemon (release);
#   3. starts it the way Kata Containers' Go runtime does (the runtime's listening socket passed
#      as fd 3, `--syslog --cache=auto --shared-dir=D --fd=3 --thread-pool-size=1
#      --announce-submounts --xattr`) plus a per-sandbox rate limit
#      `--fs-bw-size=10M --fs-bw-burst=20M`;
#   4. boots a real Linux guest under QEMU (vhost-user-fs-pci, tag kataShared, mounted with
#      -o nodev like Kata), which writes files and runs fio through the share;
#   5. prints what the guest did: the files, fio MB/s, the rate the guest saw against the limit
#      (expected vs measured), and guest md5sums against the host's.
# The guest part takes well under a minute (TCG); the first build takes a few minutes.
# The demo is the test `guest_demo_main_job` in tests/e2e/tests/guest_dropin.rs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust first (https://rustup.rs), then rerun $0" >&2
  exit 1
fi
source scripts/deps.sh
install_deps

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "building the daemon (release)"
cargo build --release --quiet -p virtiofsd --bin virtiofsd
ls -l "${CARGO_TARGET_DIR:-target}/release/virtiofsd"

step "building the guest harness (release)"
cargo nextest run --release -p e2e --test guest_dropin --no-run --cargo-quiet

step "the main job: a Kata-style daemon with a 10 MB/s limit, a real guest on its share"
start=$(date +%s)
cargo nextest run --release -p e2e --test guest_dropin --cargo-quiet --no-capture \
  --status-level fail --final-status-level fail -E 'test(=guest_demo_main_job)'
echo
echo "demo finished in $(( $(date +%s) - start )) s"
