#!/usr/bin/env bash
# `make kind-deploy`: build the image, load it into the kind cluster, install Atrium with Helm
# (kind values), Prometheus from manifests/prometheus, and the shop samples. Needs docker (or
# podman), kind, helm and kubectl on PATH; it cannot run on a machine without a container
# engine (such as the one CI uses).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "error: $tool is needed for the kind quick start" >&2; exit 1; }
done
docker build -t atrium/atrium:dev .
kind load docker-image atrium/atrium:dev --name atrium
kubectl apply --server-side -f charts/atrium/crds/
helm upgrade --install atrium charts/atrium -n atrium-system --create-namespace \
  -f tools/kind/values.yaml --wait
kubectl apply --server-side -k manifests/prometheus
kubectl -n monitoring patch service prometheus --type merge \
  -p '{"spec":{"type":"NodePort","ports":[{"name":"web","port":9090,"targetPort":"web","nodePort":30090}]}}'
kubectl create namespace shop --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side -n shop -k manifests/samples
echo "gateway: http://127.0.0.1:8000   prometheus: http://127.0.0.1:9090"
