#!/usr/bin/env bash
# Test entry point for CI: create/reuse servers/pytorch/.venv, install the package with its test
# extras (pip's cache makes re-installs cheap), run the pytest suite. Exits non-zero on any
# failure, including pytest's exit code 5 ("no tests collected").
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
venv="$here/.venv"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  echo "run-tests: creating $venv"
  "$python" -m venv "$venv"
fi

# Re-install only when the package definition changed (or the last install did not finish).
stamp="$venv/.isvc-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
   || ! "$venv/bin/python" -c "import torch, isvc_pytorch_server" >/dev/null 2>&1; then
  echo "run-tests: installing isvc-pytorch-server[test] (torch from PyPI: see README.md)"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade "pip==25.3"
  "$venv/bin/python" -m pip install --disable-pip-version-check -q -e ".[test]"
  echo "$want" > "$stamp"
fi
# The gRPC modules are generated from isvc_pytorch_server/wire/*.proto, never committed.
bash "$here/compile-protos.sh" "$venv/bin/python"

set +e
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "run-tests: pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
