"""Find model versions on disk and turn one version directory into a runnable model.

Three layouts are accepted in a version directory (checked in this order):

* ``model.py`` + a state dict (``model.pth``, ``model.pt`` or ``*.bin``): KServe's old
  pytorchserver layout; the ``nn.Module`` subclass defined in ``model.py`` is built with no
  arguments and the state dict loaded into it (``weights_only=True``: no arbitrary pickles).
* one ``*.pt2`` file: a ``torch.export`` program (``torch.export.load``); several are refused.
* ``model.pt``: TorchScript (``torch.jit.load``).

The storage init container checks an unpacked model by the same rules; the
table of cases in the repository's ``tests/fixtures/pytorch_layouts.json`` is run against both.
"""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import ModelLoadError

log = logging.getLogger(__name__)

ACCEPTED = (
    "model.pt (TorchScript), one *.pt2 file (torch.export), or model.py + a state dict (model.pth, model.pt or *.bin)"
)
STATE_DICT_NAMES = ("model.pth", "model.pt")
# Failures of the server while running a model, not of the request: out of (GPU or host) memory,
# a device error, a broken invariant (assert). torch.OutOfMemoryError is a RuntimeError, which
# otherwise means the model refused the input (a shape mismatch), so this is checked first.
OUT_OF_MEMORY: tuple[type[BaseException], ...] = (torch.OutOfMemoryError, MemoryError)
SERVER_FAILURES: tuple[type[BaseException], ...] = (
    *OUT_OF_MEMORY,
    AssertionError,
    *((torch.AcceleratorError,) if hasattr(torch, "AcceleratorError") else ()),
)
_module_counter = itertools.count()


@dataclass
class TensorSpec:
    """What the server knows about one model input: name, dtype and shape (-1 = any size).

    ``exact`` is False when the shape is only a hint (read off the first Linear layer), used for
    metadata and warm-up but never to reject a request.
    """

    name: str
    dtype: torch.dtype
    shape: list[int] | None
    exact: bool = False


@dataclass
class LoadedModel:
    """A loaded version: call :meth:`run` with numpy arrays (one per input) from any thread."""

    version: int
    path: str
    format: str  # "torchscript" | "torch_export" | "pytorch_eager"
    module: object
    device: torch.device
    inputs: list[TensorSpec]
    batchable: bool = True
    output_names: list[str] | None = None
    single_output: bool = True
    files: list[str] = field(default_factory=list)
    # Recent forward pass time (seconds, a moving average), measured at warm-up and by the batcher:
    # it decides whether passes run on the event loop or in batch threads.
    pass_seconds: float | None = None

    @property
    def platform(self) -> str:
        return {"torchscript": "pytorch_torchscript", "torch_export": "pytorch_export"}.get(
            self.format, "pytorch_eager"
        )

    def run(self, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        """One forward pass; returns outputs by name as C-contiguous numpy arrays on the CPU."""
        tensors = [torch.from_numpy(a) for a in arrays]
        if self.device.type != "cpu":
            tensors = [t.to(self.device, non_blocking=True) for t in tensors]
        if self.format == "torchscript":
            # The profiling graph executor re-specializes on every new batch size and then runs a
            # slower fallback graph (5x slower for a small MLP); plain interpretation is faster here.
            with torch.inference_mode(), torch.jit.optimized_execution(False):
                out = self.module(*tensors)
        else:
            with torch.inference_mode():
                out = self.module(*tensors)
        return self._outputs(out)

    def _outputs(self, out) -> dict[str, np.ndarray]:
        if isinstance(out, torch.Tensor):
            named = {"output-0": out}
            single = True
        elif isinstance(out, dict):
            named = dict(out)
            single = False
        elif isinstance(out, (tuple, list)):
            named = {f"output-{i}": t for i, t in enumerate(out)}
            single = len(named) == 1
        else:
            raise TypeError(
                f"model returned {type(out).__name__}; expected a tensor, a tuple/list or a dict of tensors"
            )
        result = {}
        for name, t in named.items():
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"model output {name!r} is {type(t).__name__}, not a tensor")
            t = t.detach()
            if t.device.type != "cpu":
                t = t.cpu()
            if t.dtype in (torch.float16, torch.bfloat16):
                t = t.float()
            result[str(name)] = np.ascontiguousarray(t.numpy())
        self.output_names = list(result)
        self.single_output = single
        return result


