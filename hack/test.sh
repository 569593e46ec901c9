#!/usr/bin/env bash
# The whole suite: the operator's tests (unit + real control plane + install) and the PyTorch server's.
# pytest's exit code 5 (no tests collected) is a failure here, never a pass.
set -uo pipefail
cd "$(dirname "$0")/.."
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
run operator .venv/bin/python -m pytest tests -q -p no:cacheprovider
if [ -f servers/pytorch/run-tests.sh ]; then
  run pytorch-server bash servers/pytorch/run-tests.sh
fi
exit $status
