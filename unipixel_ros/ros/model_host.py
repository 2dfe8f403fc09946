"""The loaded pipeline and who may use it when.

Loading runs in a background thread started at configure (and again at activate after
a deactivate freed the model), so lifecycle transitions stay fast whatever the model's
size: a lifecycle manager is not kept waiting for a multi-gigabyte checkpoint. Until
the model is ready, requests wait for it like for a running request; a failed load
is reported by every request and in ``/diagnostics``.

One model serves queries, clicks and tracking, one call at a time (a GPU runs one of
them efficiently; their per-request state stays out of the model). Requests (queries
and clicks) are served in arrival order; when one is running, the next ones either
wait in a bounded queue or are refused at once, as ``query.busy_policy`` says. A
tracking step runs only when no request is running or waiting: requests come first,
tracking resumes on the newest frame afterwards, and SAM 2's memory bridges the gap.

The real pipeline is imported and built only in :func:`load_pipeline`, so the node
starts (and its parameters validate) without importing the model stack; tests hand a
double to :class:`ModelHost` instead.
"""
from __future__ import annotations

import gc
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from unipixel_ros.results import QueryCancelled, QueryPipeline

BUSY_POLICIES: tuple[str, ...] = ("queue", "reject")
# Each waiting request holds an executor thread; the node sizes its executor from this.
MAX_QUEUED = 4
LOADING = "model load"
TRACKING = "tracking"
_CANCEL_POLL_S = 0.05


class ModelUnavailableError(ValueError):
    """A request that cannot run because no model is loaded (node inactive, or the load failed)."""


class BusyError(ValueError):
    """A request refused because the model is busy and the policy or queue says no."""


@dataclass(frozen=True)
class ModelSettings:
    model_id: str           # local checkpoint directory, Hugging Face id, or "tiny"
    device: str             # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str              # "auto", "float32", "bfloat16", "float16"
    decoder_backend: str    # mask decoder: torch, onnxruntime, tensorrt
    decoder_dir: str = ""   # exported decoder folder; empty = the per-model cache folder
    decoder_precision: str = "fp32"
    rebuild_decoder: bool = False
    compile: bool = False   # static KV cache + torch.compile'd decode step


# (settings, log) -> pipeline; ``log`` takes one-line notes for the user (fallbacks, untrained weights).
PipelineLoader = Callable[[ModelSettings, Callable[[str], None]], QueryPipeline]


def load_pipeline(settings: ModelSettings, log: Callable[[str], None]) -> QueryPipeline:
    """Build the real pipeline (imports the model stack)."""
    from unipixel_ros.pipeline import build_pipeline  # noqa: PLC0415 - heavy, loaded in the background

    return build_pipeline(settings.model_id, settings.device, settings.dtype, settings.decoder_backend,
                          decoder_dir=settings.decoder_dir or None, decoder_precision=settings.decoder_precision,
                          rebuild_decoder=settings.rebuild_decoder, compile=settings.compile, log=log)


def _free_accelerator_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class HostStats:
    loaded: bool
    load_error: str              # why the last load failed ("" = it did not)
    running: str                 # what holds the model now ("" = idle)
    queued: int
    served: int
    refused: int
    tracking_skipped: int        # tracking steps skipped because the model was busy
    last_request_s: float
    load_seconds: float          # duration of the last load, or time spent so far while loading
    tracking_skipped_by: Mapping[str, int] = field(default_factory=dict)   # the same, per camera


