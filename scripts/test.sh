#!/usr/bin/env bash
# Runs every test, from a fresh Debian 12 machine: installs what is missing (apt-get, cargo),
# checks formatting and lints, then runs all tiers with nextest (each test under a hard timeout;
# guest tests one at a time). Usage: scripts/test.sh [extra nextest args]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_deps

step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "format and lint (budget 3 min)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build (budget 5 min)"
cargo build --workspace --all-targets --quiet

# Tiers, with budgets that keep the whole run under 45 minutes on 2 cores:
#   unit + protocol (real daemon over its socket) ... 5 min
#   guest (real Linux guests under QEMU/TCG) ........ 20 min
# The operator's files (well under 1 min each, plus the package's release build, ~4 min on
# 2 busy cores): alert rules and their tests (promtool), Kubernetes manifests (schemas), and
# the Debian package built, installed, checked and purged.
step "monitoring rules, Kubernetes manifests, Debian package (budget 8 min)"
scripts/check-monitoring.sh
scripts/check-kubernetes.sh
scripts/check-package.sh

step "all tests"
cargo nextest run --workspace --no-fail-fast "$@"

# The request path under libFuzzer (cargo-fuzz needs nightly features: RUSTC_BOOTSTRAP on
# this stable toolchain). Bounded here; run longer by hand with a larger -max_total_time.
step "fuzz the request path for 60 s (budget 5 min)"
RUSTC_BOOTSTRAP=1 cargo fuzz run request --fuzz-dir fuzz -- -max_total_time=60 -rss_limit_mb=4096
