"""The loaded pipeline and who may use it when.

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
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from unipixel_ros.results import QueryCancelled, QueryPipeline

BUSY_POLICIES: tuple[str, ...] = ("queue", "reject")
DEVICES_AUTO = "auto"
_CANCEL_POLL_S = 0.05


class ModelLoadError(ValueError):
    """The configured model could not be loaded; the message says which and why."""


class ModelUnavailableError(ValueError):
    """A request arrived while no model is loaded (node inactive)."""


class BusyError(ValueError):
    """A request refused because the model is busy and the policy or queue says no."""


@dataclass(frozen=True)
class ModelSettings:
    model_id: str           # local checkpoint directory or Hugging Face id
    device: str             # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str              # "auto", "float32", "bfloat16", "float16"
    decoder_backend: str    # mask decoder: torch, onnxruntime, tensorrt


# (settings, log) -> pipeline; ``log`` takes one-line notes for the user (fallbacks, untrained weights).
PipelineLoader = Callable[[ModelSettings, Callable[[str], None]], QueryPipeline]


def load_pipeline(settings: ModelSettings, log: Callable[[str], None]) -> QueryPipeline:
    """Build the real pipeline (imports the model stack)."""
    from unipixel_ros.pipeline import build_pipeline  # noqa: PLC0415 - heavy, loaded on configure

    return build_pipeline(settings.model_id, settings.device, settings.dtype, settings.decoder_backend, log=log)


def _free_accelerator_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass(frozen=True)
class HostStats:
    loaded: bool
    running: str                 # what runs now ("" = idle)
    queued: int
    served: int
    refused: int
    tracking_skipped: int        # tracking steps skipped because a request held the model
    last_request_s: float


class ModelHost:
    """Owns the pipeline; serialises its use (see the module doc)."""

    def __init__(self, settings: ModelSettings, busy_policy: str, max_queued: int, log: Callable[[str], None],
                 loader: PipelineLoader = load_pipeline) -> None:
        if busy_policy not in BUSY_POLICIES:
            raise ValueError(f"busy policy '{busy_policy}' is not one of {', '.join(BUSY_POLICIES)}")
        self.settings = settings
        self._loader = loader
        self._log = log
        self._policy = busy_policy
        self._max_queued = max_queued
        self._cond = threading.Condition()
        self._pipeline: QueryPipeline | None = None
        self._running = ""                       # request or "tracking"
        self._running_cancel: threading.Event | None = None
        self._waiting: deque[object] = deque()
        self._served = self._refused = self._skipped = 0
        self._last_request_s = 0.0

    @property
    def loaded(self) -> bool:
        return self._pipeline is not None

    def load(self) -> None:
        """Load the model unless it is loaded; errors become :class:`ModelLoadError`."""
        with self._cond:
            if self._pipeline is not None:
                return
        try:
            pipeline = self._loader(self.settings, self._log)
        except Exception as exc:  # missing files, bad ids, out of memory: all mean "no model"
            raise ModelLoadError(f"could not load model '{self.settings.model_id}' on "
                                 f"{self.settings.device}: {type(exc).__name__}: {exc}") from exc
        with self._cond:
            self._pipeline = pipeline
            self._cond.notify_all()

    def unload(self) -> None:
        """Cancel the running request, wait for it, and drop the model."""
        with self._cond:
            if self._running_cancel is not None:
                self._running_cancel.set()
            while self._running:
                self._cond.wait()
            self._pipeline = None
            self._cond.notify_all()
        _free_accelerator_memory()

    @contextmanager
    def exclusive(self, what: str, cancel: threading.Event | None = None) -> Iterator[QueryPipeline]:
        """The pipeline, once every earlier request is done.

        Raises :class:`BusyError` when the policy refuses to wait, :class:`QueryCancelled`
        when ``cancel`` is set while waiting, :class:`ModelUnavailableError` when no model
        is loaded.
        """
        with self._cond:
            self._check_loaded(what)
            request_ahead = bool(self._waiting) or (self._running not in ("", "tracking"))
            if request_ahead and self._policy == "reject":
                self._refused += 1
                raise BusyError(f"busy: a {self._running or 'request'} is running and query.busy_policy "
                                "is 'reject'; try again when it is done")
            if len(self._waiting) >= self._max_queued + (0 if request_ahead else 1):
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
                    self._check_loaded(what)
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
    def if_idle(self) -> Iterator[QueryPipeline | None]:
        """The pipeline for a tracking step, or None when a request runs or waits (or no model)."""
        with self._cond:
            if self._pipeline is None or self._running or self._waiting:
                if self._pipeline is not None:
                    self._skipped += 1
                pipeline = None
            else:
                self._running = "tracking"
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

    def stats(self) -> HostStats:
        with self._cond:
            return HostStats(loaded=self._pipeline is not None, running=self._running,
                             queued=len(self._waiting), served=self._served, refused=self._refused,
                             tracking_skipped=self._skipped, last_request_s=self._last_request_s)

    def _check_loaded(self, what: str) -> None:
        if self._pipeline is None:
            raise ModelUnavailableError(f"cannot run the {what}: no model is loaded (is the node active?)")
