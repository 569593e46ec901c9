"""Which versions exist, which one is served, and the states TF Serving reports for them.

A background thread polls the base path (like TF Serving's ``--file_system_poll_wait_seconds``)
and loads the highest numeric version off the event loop; the served model is swapped in one
attribute assignment, so requests never see a half-loaded model. The previous version is
dropped once in-flight batches holding it finish. Policy is TF Serving's default: latest 1.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from . import loader
from .errors import ApiError, ModelLoadError

log = logging.getLogger(__name__)


@dataclass
class VersionState:
    version: int
    state: str  # START | LOADING | AVAILABLE | UNLOADING | END
    error: str = ""
    error_code: str = "OK"

    def as_tf(self) -> dict:
        return {
            "version": str(self.version),
            "state": self.state,
            "status": {"error_code": self.error_code, "error_message": self.error},
        }


class ModelVersions:
    def __init__(
        self,
        name: str,
        base_path: str,
        device,
        *,
        poll_wait_seconds: float = 1.0,
        model_class_name: str | None = None,
        warmup_batch_sizes=(1,),
        metrics=None,
        on_unservable=None,
    ):
        self.name = name
        # Called with the error when the latest version fails and none was ever AVAILABLE: nothing
        # to serve, and (in a pod) better said by an exit the kubelet reports than by a 503 forever.
        self.on_unservable = on_unservable
        # Called (from the poller thread) after the served version changed: readiness may have.
        self.on_serving_changed: list = []
        self.base_path = base_path
        self.device = device
        self.poll_wait_seconds = poll_wait_seconds
        self.model_class_name = model_class_name
        self.warmup_batch_sizes = tuple(warmup_batch_sizes)
        self.metrics = metrics
        self.serving: loader.LoadedModel | None = None
        self.states: dict[int, VersionState] = {}
        self._failed: dict[int, tuple] = {}  # version -> fingerprint that failed to load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._flat_logged = False
        self._empty_logged = False

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception:  # never let the poller die: a broken version must not stop future ones
                log.exception("polling %s failed", self.base_path)
            if self.poll_wait_seconds <= 0 and self.serving is not None:
                return
            self._stop.wait(self.poll_wait_seconds if self.poll_wait_seconds > 0 else 1.0)

    # ---- discovery and loading -------------------------------------------------------------
    def poll_once(self) -> None:
        versions, flat = loader.list_versions(self.base_path)
        if flat and not self._flat_logged:
            log.info(
                "no numeric version directory under %s but model files are there: serving them as version 1",
                self.base_path,
            )
            self._flat_logged = True
        if not versions:
            if not self._empty_logged:
                log.warning(
                    "no versions of model %s found under base path %s; accepted layout: NUMBER/ holding %s",
                    self.name,
                    self.base_path,
                    loader.ACCEPTED,
                )
                self._empty_logged = True
            return
        self._empty_logged = False
        target = max(versions)
        current = self.serving
        if current is not None and current.version == target:
            return
        path = versions[target]
        fp = loader.fingerprint(path)
        if self._failed.get(target) == fp:
            return  # same files that failed before: wait until they change
        self._load(target, path, fp)

    def _load(self, version: int, path: str, fp: tuple) -> None:
        self.states[version] = VersionState(version, "LOADING")
        log.info("loading version %d of model %s from %s", version, self.name, path)
        t0 = time.perf_counter()
        try:
            model = loader.load_version(version, path, self.device, self.model_class_name)
            self._warmup(model)
        except ModelLoadError as e:
            self._fail(version, fp, str(e), "INVALID_ARGUMENT")
            return
        except Exception as e:  # a model.py that raises, a corrupt file: report, keep serving the old one
            self._fail(version, fp, f"{type(e).__name__}: {e}", "UNKNOWN")
            return
        self._failed.pop(version, None)
        previous = self.serving
        self.serving = model
        self.states[version] = VersionState(version, "AVAILABLE")
        if self.metrics is not None:
            self.metrics.model_version.set(version)
        for notify in self.on_serving_changed:
            notify()
        log.info(
            "version %d of model %s is AVAILABLE (%s, %.2fs, inputs %s)",
            version,
            self.name,
            model.format,
            time.perf_counter() - t0,
            [(s.name, str(s.dtype), s.shape) for s in model.inputs],
        )
        if previous is not None and previous.version != version:
            self.states[previous.version] = VersionState(previous.version, "END")
            log.info("version %d of model %s unloaded", previous.version, self.name)
        for v in [v for v, s in self.states.items() if s.state == "END" and v not in (version,)][:-4]:
            self.states.pop(v, None)  # keep a short history only

    def _fail(self, version: int, fp: tuple, message: str, code: str) -> None:
        self._failed[version] = fp
        self.states[version] = VersionState(version, "END", message, code)
        log.error("version %d of model %s failed to load: %s", version, self.name, message)
        if self.serving is None and self.on_unservable is not None:
            self.on_unservable(f"version {version} of model {self.name} failed to load: {message}")

    def _warmup(self, model: loader.LoadedModel) -> None:
        """Run a forward on zeros when the input shape is known, so the first request is not slow."""
        specs = model.inputs
        if not specs or any(s.shape is None or -1 in s.shape[1:] for s in specs):
            return
        import torch  # local: keeps this module importable for status tests without a model

        for batch in self.warmup_batch_sizes:
            if not model.batchable and batch != 1:
                continue
            arrays = []
            for s in specs:
                shape = [batch if (i == 0 and d == -1) else d for i, d in enumerate(s.shape)]
                arrays.append(np.zeros(shape, dtype=torch.empty((), dtype=s.dtype).numpy().dtype))
            try:
                model.run(arrays)
                t0 = time.perf_counter()
                model.run(arrays)
                model.pass_seconds = time.perf_counter() - t0  # the largest warm-up batch's, last
            except Exception as e:
                if any(s.exact for s in specs):
                    raise ModelLoadError(
                        f"warm-up forward pass with zeros of shape {[a.shape for a in arrays]} failed: {e}"
                    ) from e
                log.debug("warm-up with hinted shape %s skipped: %s", [a.shape for a in arrays], e)
                return

    # ---- lookups used by the HTTP layer ----------------------------------------------------
    def get(self, name: str, version: int | None = None) -> loader.LoadedModel:
        if name != self.name:
            raise ApiError(
                404,
                f"Servable not found for request: {'Latest' if version is None else 'Specific'}"
                f"({name}{'' if version is None else ', ' + str(version)}); this server serves {self.name!r}",
            )
        model = self.serving
        if model is None:
            raise self._not_ready()
        if version is not None and version != model.version:
            raise ApiError(
                404, f"Servable not found for request: Specific({name}, {version}); served version is {model.version}"
            )
        return model

    def _not_ready(self) -> ApiError:
        if not self.states:
            return ApiError(404, f"Could not find any versions of model {self.name} under {self.base_path}")
        latest = self.states[max(self.states)]
        detail = f": {latest.error}" if latest.error else ""
        return ApiError(
            503, f"model {self.name} has no AVAILABLE version; version {latest.version} is {latest.state}{detail}"
        )

    def status(self, name: str, version: int | None = None) -> list[dict]:
        """TF Serving's model_version_status list; raises 404/503 unless something is AVAILABLE.

        TF Serving answers 200 with state LOADING while a model loads; we answer 503 so that a
        plain HTTP readiness probe means 'can serve' (README: readiness).
        """
        if name != self.name:
            raise ApiError(404, f"Could not find any versions of model {name}; this server serves {self.name!r}")
        if version is not None:
            st = self.states.get(version)
            if st is None:
                raise ApiError(404, f"Could not find version {version} of model {name}")
            if st.state != "AVAILABLE":
                raise ApiError(
                    503, f"version {version} of model {name} is {st.state}" + (f": {st.error}" if st.error else "")
                )
            return [st.as_tf()]
        if self.serving is None:
            raise self._not_ready()
        return [s.as_tf() for _, s in sorted(self.states.items(), reverse=True)]
