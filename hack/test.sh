#!/usr/bin/env bash
# The whole suite: the end-to-end tests on the real node, the operator's tests (unit + real control
# plane + install) and the PyTorch server's. pytest's exit code 5 (no tests collected) is a failure
# here, never a pass, and so is an unexpected skip (ISVC_FAIL_ON_SKIP below).
set -uo pipefail
cd "$(dirname "$0")/.."
source hack/cluster/versions.env
status=0
# An operator left running by `make dev` would reconcile the tests' namespaces too.
bash hack/dev.sh stop >/dev/null 2>&1 || true
run() {
  local name=$1; shift
  echo "== $name: $*"
  local started=$SECONDS
  "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "== $name: pytest collected no tests: failing" >&2; rc=1; fi
  echo "== $name: exit $rc in $((SECONDS - started))s"
  [ $rc -eq 0 ] || status=1
}
# A skip fails the run unless asked for (tests/conftest.py: only the e2e tests' with ISVC_REAL_NODE=0):
# after `make venv` hadolint and lupa are installed, so their skips would hide a broken install.
export ISVC_FAIL_ON_SKIP=1
# One cluster for both pytest sessions (started here unless one answers; stopped here if so).
kubectl="$HOME/.cache/isvc-operator/bin/kubectl-$KUBE_VERSION"
started_cluster=0
if ! "$kubectl" --kubeconfig .cluster/kubeconfig get --raw /readyz >/dev/null 2>&1; then
  bash hack/cluster/up.sh >/dev/null || exit 1
  started_cluster=1
fi
# Cold builds happen here, outside pytest's per-test timeout: the images the e2e tests run on the
# real node, and the PyTorch server's venv their model fixture uses (both cached: seconds when warm).
if "$kubectl" --kubeconfig .cluster/kubeconfig get node isvc-node >/dev/null 2>&1; then
  run images bash hack/images/build.sh --load operator pytorch-server test-server
fi
run server-venv bash -c "bash servers/pytorch/run-tests.sh --co -q >/dev/null"
# The e2e tests install the operator with Helm as a pod; the other tests run it as a process. Two
# sessions, so that the two never reconcile at the same time.
run e2e .venv/bin/python -m pytest tests/e2e -q -p no:cacheprovider
run operator .venv/bin/python -m pytest tests -q -p no:cacheprovider --ignore tests/e2e
if [ $started_cluster = 1 ] && [ -z "${ISVC_KEEP_CLUSTER:-}" ]; then
  # The node dies as in a crash (kill -9, containers still running), then `make cluster-down` runs
  # twice: nothing of the node may be left on the machine (hack/node/leftovers.sh says what is).
  crash_then_down() {
    local process
    for process in kubelet kube-proxy containerd; do
      [ -f ".cluster/$process.pid" ] && kill -9 "$(cat ".cluster/$process.pid")" 2>/dev/null
    done
    bash hack/cluster/down.sh && bash hack/cluster/down.sh && bash hack/node/leftovers.sh
  }
  run cluster-down crash_then_down
fi
if [ -f servers/pytorch/run-tests.sh ]; then
  run pytorch-server bash servers/pytorch/run-tests.sh
fi
exit $status
