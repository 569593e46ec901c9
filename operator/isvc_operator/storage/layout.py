"""Layout checks: DEST holds what the model server of a layout loads, or the error says what it found."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .errors import OWN_PREFIXES, VERSION_DIR, StorageError

LAYOUTS = ("tensorflow", "pytorch")
_TF_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def _visible_entries(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith(OWN_PREFIXES))


def _listing(directory: Path, limit: int = 12) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in _visible_entries(directory)]
    if not names:
        return "nothing (empty)"
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def _version_dirs(dest: Path) -> list[Path]:
    dirs = [p for p in _visible_entries(dest) if p.is_dir() and VERSION_DIR.fullmatch(p.name)]
    return sorted(dirs, key=lambda p: int(p.name))


def _find_deeper(dest: Path, matches: Callable[[str], bool], min_depth: int, max_depth: int = 5) -> str | None:
    """The first file matching, between min_depth and max_depth levels down, to point at it."""
    for directory, subdirs, files in os.walk(dest):
        subdirs.sort()
        rel = Path(directory).relative_to(dest)
        depth = len(rel.parts)
        if depth >= max_depth:
            subdirs.clear()
        if depth >= min_depth:
            for name in sorted(files):
                if matches(name):
                    return (rel / name).as_posix()
    return None


def _tensorflow(dest: Path) -> str:
    versions = _version_dirs(dest)
    good = [v for v in versions if any((v / name).is_file() for name in _TF_MODEL_FILES)]
    if good:
        label = "version" if len(good) == 1 else "versions"
        summary = f"layout tensorflow: {label} {', '.join(v.name for v in good)} with saved_model.pb"
        empty = [v.name + "/" for v in versions if v not in good]
        if empty:
            summary += f" (warning: no saved_model.pb in {', '.join(empty)})"
        return summary
    if any((dest / name).is_file() for name in _TF_MODEL_FILES):
        hint = "put them in a directory named 1/"
    elif versions:
        hint = f"{versions[0].name}/ holds: {_listing(versions[0])}"
    elif deep := _find_deeper(dest, lambda n: n in _TF_MODEL_FILES, min_depth=2):
        hint = (
            f"saved_model.pb is at {deep}: the archive must hold 1/saved_model.pb, "
            "optionally under one top-level directory"
        )
    else:
        hint = "expected e.g. 1/saved_model.pb and 1/variables/"
    raise StorageError(
        f"layout tensorflow: no numeric version directory with saved_model.pb under {dest}; "
        f"found: {_listing(dest)} ({hint})"
    )


def _is_state_dict(name: str) -> bool:
    return name in ("model.pth", "model.pt") or name.endswith(".bin")


def pytorch_format(names: Iterable[str]) -> tuple[str, str] | None:
    """The format the PyTorch server loads from a version directory holding these files, and its
    description; None when it loads nothing. The server's loader follows the same rules (the
    table of cases in tests/fixtures/pytorch_layouts.json is run against both):

    1. model.py + a state dict (model.pth, model.pt or *.bin): eager PyTorch;
    2. else *.pt2: an exported program, if there is exactly one;
    3. else model.pt: TorchScript.
    """
    files = sorted(names)
    state = [name for name in files if _is_state_dict(name)]
    if "model.py" in files and state:
        return "pytorch_eager", f"model.py + state dict {state[0]}"
    exported = [name for name in files if name.endswith(".pt2")]
    if exported:
        return ("torch_export", f"exported program {exported[0]}") if len(exported) == 1 else None
    if "model.pt" in files:
        return "torchscript", "TorchScript model.pt"
    return None


def _pytorch_model(directory: Path) -> str | None:
    """Describe the servable PyTorch model in DIRECTORY, or None."""
    found = pytorch_format(p.name for p in directory.iterdir() if p.is_file())
    return found[1] if found else None


def _pytorch_hint(dest: Path, versions: list[Path]) -> str:
    for directory in [*versions, dest]:
        prefix = "" if directory == dest else directory.name + "/"
        files = {p.name for p in directory.iterdir() if p.is_file()}
        state = sorted(name for name in files if _is_state_dict(name))
        exported = sorted(name for name in files if name.endswith(".pt2"))
        if len(exported) > 1 and not ("model.py" in files and state):
            return f"{prefix or 'the root'} holds several exported programs ({', '.join(exported)}): keep exactly one *.pt2"
        if "model.py" in files and not state:
            return f"{prefix}model.py needs a state-dict file next to it: model.pth, model.pt or *.bin"
        if state and "model.py" not in files:
            return (
                f"{prefix}{state[0]} is a state dict: add model.py defining the model next to it, "
                "or save a TorchScript model.pt"
            )

    def model_file(name: str) -> bool:
        return name in ("model.pt", "model.py") or name.endswith(".pt2")

    if deep := _find_deeper(dest, model_file, min_depth=2):
        return (
            f"{deep} is too deep: the archive must hold 1/{Path(deep).name}, optionally under one top-level directory"
        )
    if versions:
        return f"{versions[0].name}/ holds: {_listing(versions[0])}"
    return "expected e.g. 1/model.pt"


def _pytorch(dest: Path) -> str:
    versions = _version_dirs(dest)
    found = [(v.name, desc) for v in versions if (desc := _pytorch_model(v))]
    if found:
        return "layout pytorch: " + ", ".join(f"version {name} ({desc})" for name, desc in found)
    if root := _pytorch_model(dest):
        return f"layout pytorch: {root} at the root, no version directory: accepted, served as version 1"
    raise StorageError(
        "layout pytorch: no numeric version directory with model.pt (TorchScript), *.pt2, or model.py + a state dict "
        f"(model.pth, model.pt, *.bin) under {dest}, and none of those at the root; "
        f"found: {_listing(dest)} ({_pytorch_hint(dest, versions)})"
    )


def check_layout(dest: str | os.PathLike[str], layout: str) -> str:
    """Check DEST holds what the LAYOUT's model server loads; return a summary or raise StorageError."""
    dest = Path(dest)
    if layout not in LAYOUTS:
        raise StorageError(f"unknown layout {layout!r}; accepted: {', '.join(LAYOUTS)}")
    if not dest.is_dir():
        raise StorageError(f"layout {layout}: {dest} is not a directory")
    return _tensorflow(dest) if layout == "tensorflow" else _pytorch(dest)
