#!/usr/bin/env bash
# Builds the Debian package with cargo-deb, installs it with dpkg (purged again on exit, even on
# failure), and checks it as installed: the binaries run, every file it ships (man pages
# included) is owned by this package alone (`dpkg -S`), the systemd unit passes
# `systemd-analyze verify`, the installed exporter serves a /metrics that `promtool check
# metrics` accepts, and the maintainer scripts (deb-systemd-helper) succeed on install,
# reinstall, remove and purge without a running systemd. Usage: scripts/check-package.sh [DEB]
# (DEB given: skip the build and check that file).
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=virtiofs-ratelimit
UNIT=virtiofs-sandbox-metrics.service
VERSION=$(cargo metadata --no-deps --format-version 1 |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="virtiofsd"))')
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
fail() { echo "check-package: FAIL: $*" >&2; exit 1; }

deb=${1:-}
if [ -z "$deb" ]; then
  # The binaries, then the man pages and completions rendered from their clap definitions.
  cargo build --quiet --profile deb -p virtiofsd -p runtime-integration -p vufs-docgen --bins
  rm -rf target/deb/gen
  target/deb/vufs-docgen target/deb/gen
  gzip -9n target/deb/gen/man1/*.1
  rm -f target/debian/${PKG}_*.deb
  cargo deb --no-build -p vufs-docgen --quiet
  deb=$(ls target/debian/${PKG}_*.deb)
fi
echo "package: $deb"

case "$(dpkg-query -W -f='${Status}' $PKG 2>/dev/null || true)" in
  "" | *" not-installed") ;;
  *) fail "$PKG is already on this machine: remove it first (dpkg --purge $PKG)" ;;
esac
scratch=$(mktemp -d)
exporter=""
cleanup() {
  [ -n "$exporter" ] && kill "$exporter" 2>/dev/null || true
  rm -rf "$scratch"
  $sudo dpkg --purge $PKG >/dev/null 2>&1 || true
}
trap cleanup EXIT

running_systemd=no; [ -d /run/systemd/system ] && running_systemd=yes
echo "systemd running: $running_systemd"

$sudo dpkg -i "$deb"
[ "$(dpkg-query -W -f='${Version}' $PKG)" = "$VERSION-1" ] || fail "installed version is not $VERSION-1"

# Every file (not directory) of the package belongs to it alone.
n=0
while read -r f; do
  [ -f "$f" ] || [ -L "$f" ] || continue
  owners=$(dpkg -S "$f" | sed 's/: .*//')
  [ "$owners" = "$PKG" ] || fail "$f is owned by: $owners"
  n=$((n + 1))
done < <(dpkg -L $PKG)
echo "files owned by $PKG alone: $n"

# Man pages: one per command (and per virtiofs-sandbox subcommand), compressed, each naming
# its command, and found by man.
pages=$(dpkg -L $PKG | grep '^/usr/share/man/man1/.*\.1\.gz$' || true)
for cmd in virtiofsd-ratelimit virtiofs-sandbox virtiofs-sandbox-install virtiofs-sandbox-metrics; do
  page=/usr/share/man/man1/$cmd.1.gz
  if [ "$cmd" = virtiofs-sandbox-install ] && ! /usr/bin/virtiofs-sandbox install --help >/dev/null 2>&1; then
    continue # the install subcommand is not in this build yet
  fi
  grep -qx "$page" <<<"$pages" || fail "no man page $page"
  [ "$(dpkg -S "$page")" = "$PKG: $page" ] || fail "dpkg -S $page: $(dpkg -S "$page")"
  zcat "$page" | grep -q "^\.TH $cmd " || fail "$page has no .TH $cmd header"
  [ "$(man -w "$cmd")" = "$page" ] || fail "man -w $cmd: $(man -w "$cmd")"
done
echo "man pages: $(wc -l <<<"$pages")"
# Debian's own virtiofsd page is untouched.
if dpkg -S /usr/share/man/man1/virtiofsd.1.gz >/dev/null 2>&1; then
  [ "$(dpkg -S /usr/share/man/man1/virtiofsd.1.gz)" != "$PKG: /usr/share/man/man1/virtiofsd.1.gz" ] ||
    fail "this package took virtiofsd.1.gz"
fi

# The installed binaries run and say who they are.
v=$(/usr/bin/virtiofsd-ratelimit --version) && [ "$v" = "virtiofsd $VERSION" ] || fail "virtiofsd-ratelimit --version: $v"
v=$(/usr/libexec/virtiofs-ratelimit/virtiofsd --version) && [ "$v" = "virtiofsd $VERSION" ] || fail "libexec virtiofsd --version: $v"
[ "$(readlink -f /usr/bin/virtiofs-sandbox)" = /usr/libexec/virtiofs-ratelimit/virtiofs-sandbox ] ||
  fail "virtiofs-sandbox is not beside the daemon (install's default --daemon-source)"
[ "$(readlink -f /usr/bin/virtiofsd-ratelimit)" = /usr/libexec/virtiofs-ratelimit/virtiofsd ] ||
  fail "virtiofsd-ratelimit does not link to the daemon"
v=$(/usr/bin/virtiofs-sandbox --version) && [ "$v" = "virtiofs-sandbox $VERSION" ] || fail "virtiofs-sandbox --version: $v"
/usr/bin/virtiofsd-ratelimit --help | grep -q -- '--fs-bw-size' || fail "virtiofsd-ratelimit --help lists no --fs-bw-size"
/usr/bin/virtiofs-sandbox metrics --help | grep -q -- '--listen' || fail "virtiofs-sandbox metrics --help"
/usr/bin/virtiofsd-ratelimit --print-capabilities | python3 -c 'import json,sys; json.load(sys.stdin)' ||
  fail "--print-capabilities is not JSON"
