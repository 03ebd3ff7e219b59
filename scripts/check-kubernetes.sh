#!/usr/bin/env bash
# Validates configs/kubernetes/*.yaml and the RuntimeClass and pod in configs/ against the
# Kubernetes OpenAPI schemas, strictly (unknown fields are errors), with PyPI's
# kubernetes-validate, which bundles the schemas (no cluster, no network once installed).
# Then checks what the schemas cannot: the DaemonSet's selector matches its pods' labels, and
# the Service selects them and targets a port they declare.
set -euo pipefail
cd "$(dirname "$0")/.."
K8S_VERSION=1.30.0
VENV=${KUBE_VALIDATE_VENV:-target/kubernetes-validate-venv}
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
  /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate==1.37.0
fi
files=(configs/kubernetes/*.yaml configs/runtimeclass.yaml configs/pod-rate-limited.yaml "$@")
"$VENV/bin/kubernetes-validate" --strict --quiet -k "$K8S_VERSION" "${files[@]}"
"$VENV/bin/python" - "${files[@]}" <<'PY'
import sys, yaml
docs = [d for f in sys.argv[1:] for d in yaml.safe_load_all(open(f)) if d]
sets = [d for d in docs if d["kind"] == "DaemonSet"]
bad = []
for ds in sets:
    pod = ds["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    sel = ds["spec"]["selector"].get("matchLabels", {})
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        bad.append(f"DaemonSet {ds['metadata']['name']}: selector {sel} does not match its pod labels {labels}")
    ports = {p.get("name"): p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    for svc in (d for d in docs if d["kind"] == "Service"):
        s = svc["spec"].get("selector", {})
        if any(labels.get(k) != v for k, v in s.items()):
            continue
        for p in svc["spec"]["ports"]:
            t = p.get("targetPort", p["port"])
            if (t not in ports) if isinstance(t, str) else (t not in ports.values()):
                bad.append(f"Service {svc['metadata']['name']}: targetPort {t} is not a port of {ds['metadata']['name']} ({ports})")
        ann = svc["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", 0)) not in ports.values():
            bad.append(f"Service {svc['metadata']['name']}: prometheus.io/port {ann.get('prometheus.io/port')} is not a container port ({ports})")
if not sets:
    bad.append("no DaemonSet found")
if not any(d["kind"] == "Service" for d in docs):
    bad.append("no Service found")
for b in bad:
    print("ERROR", b)
sys.exit(1 if bad else 0)
PY
echo "kubernetes manifests: OK (${#files[@]} files, schemas of Kubernetes $K8S_VERSION, strict)"
