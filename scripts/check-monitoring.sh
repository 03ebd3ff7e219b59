#!/usr/bin/env bash
# Lints the Prometheus alert rules and runs their unit tests with Debian's promtool. The
# dashboard's expressions and the series the rules and dashboard name are checked against a
# live exporter by runtime-integration/tests/monitoring.rs (run with the other tests).
set -euo pipefail
cd "$(dirname "$0")/../configs/monitoring"
promtool check rules virtiofs-alerts.yml
promtool test rules virtiofs-alerts.test.yml