set +e; /usr/bin/virtiofsd-ratelimit --fs-bw-size=lots >/dev/null 2>&1; rc=$?; set -e
[ $rc = 2 ] || fail "a bad flag exits $rc, not 2"
# Completions load.
bash -c 'source /usr/share/bash-completion/completions/virtiofs-sandbox && complete -p virtiofs-sandbox' >/dev/null ||
  fail "bash completion of virtiofs-sandbox"
bash -c 'source /usr/share/bash-completion/completions/virtiofsd-ratelimit && complete -p virtiofsd-ratelimit' >/dev/null ||
  fail "bash completion of virtiofsd-ratelimit"

# `virtiofs-sandbox install` (when this build has it) finds the packaged daemon by default
# (beside its own binary), puts it at the configured path, and uninstall puts the original back.
if /usr/bin/virtiofs-sandbox install --help >/dev/null 2>&1; then
  k="$scratch/kata"
  mkdir -p "$k/libexec"
  printf '#!/bin/sh\necho upstream\n' >"$k/libexec/virtiofsd"
  chmod 755 "$k/libexec/virtiofsd"
  cp "$k/libexec/virtiofsd" "$scratch/upstream"
  sed "s|^virtio_fs_daemon = .*|virtio_fs_daemon = \"$k/libexec/virtiofsd\"|; s|^valid_virtio_fs_daemon_paths = .*|valid_virtio_fs_daemon_paths = [\"$k/libexec/virtiofsd\"]|" \
    configs/configuration-qemu.toml >"$k/configuration.toml"
  cp "$k/configuration.toml" "$scratch/configuration.orig"
  /usr/bin/virtiofs-sandbox install --config "$k/configuration.toml" >/dev/null ||
    fail "virtiofs-sandbox install with the packaged daemon"
  cmp -s "$k/libexec/virtiofsd" /usr/libexec/virtiofs-ratelimit/virtiofsd ||
    fail "install did not put the packaged daemon at $k/libexec/virtiofsd"
  /usr/bin/virtiofs-sandbox uninstall --config "$k/configuration.toml" >/dev/null || fail "virtiofs-sandbox uninstall"
  cmp -s "$k/libexec/virtiofsd" "$scratch/upstream" || fail "uninstall did not restore the original daemon"
  cmp -s "$k/configuration.toml" "$scratch/configuration.orig" || fail "uninstall did not restore the configuration"
  echo "virtiofs-sandbox install/uninstall with the packaged daemon: OK"
fi

# The installed exporter serves /metrics that promtool accepts.
mkdir -m 0700 "$scratch/state"
/usr/bin/virtiofs-sandbox metrics --listen 127.0.0.1:0 --state-dir "$scratch/state" >"$scratch/listen" 2>/dev/null &
exporter=$!
for _ in $(seq 100); do [ -s "$scratch/listen" ] && break; sleep 0.1; done
addr=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["listen"])' "$scratch/listen")
curl -sf "http://$addr/metrics" >"$scratch/metrics"
said=$(promtool check metrics <"$scratch/metrics" 2>&1) || fail "promtool check metrics: $said"
[ -z "$said" ] || fail "promtool check metrics: $said"
kill "$exporter"; wait "$exporter" 2>/dev/null || true; exporter=""

# The unit, as installed.
unit=$(dpkg -L $PKG | grep "/$UNIT\$") || fail "no $UNIT in the package"
said=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $unit: $said"
[ -z "$said" ] || fail "systemd-analyze verify $unit: $said"
# postinst enabled it through deb-systemd-helper, which needs no running systemd. (Its
# read-only queries too want to be called from a maintainer script: dsh below says so.)
dsh() { DPKG_MAINTSCRIPT_PACKAGE=$PKG deb-systemd-helper "$@"; }
dsh is-enabled $UNIT || fail "$UNIT not enabled by postinst"
dsh debian-installed $UNIT || fail "$UNIT not recorded by deb-systemd-helper"
[ -L /etc/systemd/system/multi-user.target.wants/$UNIT ] || fail "no multi-user.target.wants/$UNIT link"

# Reinstall (prerm upgrade, postinst configure again), then remove and purge.
$sudo dpkg -i "$deb"
dsh is-enabled $UNIT || fail "$UNIT not enabled after reinstall"
$sudo dpkg -r $PKG
[ ! -e /usr/bin/virtiofs-sandbox ] || fail "virtiofs-sandbox still there after dpkg -r"
# As debhelper's: removal masks the unit (its enablement stays until purge).
[ "$(readlink /etc/systemd/system/$UNIT)" = /dev/null ] || fail "$UNIT not masked after dpkg -r"
[ -f /etc/default/virtiofs-sandbox-metrics ] || fail "conffile removed by dpkg -r"
$sudo dpkg --purge $PKG
[ ! -e /etc/systemd/system/$UNIT ] || fail "mask left after purge"
[ ! -L /etc/systemd/system/multi-user.target.wants/$UNIT ] || fail "wants link left after purge"
[ ! -e /etc/default/virtiofs-sandbox-metrics ] || fail "conffile left after purge"
! ls /var/lib/systemd/deb-systemd-helper-enabled/ 2>/dev/null | grep -q virtiofs || fail "deb-systemd-helper state left after purge"
echo "package $PKG $VERSION: OK"
