"""The node's kept objects: one memory bank per camera behind node-wide object ids.

The pipeline works on one camera's :class:`~unipixel_ros.memory.ObjectMemoryBank`
(it stores the objects a query should remember, and tracking steps every object of the
bank that is behind that camera's frame onto it and records the masks), so each camera has its
own bank. Users name objects by one id across the node (the memory
services take bare ids, label images and messages carry them), so this store hands out
node ids and maps them to (camera, bank id). It also keeps what the bank does not:
whether an object was visible on the newest tracked frame (``lost``) and when it was
first and last seen, which outlives the bank's bounded per-object frame history.
ROS-free and thread-safe.

Masks and seen times are keyed by camera stamps, so they belong to the camera's
timeline, which its frame window owns (:attr:`unipixel_ros.frames.FrameWindow.epoch`).
The store follows each camera's epoch: when it changes (the stamps jumped back), the
camera's per-frame masks and seen times are dropped, while the objects themselves, their
ids, labels and tracker state stay, so tracking goes on on the new timeline.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from unipixel_ros.memory import MemoryBankError, ObjectMemoryBank, ObjectRecord
from unipixel_ros.results import TrackedMask


class UnknownObjectError(MemoryBankError):
    """An object id that is not held (or not held for the camera in question)."""


class UnknownCameraError(MemoryBankError):
    """A camera name the store was not built with."""


class Timeline(Protocol):
    """What the store follows per camera (a :class:`~unipixel_ros.frames.FrameWindow`)."""

    @property
    def epoch(self) -> int: ...


@dataclass(frozen=True)
class StoredObject:
    """Snapshot of one kept object."""

    object_id: int                 # node-wide id
    camera: str
    record: ObjectRecord           # the bank's snapshot (its ``object_id`` is the bank's own id)
    lost: bool                     # not visible on the newest frame it was tracked or segmented on
    first_seen_ns: int | None      # first frame with a non-empty mask
    last_seen_ns: int | None       # newest frame with a non-empty mask

    @property
    def label(self) -> str:
        return self.record.label

    def mask_at(self, stamp_ns: int) -> np.ndarray | None:
        """The mask on frame ``stamp_ns``, None when none is held for it."""
        try:
            return self.record.masks[self.record.stamps.index(stamp_ns)]
        except ValueError:
            return None


@dataclass
class _Status:
    camera: str
    bank_id: int
    lost: bool
    first_seen_ns: int | None
    last_seen_ns: int | None

    def forget_stamps(self) -> None:
        self.first_seen_ns = self.last_seen_ns = None

    def saw(self, stamp_ns: int, visible: bool) -> None:
        self.lost = not visible
        if visible:
            if self.first_seen_ns is None or stamp_ns < self.first_seen_ns:
                self.first_seen_ns = stamp_ns
            if self.last_seen_ns is None or stamp_ns > self.last_seen_ns:
                self.last_seen_ns = stamp_ns


class ObjectStore:
    """Per-camera memory banks with node-wide ids (see the module doc)."""

    def __init__(self, cameras: Iterable[str], max_objects: int, max_frames_per_object: int,
                 timelines: Mapping[str, Timeline] | None = None) -> None:
        self._banks = {name: ObjectMemoryBank(max_objects, max_frames_per_object) for name in cameras}
        self._lock = threading.RLock()
        self._status: dict[int, _Status] = {}
        self._by_bank: dict[tuple[str, int], int] = {}
        self._next_id = 1
        self._timelines = dict(timelines or {})
        self._epochs = {name: timeline.epoch for name, timeline in self._timelines.items()}

    @property
    def cameras(self) -> tuple[str, ...]:
        return tuple(self._banks)

    def bank(self, camera: str) -> ObjectMemoryBank:
        """The camera's bank, as the pipeline takes it (on the camera's current timeline)."""
        try:
            bank = self._banks[camera]
        except KeyError:
            raise UnknownCameraError(
                f"unknown camera '{camera}' (configured: {', '.join(self._banks)})") from None
        self._follow(camera, bank)
        return bank

    def _follow(self, camera: str, bank: ObjectMemoryBank) -> None:
        """Drop what belongs to the camera's old timeline once its epoch moved on."""
        timeline = self._timelines.get(camera)
        if timeline is None:
            return
        with self._lock:
            epoch = timeline.epoch
            if epoch == self._epochs[camera]:
                return
            self._epochs[camera] = epoch
            bank.clear_frames()
            for status in self._status.values():
                if status.camera == camera:
                    status.forget_stamps()

    def add(self, camera: str, label: str, frames: Iterable[tuple[int, np.ndarray, float]],
            tracking: object | None = None, epoch: int | None = None) -> int:
        """Keep a new object with its (stamp_ns, mask, score) frames and the tracker state that
        continues it on new frames; returns its node id. ``epoch``: see :meth:`adopt`.

        Raises :class:`~unipixel_ros.memory.MemoryFullError` when the camera's bank is full.
        """
        bank = self.bank(camera)
        with self._lock:
            bank_id = bank.add(label, sorted(frames, key=lambda f: f[0]))
            if tracking is not None:
                bank.attach_tracking(bank_id, tracking)
            return self.adopt(camera, bank_id, epoch)

    def adopt(self, camera: str, bank_id: int, epoch: int | None = None) -> int:
        """Give a node id to an object the pipeline stored in ``camera``'s bank (idempotent).

        ``epoch`` is the timeline of the frames the object was segmented on: when the
        camera's stamps jumped back while the model worked, the object is kept (with its
        tracker state) but its masks, stamped on the ended timeline, are dropped, as they
        are for objects that were kept before the jump."""
        with self._lock:
            known = self._by_bank.get((camera, bank_id))
            if known is not None:
                return known
            bank = self.bank(camera)
            if epoch is not None and epoch != self._epochs.get(camera, epoch):
                for stamp in bank.get(bank_id).stamps:
                    bank.discard_frame(bank_id, stamp)
            record = bank.get(bank_id)
            object_id = self._next_id
            self._next_id += 1
            status = _Status(camera, bank_id, lost=True, first_seen_ns=None, last_seen_ns=None)
            for stamp, mask in zip(record.stamps, record.masks):
                status.saw(stamp, bool(mask.any()))
            self._status[object_id] = status
            self._by_bank[(camera, bank_id)] = object_id
            return object_id

    def record_tracking(self, camera: str, stamp_ns: int, tracked: Mapping[int, TrackedMask],
                        epoch: int | None = None) -> None:
        """Note one tracking step (bank id -> mask on frame ``stamp_ns``; the pipeline has
        stored the masks in the bank). Objects of the camera missing from ``tracked`` count
        as not visible, except those the step left alone because they already hold a mask
        on that frame or a newer one. ``epoch`` is the timeline of that frame: a step on a
        frame of a timeline that has ended meanwhile is not recorded, and the masks the
        pipeline stored for it are dropped."""
        with self._lock:
            bank = self.bank(camera)
            if epoch is not None and epoch != self._epochs.get(camera, 0):
                for bank_id in tracked:
                    if bank_id in bank:
                        bank.discard_frame(bank_id, stamp_ns)
                return
            ahead = {bank_id for bank_id, newest in bank.newest_tracked().items()
                     if bank_id not in tracked and newest is not None and newest >= stamp_ns}
            for (cam, bank_id), object_id in self._by_bank.items():
                if cam == camera and bank_id not in ahead:
                    step = tracked.get(bank_id)
                    visible = step is not None and step.visible and bool(step.mask.any())
                    self._status[object_id].saw(stamp_ns, visible)

    def bank_id(self, camera: str, object_id: int) -> int:
        """The bank id of node object ``object_id``, which must belong to ``camera``."""
        with self._lock:
            status = self._status.get(object_id)
            if status is None:
                raise UnknownObjectError(f"no object with id {object_id} in memory")
            if status.camera != camera:
                raise UnknownObjectError(f"object {object_id} belongs to camera '{status.camera}', not '{camera}'")
            return status.bank_id

    def remove(self, object_ids: Iterable[int]) -> tuple[list[int], list[int]]:
        """Forget objects; returns (removed ids, unknown ids)."""
        removed, unknown = [], []
        with self._lock:
            for object_id in object_ids:
                status = self._status.pop(object_id, None)
                if status is None:
                    unknown.append(object_id)
                    continue
                del self._by_bank[(status.camera, status.bank_id)]
                self._banks[status.camera].remove(status.bank_id)
                removed.append(object_id)
        return removed, unknown

    def reset(self, camera: str | None = None) -> int:
        """Forget every object of ``camera`` (all cameras when None); returns how many."""
        with self._lock:
            if camera is not None:
                self.bank(camera)
            cameras = self.cameras if camera is None else (camera,)
            ids = [i for i, s in self._status.items() if s.camera in cameras]
            self.remove(ids)
            return len(ids)

    def objects(self, camera: str | None = None) -> list[StoredObject]:
        """Snapshots of the kept objects (of one camera, or all), in id order."""
        with self._lock:
            for name in self.cameras if camera is None else (camera,):
                self.bank(name)                    # unknown camera check, and its current timeline
            return [self._snapshot(i, s) for i, s in sorted(self._status.items())
                    if camera is None or s.camera == camera]

    def get(self, object_id: int) -> StoredObject:
        with self._lock:
            status = self._status.get(object_id)
            if status is None:
                raise UnknownObjectError(f"no object with id {object_id} in memory")
            self.bank(status.camera)
            return self._snapshot(object_id, status)

    def __len__(self) -> int:
        with self._lock:
            return len(self._status)

    def _snapshot(self, object_id: int, status: _Status) -> StoredObject:
        return StoredObject(object_id=object_id, camera=status.camera,
                            record=self._banks[status.camera].get(status.bank_id), lost=status.lost,
                            first_seen_ns=status.first_seen_ns, last_seen_ns=status.last_seen_ns)
