#!/bin/sh
# guest-signal NAME: tell the host (Vm::wait_for_signal) that NAME happened.
printf '===GUEST-VM-SIGNAL %s===\n' "$*" > /dev/ttyS1