class ModelHost:
    """Owns the pipeline; loads it in the background and serialises its use (see the module doc).

    ``logger`` is the node's logger (``info``, ``warning`` and ``error`` are used).
    """

    def __init__(self, settings: ModelSettings, busy_policy: str, max_queued: int, logger: Any,
                 loader: PipelineLoader = load_pipeline) -> None:
        if busy_policy not in BUSY_POLICIES:
            raise ValueError(f"busy policy '{busy_policy}' is not one of {', '.join(BUSY_POLICIES)}")
        self.settings = settings
        self._loader = loader
        self._logger = logger
        self._policy = busy_policy
        self._max_queued = max_queued
        self._cond = threading.Condition()
        self._pipeline: QueryPipeline | None = None
        self._load_error = ""
        self._load_started = self._load_seconds = 0.0
        self._load_thread: threading.Thread | None = None   # the load running, wanted or abandoned
        self._load_wanted = False                # keep what that load returns
        self._running = ""                       # LOADING, TRACKING or the request's name
        self._running_cancel: threading.Event | None = None
        self._waiting: deque[object] = deque()
        self._served = self._refused = 0
        self._skipped: Counter[str] = Counter()
        self._last_request_s = 0.0

    # -- loading ---------------------------------------------------------------------------

    def start_loading(self) -> None:
        """Load the model in a background thread, unless it is loaded or loading.

        A load that :meth:`unload` abandoned but that is still running is taken back
        instead of starting a second one next to it (twice the memory).
        """
        with self._cond:
            if self._pipeline is not None or self._running == LOADING:
                return
            while self._running:                 # a request still finishing on an old model
                self._cond.wait()
            self._running, self._load_error, self._load_wanted = LOADING, "", True
            if self._load_thread is not None:    # abandoned, still running: keep its result after all
                return
            self._load_started = time.monotonic()
            self._load_thread = threading.Thread(target=self._load, name="unipixel-model-load", daemon=True)
            s = self.settings
            self._logger.info(f"loading model '{s.model_id}' (device {s.device}, dtype {s.dtype}, "
                              f"decoder {s.decoder_backend}) in the background")
            self._load_thread.start()

    def _load(self) -> None:
        pipeline, error = None, ""
        try:
            pipeline = self._loader(self.settings, self._note)
        except Exception as exc:  # missing files, bad ids, out of memory: all mean "no model"
            error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            self._load_thread = None
            abandoned = not self._load_wanted    # by unload(): keep nothing, say nothing
            if not abandoned:
                self._pipeline, self._load_error, self._running = pipeline, error, ""
                self._load_seconds = time.monotonic() - self._load_started
                # Logged under the lock, so that once unload() has returned nothing is logged
                # (the node may shut ROS down right after it).
                if error:
                    self._logger.error(f"could not load model '{self.settings.model_id}': {error}")
                else:
                    self._logger.info(f"model '{self.settings.model_id}' ready after {self._load_seconds:.1f} s")
            self._cond.notify_all()
        if abandoned and pipeline is not None:
            del pipeline
            _free_accelerator_memory()

    def _note(self, message: str) -> None:
        """The loader's notes (fallbacks, untrained weights), unless the load was abandoned."""
        with self._cond:
            if self._load_wanted:
                self._logger.warning(message)

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until no load is in progress; True when a model is loaded."""
        with self._cond:
            self._cond.wait_for(lambda: self._running != LOADING, timeout)
            return self._pipeline is not None

    def unload(self) -> None:
        """Drop the model: cancel the running request and wait for it; the waiting ones are
        refused (no model), not run one after the other.

        A load in progress is abandoned, not waited for: a checkpoint can take minutes
        to load and cannot be interrupted, so its thread (a daemon) finishes on its own
        and keeps nothing unless :meth:`start_loading` takes it back first.
        """
        with self._cond:
            self._pipeline = None                # the running request holds its own reference
            if self._running_cancel is not None:
                self._running_cancel.set()
            if self._running == LOADING:
                self._running, self._load_wanted = "", False
            self._cond.notify_all()
            while self._running:
                self._cond.wait()
        _free_accelerator_memory()

    # -- use -------------------------------------------------------------------------------

    @contextmanager
    def exclusive(self, what: str, cancel: threading.Event | None = None) -> Iterator[QueryPipeline]:
        """The pipeline, once the model is loaded and every earlier request is done.

        Raises :class:`BusyError` when the policy refuses to wait, :class:`QueryCancelled`
        when ``cancel`` is set while waiting, :class:`ModelUnavailableError` when no model
        is loaded or loading.
        """
        with self._cond:
            self._check_available(what)
            request_ahead = bool(self._waiting) or self._running not in ("", TRACKING)
            if request_ahead and self._policy == "reject":
                self._refused += 1
                raise BusyError(self._busy_message())
            if request_ahead and len(self._waiting) >= self._max_queued:
                self._refused += 1
                raise BusyError(f"busy: {len(self._waiting)} requests are already waiting "
                                f"(query.max_queued = {self._max_queued})")
            ticket = object()
            self._waiting.append(ticket)
            try:
                while self._running or self._waiting[0] is not ticket:
                    if cancel is not None and cancel.is_set():
                        raise QueryCancelled(f"{what} canceled while waiting for the model")
                    self._cond.wait(_CANCEL_POLL_S if cancel is not None else None)
                self._check_available(what)
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()
            self._running, self._running_cancel = what, cancel
            pipeline = self._pipeline
        start = time.perf_counter()
        try:
            yield pipeline
        finally:
            with self._cond:
                self._running, self._running_cancel = "", None
                self._served += 1
                self._last_request_s = time.perf_counter() - start
                self._cond.notify_all()

    @contextmanager
    def if_idle(self, who: str = TRACKING) -> Iterator[QueryPipeline | None]:
        """The pipeline for a tracking step, or None when it is busy, waited for, or not loaded.

        ``who`` (the camera) is what a step skipped because the model was busy is counted under.
        """
        with self._cond:
            if self._pipeline is None or self._running or self._waiting:
                if self._pipeline is not None:
                    self._skipped[who] += 1
                pipeline = None
            else:
                self._running = TRACKING
                pipeline = self._pipeline
        if pipeline is None:
            yield None
            return
        try:
            yield pipeline
        finally:
            with self._cond:
                self._running = ""
                self._cond.notify_all()

    @property
    def served(self) -> int:
        """Requests that have held the model so far (tracking steps not counted)."""
        with self._cond:
            return self._served

    @property
    def requests_waiting(self) -> bool:
        """Whether a request waits for the model (a long tracking step should give way)."""
        with self._cond:
            return bool(self._waiting)

    def stats(self) -> HostStats:
        with self._cond:
            loading = self._running == LOADING
            return HostStats(
                loaded=self._pipeline is not None, load_error=self._load_error, running=self._running,
                queued=len(self._waiting), served=self._served, refused=self._refused,
                tracking_skipped=self._skipped.total(), last_request_s=self._last_request_s,
                load_seconds=time.monotonic() - self._load_started if loading else self._load_seconds,
                tracking_skipped_by=dict(self._skipped))

    def _busy_message(self) -> str:
        if self._running == LOADING:
            return (f"busy: the model is still loading ({time.monotonic() - self._load_started:.0f} s so far) "
                    "and query.busy_policy is 'reject'; try again when it is ready")
        return (f"busy: a {self._running or 'request'} is running and query.busy_policy is 'reject'; "
                "try again when it is done")

    def _check_available(self, what: str) -> None:
        if self._pipeline is not None or self._running == LOADING:
            return
        if self._load_error:
            raise ModelUnavailableError(
                f"cannot run the {what}: model '{self.settings.model_id}' failed to load: {self._load_error}")
        raise ModelUnavailableError(f"cannot run the {what}: no model is loaded (is the node active?)")