def list_versions(base_path: str) -> tuple[dict[int, str], bool]:
    """Numeric version directories under ``base_path``.

    Returns ``({version: path}, flat)``; ``flat`` is True when there is no numeric directory but
    the base path itself holds model files (as KServe's pytorchserver took them): it is served as version 1.
    """
    try:
        names = os.listdir(base_path)
    except FileNotFoundError:
        return {}, False
    except NotADirectoryError:
        return {}, False
    versions = {}
    for name in names:
        p = os.path.join(base_path, name)
        if name.isdigit() and os.path.isdir(p):
            versions[int(name)] = p
    if versions:
        return versions, False
    if _has_model_files(names):
        return {1: base_path}, True
    return {}, False


def fingerprint(path: str) -> tuple:
    """Names, sizes and mtimes of the files in a version directory: a change means 'try again'."""
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
        return tuple((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in entries if e.is_file())
    except OSError:
        return ()


def _is_state_dict(name: str) -> bool:
    return name in STATE_DICT_NAMES or name.endswith(".bin")


def model_format(names) -> str | None:
    """The format loaded from a directory holding these files: ``pytorch_eager``, ``torch_export``
    or ``torchscript``; None when none applies (see the module docstring for the order)."""
    names = set(names)
    if "model.py" in names and any(_is_state_dict(n) for n in names):
        return "pytorch_eager"
    exported = [n for n in names if n.endswith(".pt2")]
    if exported:
        return "torch_export" if len(exported) == 1 else None
    if "model.pt" in names:
        return "torchscript"
    return None


def _has_model_files(names) -> bool:
    """Files only a model directory holds: served (or refused with a precise reason) as version 1."""
    return any(n in ("model.py", "model.pt") or n.endswith(".pt2") for n in names)


def resolve_device(requested: str) -> torch.device:
    """``cpu`` (default), ``cuda`` (fail if absent) or ``auto`` (CUDA when available)."""
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"--device={requested} was asked for but CUDA is not available (torch {torch.__version__})"
            )
        return torch.device(requested)
    raise ModelLoadError(f"unknown device {requested!r}; accepted: cpu, cuda, cuda:N, auto")


def load_version(version: int, path: str, device: torch.device, model_class_name: str | None = None) -> LoadedModel:
    """Load the model files in ``path``; raise :class:`ModelLoadError` naming what was found."""
    try:
        files = sorted(e.name for e in os.scandir(path) if e.is_file())
    except OSError as e:
        raise ModelLoadError(f"cannot list version directory {path}: {e}") from e
    kind = model_format(files)
    if kind is None:
        exported = [f for f in files if f.endswith(".pt2")]
        if len(exported) > 1:
            raise ModelLoadError(f"more than one *.pt2 file in {path}: {exported}; keep exactly one")
        if "model.py" in files:
            raise ModelLoadError(
                f"{path} has model.py but no state dict beside it (model.pth, model.pt or *.bin); found {files}"
            )
        raise ModelLoadError(f"no model found in {path}: found {files or 'no files'}; accepted: {ACCEPTED}")
    if kind == "pytorch_eager":
        model = _load_eager(version, path, files, device, model_class_name)
    elif kind == "torch_export":
        model = _load_export(version, path, files, device)
    else:
        model = _load_torchscript(version, path, device)
    model.files = files
    return model


def _load_torchscript(version: int, path: str, device: torch.device) -> LoadedModel:
    file = os.path.join(path, "model.pt")
    try:
        with warnings.catch_warnings():  # "torch.jit is deprecated": still the most common export format
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(file, map_location=device)
    except Exception as e:  # torch raises RuntimeError/ValueError subclasses that vary by version
        raise ModelLoadError(
            f"{file} is not a TorchScript archive ({_short(e)}); a state dict needs model.py beside it; "
            f"accepted: {ACCEPTED}"
        ) from e
    module.eval()
    names = _script_arg_names(module)
    dtype = _param_dtype(module.parameters())
    shape = _linear_hint((getattr(m, "original_name", type(m).__name__), m) for _, m in module.named_modules())
    inputs = [TensorSpec(n, dtype, shape if len(names) == 1 else None) for n in names]
    return LoadedModel(version, path, "torchscript", module, device, inputs)


def _script_arg_names(module) -> list[str]:
    try:
        args = module.forward.schema.arguments
        return [a.name for a in args if a.name != "self"] or ["input"]
    except Exception:
        return ["input"]


