#!/usr/bin/env bash
# make e2e-kind: the whole system on a throwaway kind cluster.
#
# Creates a kind cluster, builds the image and loads it into the cluster, installs the chart with helm,
# creates a Target and two Runs with tiny busybox Jobs (one succeeds, one fails), then asserts what
# `kubectl get runs`, `kubectl get targets` and the control plane's API report.
#
# Needs docker (a reachable daemon), kind, kubectl and helm. Without docker or kind it prints
# "skipped: needs docker and kind" and exits 0 (this is not a test that passed). Without kubectl or helm,
# where docker and kind are present, it fails: the run was clearly meant to happen.
#
# KIND_CLUSTER (default outrider-e2e) names the cluster; KEEP_CLUSTER=1 keeps it afterwards for a look.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v docker >/dev/null 2>&1 || ! command -v kind >/dev/null 2>&1; then
  echo "skipped: needs docker and kind (found: docker=$(command -v docker || echo no), kind=$(command -v kind || echo no))"
  exit 0
fi
if ! docker info >/dev/null 2>&1; then
  echo "skipped: needs docker and kind (docker is installed but its daemon is not reachable)"
  exit 0
fi
for tool in kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "e2e-kind: FAILED: needs $tool on PATH" >&2; exit 1; }
done

CLUSTER="${KIND_CLUSTER:-outrider-e2e}"
IMAGE_REPO="outrider"
IMAGE_TAG="e2e"
NS="outrider"
AGENTS="agents"
CONTEXT="kind-${CLUSTER}"
K="kubectl --context ${CONTEXT}"
PF_PID=""

cleanup() {
  local status=$?
  [ -n "$PF_PID" ] && kill "$PF_PID" 2>/dev/null || true
  if [ "$status" -ne 0 ]; then
    echo "--- e2e-kind failed; state for diagnosis:" >&2
    $K get runs,targets,jobs,pods -A -o wide >&2 || true
    $K -n "$NS" logs deploy/outrider-operator --tail=80 >&2 || true
    $K -n "$NS" logs deploy/outrider-control-plane --tail=40 >&2 || true
  fi
  if [ "${KEEP_CLUSTER:-0}" != "1" ]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
  else
    echo "kept cluster ${CLUSTER} (kind delete cluster --name ${CLUSTER})"
  fi
  exit "$status"
}
trap cleanup EXIT

step() { echo "==> $*"; }

# Poll until a command's output matches, or fail after a bounded time.
wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "timed out after ${timeout}s waiting for: $what" >&2; return 1; fi
    sleep 2
  done
}

step "kind cluster ${CLUSTER}"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 180s

step "build and load image ${IMAGE_REPO}:${IMAGE_TAG}"
docker build -t "${IMAGE_REPO}:${IMAGE_TAG}" .
kind load docker-image "${IMAGE_REPO}:${IMAGE_TAG}" --name "$CLUSTER"

step "helm install"
helm --kube-context "$CONTEXT" upgrade --install outrider charts/outrider \
  --namespace "$NS" --create-namespace \
  --set image.repository="$IMAGE_REPO" --set image.tag="$IMAGE_TAG" --set image.pullPolicy=Never \
  --wait --timeout 5m
$K -n "$NS" rollout status deploy/outrider-control-plane --timeout=180s
$K -n "$NS" rollout status deploy/outrider-operator --timeout=180s

step "a Target and two Runs (one succeeds, one fails)"
$K create namespace "$AGENTS" --dry-run=client -o yaml | $K apply -f -
$K -n "$AGENTS" apply -f - <<'YAML'
apiVersion: outrider.dev/v1alpha1
kind: Target
metadata:
  name: demo
spec:
  description: e2e target
  maxConcurrentRuns: 2
  circuitBreaker:
    failureThreshold: 3
---
apiVersion: outrider.dev/v1alpha1
kind: Run
metadata:
  name: demo-ok
spec:
  target: demo
  task: {id: "e2e-1", title: "succeeds"}
  template:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: agent
              image: busybox:1.36
              command: ["sh", "-c", "echo working; sleep 2; echo done"]
---
apiVersion: outrider.dev/v1alpha1
kind: Run
metadata:
  name: demo-fail
spec:
  target: demo
  task: {id: "e2e-2", title: "fails"}
  template:
    spec:
      backoffLimit: 0
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: agent
              image: busybox:1.36
              command: ["sh", "-c", "echo 'tests failed: 3 of 12' > /dev/termination-log; exit 1"]
YAML

wait_for "run demo-ok Succeeded" 240 sh -c "[ \"\$($K -n $AGENTS get run demo-ok -o jsonpath='{.status.phase}')\" = Succeeded ]"
wait_for "run demo-fail Failed" 240 sh -c "[ \"\$($K -n $AGENTS get run demo-fail -o jsonpath='{.status.phase}')\" = Failed ]"

step "kubectl get runs / targets"
runs="$($K -n "$AGENTS" get runs)"
echo "$runs"
echo "$runs" | grep -E '^demo-ok +demo +Succeeded' >/dev/null || { echo "kubectl get runs: demo-ok is not Succeeded" >&2; exit 1; }
echo "$runs" | grep -E '^demo-fail +demo +Failed' >/dev/null || { echo "kubectl get runs: demo-fail is not Failed" >&2; exit 1; }
targets="$($K -n "$AGENTS" get targets)"
echo "$targets"
echo "$targets" | grep -E '^demo +' >/dev/null || { echo "kubectl get targets: no demo" >&2; exit 1; }
# One failure in three allowed: the breaker stays Closed (the two Runs may finish in either order, so the
# consecutive-failure count may be 0 or 1).
[ "$($K -n "$AGENTS" get target demo -o jsonpath='{.status.breaker.state}')" = "Closed" ] \
  || { echo "target demo: expected its breaker Closed" >&2; exit 1; }

step "control plane API"
TOKEN="$($K -n "$NS" get secret outrider-api-token -o jsonpath='{.data.token}' | base64 -d)"
PORT=18000
$K -n "$NS" port-forward svc/outrider-control-plane "${PORT}:8000" >/dev/null 2>&1 &
PF_PID=$!
wait_for "port-forward" 30 curl -sf "http://127.0.0.1:${PORT}/v1/health"
# The operator posts run.* events with retries; give them a bounded moment to arrive.
wait_for "both runs in the control plane" 60 sh -c \
  "curl -sf -H 'Authorization: Bearer ${TOKEN}' 'http://127.0.0.1:${PORT}/v1/runs' | grep -q '\"failed\"'"
curl -sf -H "Authorization: Bearer ${TOKEN}" "http://127.0.0.1:${PORT}/v1/runs" | python3 -c '
import json, sys
items = {r["run_id"]: r for r in json.load(sys.stdin)["items"]}
statuses = sorted(r["status"] for r in items.values())
assert statuses == ["failed", "succeeded"], f"control plane has runs {statuses}"
print("control plane: runs", {k: v["status"] for k, v in items.items()})
'
curl -sf "http://127.0.0.1:${PORT}/metrics" | grep -E '^outrider_runs_total\{.*status="failed"' \
  || { echo "/metrics: no failed run in outrider_runs_total" >&2; exit 1; }
# Wrong token is refused.
code="$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "http://127.0.0.1:${PORT}/v1/runs")"
[ "$code" = "401" ] || { echo "wrong token answered ${code}, expected 401" >&2; exit 1; }

echo "e2e-kind: PASSED"
