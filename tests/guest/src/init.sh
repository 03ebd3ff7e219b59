#!/bin/sh
# guest-vm /init, run by busybox sh as PID 1.
# Base config: /etc/guest-vm/modules (insmod order). Per-run config:
# /etc/guest-vm/run.conf (shell variables, from the per-run cpio) and /job.sh.
# Results go to the second serial port (/dev/ttyS1) framed by ===GUEST-VM-...=== markers.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mkdir -p /proc /sys /dev /tmp /run /mnt /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm

R=/dev/ttyS1
up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "guest-vm: $*" > /dev/console; }
mark() { printf '===GUEST-VM-%s===\n' "$*" > $R; }
stty -F $R raw -echo 2>/dev/null || log "stty raw on $R failed"

GVM_TAG=kataShared
GVM_MOUNTPOINT=/mnt
GVM_MOUNT=1
GVM_MOUNT_OPTS=
GVM_MOUNT_TIMEOUT=10
GVM_UMOUNT=1
GVM_POWEROFF=1
[ -f /etc/guest-vm/run.conf ] && . /etc/guest-vm/run.conf

finish() {
  sync
  if [ "$GVM_POWEROFF" = 1 ]; then
    poweroff -f
    echo o > /proc/sysrq-trigger
  fi
  log "idle (poweroff disabled)"
  while :; do sleep 3600; done
}

mark "BOOT uptime=$(up)"
for m in $(cat /etc/guest-vm/modules); do
  insmod "$m" || log "insmod $m failed"
done

if [ "$GVM_MOUNT" = 1 ]; then
  mkdir -p "$GVM_MOUNTPOINT"
  ok=0
  i=0
  n=$((GVM_MOUNT_TIMEOUT * 10))
  while [ "$i" -lt "$n" ]; do
    if mount -t virtiofs ${GVM_MOUNT_OPTS:+-o "$GVM_MOUNT_OPTS"} "$GVM_TAG" "$GVM_MOUNTPOINT" 2>/tmp/mount.err; then
      ok=1
      break
    fi
    i=$((i + 1))
    usleep 100000
  done
  if [ "$ok" = 1 ]; then
    mark "MOUNTED uptime=$(up)"
  else
    log "mount -t virtiofs $GVM_TAG $GVM_MOUNTPOINT failed: $(cat /tmp/mount.err)"
    dmesg | tail -n 40 > /dev/console
    mark "MOUNT-FAILED $(head -c 300 /tmp/mount.err | tr '\n=' '  ')"
    finish
  fi
  cd "$GVM_MOUNTPOINT" || cd /
fi

export GUEST_VM_MNT="$GVM_MOUNTPOINT"
mark "JOB-START uptime=$(up)"
sh /job.sh > /tmp/job.out 2> /tmp/job.err < /dev/null
st=$?
t=$(up)
cd /

emit() {
  n=$(wc -c < "$2")
  printf '===GUEST-VM-%s len=%s===\n' "$1" "$n"
  cat "$2"
  printf '\n===GUEST-VM-%s-END===\n' "$1"
}
{
  emit STDOUT /tmp/job.out
  emit STDERR /tmp/job.err
  printf '===GUEST-VM-EXIT status=%s uptime=%s===\n' "$st" "$t"
} > $R

if [ "$GVM_MOUNT" = 1 ] && [ "$GVM_UMOUNT" = 1 ]; then
  sync
  umount "$GVM_MOUNTPOINT" 2>/dev/null || umount -l "$GVM_MOUNTPOINT" || log "umount failed"
  mark "UMOUNTED uptime=$(up)"
fi
finish
