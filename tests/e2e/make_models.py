"""Model archives for the end-to-end tests, made with the PyTorch server's own venv (torch is not a
dependency of the operator): run as `servers/pytorch/.venv/bin/python tests/e2e/make_models.py DIR`.

It trains the iris classifier of the server's test suite (4 -> 16 -> 3, a few Adam steps, two seeds
so that two versions answer differently), saves each as TorchScript in a `.tar.gz` the storage init
container fetches, and writes what each model answers to the seed body when called in-process, so a
prediction through the cluster can be compared with it exactly. It also writes the broken archives
the failure tests serve.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("server_test_models", ROOT / "servers/pytorch/tests/conftest.py")
models = importlib.util.module_from_spec(spec)
spec.loader.exec_module(models)


def archive(source: Path, target: Path) -> None:
    """`iris/1/model.pt`: one top-level directory (stripped by the fetcher) and a numeric version."""
    with tarfile.open(target, "w:gz") as tar:
        tar.add(source, arcname="iris")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    expected = {"body": models.IRIS_BODY}
    for name, seed in (("iris-v1", 0), ("iris-v2", 1)):
        net = models.train_iris(seed=seed)
        with tempfile.TemporaryDirectory() as tmp:
            models.save_model(net, str(Path(tmp) / "1"), "torchscript")
            archive(Path(tmp), out / f"{name}.tar.gz")
        expected[name] = models.expected(net, models.IRIS_BODY["instances"]).tolist()
    # A gzip stream cut in half: the init container must say the archive is corrupt.
    whole = (out / "iris-v1.tar.gz").read_bytes()
    (out / "corrupt.tar.gz").write_bytes(whole[: len(whole) // 2])
    # A layout the init container accepts (1/model.pt) that the server cannot load.
    with tarfile.open(out / "unloadable.tar.gz", "w:gz") as tar:
        data = b"this is not a TorchScript archive\n"
        info = tarfile.TarInfo("iris/1/model.pt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (out / "expected.json").write_text(json.dumps(expected, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
