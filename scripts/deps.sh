# Sourced by the scripts: installs the Debian packages and cargo tools the project needs,
# only when something is missing, and the second guest stack (bookworm-backports' QEMU and
# kernel, unpacked into a cache folder: scripts/backports-stack.sh).
source "$(dirname "${BASH_SOURCE[0]}")/backports-stack.sh"
DEB_PACKAGES=(qemu-system-x86 linux-image-cloud-amd64 busybox-static fio cpio libseccomp-dev libcap-ng-dev pkg-config
    prometheus # prometheus: promtool, which the metrics test runs on a live scrape
    # scripts/check-package.sh: the unit's verifier, deb-systemd-helper, man -w, curl;
    # scripts/check-kubernetes.sh: a venv for PyPI's kubernetes-validate.
    systemd init-system-helpers man-db curl python3-venv)

install_deps() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  install_backports_stack
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
  if ! cargo deb --version >/dev/null 2>&1; then
    echo "installing cargo-deb"
    cargo install --locked cargo-deb
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
  fi
}