def _load_export(version: int, path: str, files: list[str], device: torch.device) -> LoadedModel:
    pt2 = [f for f in files if f.endswith(".pt2")]
    if len(pt2) > 1:
        raise ModelLoadError(f"more than one *.pt2 file in {path}: {pt2}; keep exactly one")
    file = os.path.join(path, pt2[0])
    try:
        ep = torch.export.load(file)
    except Exception as e:
        raise ModelLoadError(f"{file} is not a torch.export program ({_short(e)}); accepted: {ACCEPTED}") from e
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    inputs = []
    batchable = True
    for name in ep.graph_signature.user_inputs:
        val = placeholders[name].meta.get("val") if name in placeholders else None
        if isinstance(val, torch.Tensor):
            shape = [d if isinstance(d, int) else -1 for d in val.shape]
            if shape and shape[0] != -1:
                batchable = False  # a static first dimension: requests must match it exactly
            inputs.append(TensorSpec(name, val.dtype, shape, exact=True))
        else:
            inputs.append(TensorSpec(name, torch.float32, None))
    module = ep.module()
    if device.type != "cpu":
        module = module.to(device)
    if not batchable:
        log.info(
            "version %d: %s has a static first dimension %s; dynamic batching is off for it",
            version,
            pt2[0],
            [s.shape for s in inputs],
        )
    return LoadedModel(version, path, "torch_export", module, device, inputs, batchable=batchable)


def _load_eager(version: int, path: str, files: list[str], device: torch.device, class_name: str | None) -> LoadedModel:
    state_files = [f for f in STATE_DICT_NAMES if f in files] or sorted(f for f in files if f.endswith(".bin"))
    if not state_files:
        raise ModelLoadError(
            f"{path} has model.py but no state dict beside it (model.pth, model.pt or *.bin); found {files}"
        )
    cls = _model_class(os.path.join(path, "model.py"), class_name)
    try:
        module = cls()
    except Exception as e:
        raise ModelLoadError(f"cannot build {cls.__name__}() from model.py without arguments: {_short(e)}") from e
    # A state dict is either one file (model.pth / model.pt) or shards (*.bin).
    to_load = state_files[:1] if state_files[0] in STATE_DICT_NAMES else state_files
    state: dict = {}
    for name in to_load:
        file = os.path.join(path, name)
        try:
            obj = torch.load(file, map_location=device, weights_only=True)
        except Exception as e:
            raise ModelLoadError(
                f"{file} is not a plain state dict ({_short(e)}); save it with torch.save(model.state_dict(), ...)"
            ) from e
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise ModelLoadError(f"{file} holds a {type(obj).__name__}, not a state dict")
        state.update(obj)
    try:
        module.load_state_dict(state)
    except Exception as e:
        raise ModelLoadError(f"state dict {to_load} does not fit {cls.__name__}: {_short(e, 600)}") from e
    module.to(device).eval()
    try:
        names = [
            p.name
            for p in inspect.signature(module.forward).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ] or ["input"]
    except (TypeError, ValueError):
        names = ["input"]
    dtype = _param_dtype(module.parameters())
    shape = _linear_hint((type(m).__name__, m) for _, m in module.named_modules())
    inputs = [TensorSpec(n, dtype, shape if len(names) == 1 else None) for n in names]
    return LoadedModel(version, path, "pytorch_eager", module, device, inputs)


def _model_class(file: str, class_name: str | None) -> type:
    """Import ``model.py`` (without writing __pycache__) and pick its nn.Module subclass."""
    mod_name = f"isvc_user_model_{next(_module_counter)}"
    spec = importlib.util.spec_from_file_location(mod_name, file)
    mod = importlib.util.module_from_spec(spec)
    saved = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # the model directory may be read-only, and must stay unchanged
    try:
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    except Exception as e:
        sys.modules.pop(mod_name, None)
        raise ModelLoadError(f"importing {file} failed: {type(e).__name__}: {_short(e)}") from e
    finally:
        sys.dont_write_bytecode = saved
    classes = {
        n: obj
        for n, obj in vars(mod).items()
        if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod_name
    }
    if class_name:
        if class_name not in classes:
            raise ModelLoadError(
                f"--model_class_name={class_name} not found in {file}; nn.Module classes there: {sorted(classes)}"
            )
        return classes[class_name]
    if len(classes) == 1:
        return next(iter(classes.values()))
    if not classes:
        raise ModelLoadError(f"{file} defines no torch.nn.Module subclass")
    raise ModelLoadError(
        f"{file} defines several nn.Module classes {sorted(classes)}; pick one with --model_class_name"
    )


def _param_dtype(params) -> torch.dtype:
    for p in params:
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def _linear_hint(named) -> list[int] | None:
    """[-1, in_features] when the first layer with weights is a Linear: a hint, never enforced."""
    for kind, m in named:
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor):
            if kind == "Linear" and w.dim() == 2:
                return [-1, int(w.shape[1])]
            return None
    return None


def _short(e: BaseException, limit: int = 300) -> str:
    s = str(e).strip().splitlines()
    s = s[0] if s else type(e).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."
