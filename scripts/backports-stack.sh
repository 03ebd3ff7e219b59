#!/usr/bin/env bash
# The second guest stack: bookworm-backports' QEMU and Linux cloud kernel, unpacked into a cache
# folder beside the system's QEMU 7.2 (nothing is installed into the system).
#
# Sourced by scripts/deps.sh (install_backports_stack), or run directly:
#   scripts/backports-stack.sh            install or refresh, then print the stack file
#
# The versions are never pinned: the kernel is whatever linux-image-cloud-amd64 in
# bookworm-backports depends on today (backports drops old versions). The result is described
# in $VUFS_STACKS_DIR/backports/stack.env (KEY=VALUE lines), which the guest harness reads
# (tests/guest/src/stack.rs). Default folder: /var/cache/vufs-stacks as root, else
# ~/.cache/vufs-stacks. Any failure is loud: without the stack the backports guest tests fail.

backports_stack_dir() {
  if [ -n "${VUFS_STACKS_DIR:-}" ]; then
    echo "$VUFS_STACKS_DIR/backports"
  elif [ "$(id -u)" = 0 ]; then
    echo /var/cache/vufs-stacks/backports
  else
    echo "${XDG_CACHE_HOME:-$HOME/.cache}/vufs-stacks/backports"
  fi
}

# The QEMU packages unpacked from backports (seabios: QEMU 10 wants a newer one than Debian 12's).
BACKPORTS_QEMU_PACKAGES=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

install_backports_stack() (
  set -euo pipefail
  local dir suite=bookworm-backports
  dir=$(backports_stack_dir)
  mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/debs"
  local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || { echo "backports stack: $keyring missing (package debian-archive-keyring)" >&2; exit 1; }
  cat >"$dir/apt/backports.sources" <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: $keyring
EOF
  local apt=(-o "Dir::Etc::SourceList=$dir/apt/backports.sources" -o Dir::Etc::SourceParts=-
    -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache"
    -o APT::Sandbox::User=root)
  if ! apt-get -qq "${apt[@]}" update; then
    if [ -f "$dir/stack.env" ]; then
      echo "WARNING: backports stack: apt-get update failed; keeping the installed stack:" >&2
      cat "$dir/stack.env" >&2
      exit 0
    fi
    echo "backports stack: apt-get update of $suite failed and no stack is installed in $dir" >&2
    exit 1
  fi
  # Candidate versions in the backports suite (the private lists hold nothing else).
  bp_version() {
    apt-cache "${apt[@]}" show "$1" 2>/dev/null | awk -v s="~bpo" '/^Version:/ && index($2, s) {print $2; exit}'
  }
  local meta_ver kpkg kver
  meta_ver=$(bp_version linux-image-cloud-amd64)
  [ -n "$meta_ver" ] || { echo "backports stack: no linux-image-cloud-amd64 in $suite" >&2; exit 1; }
  kpkg=$(apt-cache "${apt[@]}" show "linux-image-cloud-amd64=$meta_ver" |
    awk '/^Depends:/ {for (i = 2; i <= NF; i++) if ($i ~ /^linux-image-[0-9]/) {print $i; exit}}')
  [ -n "$kpkg" ] || { echo "backports stack: cannot resolve the kernel package of linux-image-cloud-amd64 $meta_ver" >&2; exit 1; }
  kver=$(bp_version "$kpkg")
  local want=("$kpkg=$kver") p v
  for p in "${BACKPORTS_QEMU_PACKAGES[@]}"; do
    v=$(bp_version "$p")
    [ -n "$v" ] || { echo "backports stack: no $p in $suite" >&2; exit 1; }
    want+=("$p=$v")
  done
  local stamp="${want[*]}"
  if [ -f "$dir/stack.env" ] && grep -qxF "PACKAGES='$stamp'" "$dir/stack.env"; then
    return 0
  fi
  echo "backports stack: unpacking ${want[*]} into $dir"
  rm -rf "$dir/debs" "$dir/root.new"
  mkdir -p "$dir/debs" "$dir/root.new"
  (cd "$dir/debs" && apt-get -qq "${apt[@]}" download "${want[@]}")
  local deb
  for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$dir/root.new"; done
  local root="$dir/root" new="$dir/root.new"
  local release=${kpkg#linux-image-}
  local qemu="$new/usr/bin/qemu-system-x86_64" kernel="$new/boot/vmlinuz-$release"
  [ -x "$qemu" ] || { echo "backports stack: $qemu missing after unpacking" >&2; exit 1; }
  [ -f "$kernel" ] || { echo "backports stack: $kernel missing after unpacking" >&2; exit 1; }
  if ldd "$qemu" | grep -q "not found"; then
    echo "backports stack: $qemu needs libraries this machine lacks:" >&2
    ldd "$qemu" | grep "not found" >&2
    exit 1
  fi
  local qv
  qv=$("$qemu" --version | head -n1)
  rm -rf "$root"
  mv "$new" "$root"
  cat >"$dir/stack.env.new" <<EOF
# Written by scripts/backports-stack.sh; read by tests/guest/src/stack.rs.
PACKAGES='$stamp'
QEMU='$root/usr/bin/qemu-system-x86_64'
QEMU_VERSION='$qv'
QEMU_DATA_DIRS='$root/usr/share/qemu:$root/usr/share/seabios'
KERNEL='$root/boot/vmlinuz-$release'
KERNEL_VERSION='$release'
KERNEL_MODULES='$root/lib/modules/$release'
EOF
  mv "$dir/stack.env.new" "$dir/stack.env"
  echo "backports stack: $qv, kernel $release ($dir/stack.env)"
)

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  install_backports_stack
  cat "$(backports_stack_dir)/stack.env"
fi
