"""``actdet run``: stream long videos through person detection, the action model and tube linking.

Data flow of one video (three threads, bounded queues between them)::

    decode thread   FrameStream (PyAV) ─ resize once: model size (+ output size for annotated.mp4)
                    keyframe schedule (ava | every:N | fps:F); the original image kept for keyframes only
        │ queue of run.queue_size frames
    main thread     ring buffer of the last (T-1)·τ+1 model-size frames → the clip of each keyframe,
                    indices centre + (k - T//2)·τ clamped to the frames decoded ([first, last]), cut as soon
                    as its last frame arrives (keyframes near the end wait for the end of the stream);
                    person detector in batches of detector.batch_size keyframes; action model in batches of
                    run.batch_size clips (uint8 to the device, pinned and non-blocking on CUDA, normalised
                    there; bf16 autocast on CUDA)
        │ queue of keyframe results and output-size frames
    sink thread     TubeLinker (online) → detections.csv, tubes.json, tracks.txt, cvat.xml, annotated.mp4

Memory is bounded by the clip span, the batch sizes and the queue sizes, never by the video's length.

Outputs of a video go to ``DIR/.<video>.partial/`` and the folder is renamed to ``DIR/<video>/`` once every
file and ``run.json`` (written last) are complete. ``resume=True`` skips videos whose ``run.json`` records the
same settings and input (path, size, mtime); an interrupted video is redone from its start. Processing is
deterministic (batches depend on the data only), so the redone files have the bytes an uninterrupted run
writes (``run.json`` differs in its timings).

A video that cannot be read, stops decoding early (truncated, corrupt) or has no frames fails alone; the
others go on. Several processes (``torchrun``): rank r of W takes videos r, r + W, ...; rank 0 writes
``DIR/summary.json`` for all of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import queue
import shutil
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from detection.config import RunConfig, config_to_dict
from detection.data.ava_dataset import clip_indices
from detection.formats.ava import atomic_write
from detection.formats.tubes import VideoTubes
from detection.persons.base import PersonDetections, PersonDetector
from detection.persons.detect_job import validate_video_id
from detection.persons.keyframes import KeyframeSchedule, parse_keyframes
from detection.structures import KeyframeDetections
from detection.tubes.linker import LinkerConfig, TubeLinker
from detection.video import Frame, FrameStream, VideoDecodeWarning, VideoReadError, output_size, probe

__all__ = [
    "RunSummary", "VideoResult", "VideoRunError", "detector_fingerprint_of", "model_fingerprint",
    "run_video", "run_videos", "shard_of",
]

OUTPUT_FILES = ("detections.csv", "tubes.json", "tracks.txt", "cvat.xml", "annotated.mp4")
_END = object()


class VideoRunError(RuntimeError):
    """One video cannot be processed (decoding stopped early, no frames)."""


@dataclass
class VideoResult:
    """What happened to one video. ``status``: done (outputs written), skipped (done by an earlier run,
    ``--resume``) or failed (``error`` says why; nothing written). ``video_s``: seconds of video processed."""

    video_id: str
    path: str
    status: Literal["done", "skipped", "failed"]
    out_dir: str | None = None
    error: str | None = None
    frames: int = 0
    keyframes: int = 0
    people: int = 0  # person boxes over all keyframes
    tracks: int = 0
    tubes: dict[str, int] = field(default_factory=dict)  # action name -> tubes
    video_s: float = 0.0
    wall_s: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RunSummary:
    """The videos of a run (all ranks' on rank 0 of a sharded run) and the totals."""

    out_dir: Path
    videos: list[VideoResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def failed(self) -> list[VideoResult]:
        return [v for v in self.videos if v.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def realtime_factor(self) -> float | None:
        """Seconds of video processed per second of wall time in this run (> 1: faster than real time)."""
        done = [v for v in self.videos if v.status == "done"]
        busy = sum(v.wall_s for v in done)
        return sum(v.video_s for v in done) / busy if busy > 0 else None

    def to_dict(self) -> dict[str, Any]:
        tubes: Counter[str] = Counter()
        for v in self.videos:
            tubes.update(v.tubes)
        return {
            "out_dir": str(self.out_dir),
            "videos": [asdict(v) for v in self.videos],
            "done": sum(v.status == "done" for v in self.videos),
            "skipped": sum(v.status == "skipped" for v in self.videos),
            "failed": len(self.failed),
            "people": sum(v.people for v in self.videos),
            "tracks": sum(v.tracks for v in self.videos),
            "tubes": dict(sorted(tubes.items())),
            "realtime_factor": self.realtime_factor,
        }

    def text(self) -> str:
        d = self.to_dict()
        lines = [f"{d['done']} videos done, {d['skipped']} skipped (already done), {d['failed']} failed; "
                 f"outputs in {self.out_dir}",
                 f"people (boxes on keyframes): {d['people']}, tracks: {d['tracks']}, "
                 f"tubes: {sum(d['tubes'].values())}"]
        lines += [f"  {name}: {count}" for name, count in d["tubes"].items()]
        if self.realtime_factor is not None:
            lines.append(f"speed: {self.realtime_factor:.2f}x real time (video seconds per wall-clock second)")
        for v in self.videos:
            for w in v.warnings:
                lines.append(f"warning: {v.video_id}: {w}")
        if self.failed:
            lines.append(f"{len(self.failed)} videos failed:")
            lines += [f"  {v.video_id} ({v.path}): {v.error}" for v in self.failed]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Threads with bounded queues


class _Producer:
    """Run ``generate()`` in a thread and yield its items through a queue of ``maxsize``; its exception
    is raised in the consumer. ``close()`` stops it early."""

    def __init__(self, generate: Callable[[], Iterator[Any]], maxsize: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(generate,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, generate: Callable[[], Iterator[Any]]) -> None:
        try:
            for item in generate():
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the consumer
            self._put(("__error__", err))

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, tuple) and len(item) == 2 and item[0] == "__error__":
                raise item[1]
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _Consumer:
    """Run ``handle(item)`` in a thread for the items ``put`` into a queue of ``maxsize``; an exception
    there is raised by the next ``put`` or by ``close``."""

    def __init__(self, handle: Callable[[Any], None], maxsize: int, name: str) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._error: BaseException | None = None
        self._handle = handle
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if self._error is None:
                try:
                    self._handle(item)
                except BaseException as err:
                    self._error = err

    def put(self, item: Any) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self) -> None:
        self._queue.put(_END)
        self._thread.join()
        if self._error is not None:
            raise self._error


# --------------------------------------------------------------------------------------------------
# Keyframes and clips


class _KeyframePicker:
    """The keyframes among a stream's frames, streaming: ``every:N`` takes frames ``0, N, 2N, ...``;
    ``ava`` / ``fps:F`` the frame nearest to each time ``k / rate`` (the earlier on a tie), as
    :meth:`KeyframeSchedule.frame_indices` does. Yields ``(frame index, keyframe time in seconds)``."""

    def __init__(self, schedule: KeyframeSchedule, fps: float, start_s: float | None, end_s: float | None) -> None:
        self.schedule = schedule
        self._src = Fraction(fps).limit_denominator(1_000_000)
        self._end = None if end_s is None else Fraction(end_s).limit_denominator(1_000_000)
        self._last_emitted = -1
        if schedule.rate is not None:
            self._rate = Fraction(schedule.rate).limit_denominator(1_000_000)
            start = Fraction(start_s or 0).limit_denominator(1_000_000)
            self._k = math.ceil(start * self._rate)

    def _time(self) -> Fraction:
        return Fraction(self._k) / self._rate

    def _wanted(self) -> int:
        return math.ceil(self._time() * self._src - Fraction(1, 2))

    def _in_window(self) -> bool:
        return self._end is None or self._time() < self._end

    def picks(self, index: int, time_s: float) -> list[tuple[int, float]]:
        if self.schedule.kind == "every":
            return [(index, time_s)] if index % self.schedule.every == 0 else []
        out = []
        while self._in_window() and self._wanted() <= index:
            if index != self._last_emitted:  # two keyframe times on one frame: the first one
                out.append((index, float(self._time())))
                self._last_emitted = index
            self._k += 1
        return out

    def finish(self, last_index: int) -> list[tuple[int, float]]:
        """Keyframe times within the last frame's period (it lasts one source period)."""
        if self.schedule.kind == "every" or last_index < 0:
            return []
        out = []
        while self._in_window() and self._time() < Fraction(last_index + 1) / self._src:
            if last_index != self._last_emitted:
                out.append((last_index, float(self._time())))
                self._last_emitted = last_index
            self._k += 1
        return out


@dataclass
class _Keyframe:
    """One keyframe in flight: its detection image until detected, its clip until classified."""

    index: int
    time_s: float
    image: np.ndarray | None
    people: PersonDetections | None = None
    clip: np.ndarray | None = None  # (T, H, W, 3) uint8 at the model's size
    last_needed: int = 0  # the clip is complete once this frame has arrived


def _even_size(short_side: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) with the short side ``short_side`` (never above the video's), both even."""
    return output_size(min(short_side, width, height), width, height)


class _Classifier:
    """The action model on batches of clips: uint8 frames go to the device (pinned, non-blocking on CUDA)
    and are normalised there."""

    def __init__(self, model: Any, device: Any) -> None:
        import torch

        self.model, self.device = model, device
        spec = model.input_spec
        self._mean = torch.tensor(spec.mean, dtype=torch.float32, device=device) * 255.0
        self._std = torch.tensor(spec.std, dtype=torch.float32, device=device) * 255.0

    def __call__(self, clips: list[np.ndarray], boxes: list[np.ndarray]) -> list[np.ndarray]:
        """Probabilities (N_i, C) for each clip (T, H, W, 3) uint8 and its normalized boxes (N_i, 4)."""
        import torch

        x = torch.from_numpy(np.stack(clips))
        on_cuda = self.device.type == "cuda"
        if on_cuda:
            x = x.pin_memory()
        x = x.to(self.device, non_blocking=on_cuda)
        x = ((x.float() - self._mean) / self._std).permute(0, 4, 1, 2, 3).contiguous()  # (B, 3, T, H, W)
        b = [torch.from_numpy(np.ascontiguousarray(bx, np.float32)).to(self.device, non_blocking=on_cuda)
             for bx in boxes]
        scores = self.model.predict(x, b).float().cpu().numpy()
        # Kept to 1e-4 (the CSV keeps 4 decimals): the same model on the same clips can differ in the last
        # float bits between processes (SIMD kernels depend on memory alignment), and a resumed run must
        # write the bytes of an uninterrupted one, captions included.
        scores = np.round(scores, 4).astype(np.float32)
        bounds = np.cumsum([0] + [len(bx) for bx in boxes])
        return [scores[bounds[i] : bounds[i + 1]] for i in range(len(boxes))]


# --------------------------------------------------------------------------------------------------
# One video


def _signature(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class _VideoJob:
    """Everything about processing one video into a staging folder; :meth:`run` returns the counts."""

    def __init__(self, path: Path, video_id: str, model: Any, detector: PersonDetector, run: RunConfig,
                 linker: LinkerConfig, staging: Path, classifier: _Classifier, progress: bool) -> None:
        self.path, self.video_id, self.model, self.detector = path, video_id, model, detector
        self.run, self.linker_cfg, self.staging, self.classify = run, linker, staging, classifier
        self.progress = progress
        self.schedule = parse_keyframes(run.keyframes)
        self.spec = model.input_spec
        self.label_map = model.label_map
        self.lookup = not getattr(detector, "needs_frames", True)
        self.timings: Counter[str] = Counter()
        self.peaks: Counter[str] = Counter()  # the most items each buffer held (bounded: see the module doc)
        self.result: dict[str, Any] = {}
        self.warnings: list[str] = []

    # -- decode thread -----------------------------------------------------------------------------
    def _decode(self, sizes: dict[str, tuple[int, int]]) -> Iterator[tuple]:
        import cv2

        run = self.run
        picker = _KeyframePicker(self.schedule, self.info.fps, run.start_s, run.end_s)
        need_image = not self.lookup
        last: tuple[int, Frame | None] = (-1, None)
        with FrameStream(self.path, size=sizes["decode"], start_s=run.start_s, end_s=run.end_s) as stream:
            it = iter(stream)
            while True:
                clock = time.perf_counter()
                frame = next(it, None)
                if frame is None:
                    break
                image = frame.image
                model_image = image if sizes["model"] == sizes["decode"] else cv2.resize(
                    image, sizes["model"], interpolation=cv2.INTER_AREA)
                display = None
                if run.video:
                    display = image if sizes["display"] == sizes["decode"] else cv2.resize(
                        image, sizes["display"], interpolation=cv2.INTER_AREA)
                keys = picker.picks(frame.index, frame.time_s)
                last = (frame.index, frame if need_image else None)
                full = stream.full_image(frame) if keys and need_image else None
                self.timings["decode_s"] += time.perf_counter() - clock
                yield frame.index, model_image, display, keys, full
            if stream.stopped_early:
                where = (f"after frame {stream.last_good[0]} ({stream.last_good[1]:.3f} s)" if stream.last_good
                         else "before the first frame")
                raise VideoRunError(f"{self.path}: decoding stopped early {where} (truncated or corrupt file)")
            tail = picker.finish(last[0])
            if tail:
                yield None, None, None, tail, stream.full_image(last[1]) if last[1] is not None else None

    # -- sink thread -------------------------------------------------------------------------------
    def _open_sinks(self, display: tuple[int, int], num_frames: int | None, stride: int) -> None:
        from detection.sinks.annotated_video import AnnotatedVideoSink
        from detection.sinks.csv_sink import DetectionsCsvSink
        from detection.sinks.cvat import CvatVideoWriter
        from detection.sinks.mot import MotSink
        from detection.sinks.tubes import TubesJsonSink

        run, info, d = self.run, self.info, self.staging
        track_ids = run.csv_track_ids if run.csv_track_ids is not None else self.schedule.kind != "ava"
        labels = dict(zip(self.label_map.ids, self.label_map.names, strict=True))
        self.linker = TubeLinker(self.label_map, info.fps, stride, self.linker_cfg, num_frames, keep_tracks=True,
                                 keep_keyframes=True)
        self.sinks: list[Any] = []
        self.csv = DetectionsCsvSink(d / "detections.csv", self.label_map, time_offset=run.time_offset,
                                     min_score=run.action_threshold, track_ids=track_ids)
        self.tubes = TubesJsonSink(d / "tubes.json", VideoTubes(self.video_id, float(info.fps), info.width,
                                                                 info.height, labels))
        self.mot = MotSink(d / "tracks.txt", info.width, info.height)
        self.sinks += [self.csv, self.tubes, self.mot]
        self.cvat = self.video = None
        if run.cvat:
            self.cvat = CvatVideoWriter(d / "cvat.xml", self.label_map, info.width, info.height, name=self.video_id,
                                        source=self.path.name)
            self.sinks.append(self.cvat)
        if run.video:
            self.video = AnnotatedVideoSink(d / "annotated.mp4", info.fps, *display, self.label_map,
                                            top_k=run.video_top_k, threshold=run.video_score_threshold)
            self.sinks.append(self.video)
        self.track_set: set[int] = set()

    def _dispatch(self, tubes: list) -> None:
        self.tubes.write(tubes)
        pieces = self.linker.pop_track_pieces()
        self.mot.write(pieces)
        keyframes = self.linker.pop_keyframes()
        self.csv.write(keyframes)
        for kf in keyframes:
            if kf.track_ids is not None:
                self.track_set.update(kf.track_ids[kf.track_ids >= 0].tolist())
        if self.cvat is not None:
            self.cvat.add_pieces(pieces)
            self.cvat.add_tubes(tubes)
            self.cvat.add_keyframes(kf.frame_index for kf in keyframes)
        if self.video is not None:
            self.video.add_keyframes(keyframes)

    def _sink(self, item: tuple) -> None:
        clock = time.perf_counter()
        kind = item[0]
        if kind == "frame":
            self.video.add_frame(item[1], item[2])
            self.peaks["held_frames"] = max(self.peaks["held_frames"], self.video.held)
        elif kind == "keyframe":
            self._dispatch(self.linker.update(item[1]))
        elif kind == "end":
            self._dispatch(self.linker.finish())
            self.csv.close()
            self.tubes.close()
            self.mot.close()
            if self.cvat is not None:
                self.cvat.close(item[1])
            if self.video is not None:
                self.video.close()
        self.timings["sinks_s"] += time.perf_counter() - clock

    # -- main thread -------------------------------------------------------------------------------
    def _detect(self, batch: list[_Keyframe]) -> None:
        clock = time.perf_counter()
        if self.lookup:
            for key in batch:
                key.people = self.detector.detect_keyframe(self.video_id, self.run.time_offset + key.time_s)
        else:
            for key, people in zip(batch, self.detector.detect([k.image for k in batch]), strict=True):
                key.people = people
        for key in batch:
            key.image = None
        self.timings["detector_s"] += time.perf_counter() - clock

    def _cut(self, key: _Keyframe, ring: deque, first: int, last: int) -> None:
        wanted = np.clip(clip_indices(key.index, self.spec.num_frames, self.spec.sampling_rate, None), first, last)
        have = {i: image for i, image in ring}
        indices = np.array(sorted(have))
        if not np.isin(wanted, indices).all():  # a frame missing (decode gap): the nearest one kept
            wanted = indices[np.abs(indices[None, :] - wanted[:, None]).argmin(axis=1)]
        key.clip = np.stack([have[i] for i in wanted.tolist()])

    def run_job(self, sink: _Consumer, first_frame: list[int]) -> None:
        """Stream the video; hand keyframe results and frames to ``sink`` in order."""
        from tqdm import tqdm

        spec, run = self.spec, self.run
        span_after = (spec.num_frames - 1 - spec.num_frames // 2) * spec.sampling_rate
        ring: deque = deque(maxlen=(spec.num_frames - 1) * spec.sampling_rate + 1)
        inflight: deque[_Keyframe] = deque()
        det_batch = self.detector.settings.batch_size
        num_classes = len(self.label_map)
        counts = {"frames": 0, "keyframes": 0, "people": 0}

        def emit(key: _Keyframe, scores: np.ndarray | None) -> None:
            people = key.people
            n = len(people)
            kf = KeyframeDetections(self.video_id, key.index, key.time_s, people.boxes, people.scores,
                                    scores if scores is not None else np.zeros((n, num_classes), np.float32))
            counts["keyframes"] += 1
            counts["people"] += n
            sink.put(("keyframe", kf))

        def advance(final: bool) -> None:
            waiting = [k for k in inflight if k.people is None]
            while waiting and (len(waiting) >= det_batch or final):
                self._detect(waiting[:det_batch])
                waiting = waiting[det_batch:]
            while inflight:
                # The leading keyframes that are ready (detected; cut, unless nobody is on them), up to the
                # one that makes a full batch of clips. Batches hold the next run.batch_size keyframes with
                # people, in order, whenever they are formed: they depend on the data only.
                ready = with_people = 0
                for key in inflight:
                    if key.people is None or (len(key.people) and key.clip is None):
                        break
                    ready += 1
                    with_people += bool(len(key.people))
                    if with_people == run.batch_size:
                        break
                if with_people < run.batch_size and not final:
                    ready = 0  # only the people-free keyframes at the head go now
                    for key in inflight:
                        if key.people is None or len(key.people):
                            break
                        ready += 1
                if ready == 0:
                    return
                batch = [inflight.popleft() for _ in range(ready)]
                todo = [k for k in batch if len(k.people)]
                results: dict[int, np.ndarray] = {}
                if todo:
                    clock = time.perf_counter()
                    scores = self.classify([k.clip for k in todo], [k.people.boxes for k in todo])
                    self.timings["model_s"] += time.perf_counter() - clock
                    results = {id(k): s for k, s in zip(todo, scores, strict=True)}
                for key in batch:
                    key.clip = None
                    emit(key, results.get(id(key)))

        decoder = _Producer(lambda: self._decode(self.sizes), run.queue_size, f"decode-{self.video_id}")
        bar = tqdm(total=self.expected_frames, desc=self.video_id, unit="frame", leave=False,
                   disable=not self.progress)
        first = last = None
        try:
            for index, model_image, display, keys, image in decoder:
                if index is not None:
                    first = index if first is None else first
                    last = index
                    ring.append((index, model_image))
                    counts["frames"] += 1
                    bar.update(1)
                    if display is not None:
                        sink.put(("frame", index, display))
                for k_index, k_time in keys:
                    inflight.append(_Keyframe(k_index, k_time, image, last_needed=k_index + span_after))
                for key in inflight:  # clips whose last frame has arrived
                    if key.clip is None and key.last_needed <= last and (key.people is None or len(key.people)):
                        self._cut(key, ring, first, last)
                advance(final=False)
                self.peaks["keyframes_in_flight"] = max(self.peaks["keyframes_in_flight"], len(inflight))
        finally:
            decoder.close()
            bar.close()
        if first is None:
            raise VideoRunError(f"{self.path}: no frame decoded" + (
                f" between {run.start_s or 0:g} s and {run.end_s:g} s" if run.end_s is not None else ""))
        for key in inflight:  # keyframes near the end: clips clamped to the last frame
            if key.clip is None:
                self._cut(key, ring, first, last)
        advance(final=True)
        first_frame[:] = [first, last]
        self.result.update(counts)

    def execute(self) -> dict[str, Any]:
        run, spec = self.run, self.spec
        clock = time.perf_counter()
        self.info = probe(self.path)
        info = self.info
        model_size = _even_size(spec.short_side, info.width, info.height)
        display = (_even_size(run.video_short_side, info.width, info.height) if run.video_short_side
                   else (info.width - info.width % 2, info.height - info.height % 2))
        full = (info.width, info.height)
        # Decode every frame once, at the annotated output's size (when not below the model's) or the model's;
        # a detector that looks at pixels gets its keyframes at the original size (FrameStream.full_image).
        if run.video:
            decode = display if min(display) >= min(model_size) else full
        else:
            decode = model_size
        self.sizes = {"decode": decode, "model": model_size, "display": display}
        if self.schedule.kind == "every":
            stride = self.schedule.every
        else:
            stride = max(1, round(info.fps / self.schedule.rate))
        num_frames = info.num_frames
        if num_frames and run.end_s is not None:
            num_frames = min(num_frames, math.ceil(run.end_s * info.fps))
        start_frame = round((run.start_s or 0) * info.fps)
        self.expected_frames = max(0, num_frames - start_frame) if num_frames else None
        self._open_sinks(display, num_frames, stride)
        sink = _Consumer(self._sink, run.queue_size, f"sinks-{self.video_id}")
        bounds: list[int] = []
        try:
            self.run_job(sink, bounds)
            sink.put(("end", bounds[1] + 1))
        except BaseException:
            with contextlib.suppress(BaseException):
                sink.close()
            for s in self.sinks:
                with contextlib.suppress(Exception):
                    s.abort()
            raise
        sink.close()
        if self.result["people"] == 0:
            self.warnings.append(f"no people detected on {self.result['keyframes']} keyframes")
        names = dict(zip(self.label_map.ids, self.label_map.names, strict=True))
        self.result.update(
            tracks=len(self.track_set),
            tubes={names[label]: n for label, n in sorted(self.tubes.counts.items())},
            video_s=(bounds[1] - bounds[0] + 1) / info.fps,
            first_frame=bounds[0], last_frame=bounds[1], size=[info.width, info.height], fps=info.fps,
            model_size=list(model_size), output_size=list(display) if run.video else None, keyframe_stride=stride,
            buffers={"ring_frames": (spec.num_frames - 1) * spec.sampling_rate + 1, "queue_size": run.queue_size,
                     **self.peaks},
        )
        self.timings["wall_s"] = time.perf_counter() - clock
        return self.result


def _fingerprint(run: RunConfig, linker: LinkerConfig, extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings that change a video's outputs (batch and queue sizes and the device do not)."""
    settings = {k: v for k, v in config_to_dict(run).items() if k not in ("batch_size", "queue_size", "device")}
    return json.loads(json.dumps({"run": settings, "tubes": config_to_dict(linker), **(extra or {})}, default=str))


def model_fingerprint(model: Any) -> dict[str, Any]:
    """A model's class, label map, input and a SHA-1 of its weights."""
    import torch

    digest = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(dtype=torch.uint8).numpy())
    return {"class": type(model).__name__, "labels": [[int(i), n] for i, n in model.label_map],
            "input": model.input_spec.to_dict(), "weights_sha1": digest.hexdigest()}


def detector_fingerprint_of(detector: PersonDetector) -> dict[str, Any]:
    """A detector's class, its filters and, for precomputed boxes, the file's size and mtime."""
    out: dict[str, Any] = {"class": type(detector).__name__,
                           **{k: v for k, v in asdict(detector.settings).items() if k not in ("batch_size", "device")}}
    path = getattr(detector, "path", None)
    if path is not None and Path(path).is_file():
        stat = Path(path).stat()
        out["file"] = {"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return out


def run_video(
    path: str | os.PathLike,
    model: Any,
    detector: PersonDetector,
    out_dir: str | os.PathLike,
    *,
    run: RunConfig | None = None,
    linker: LinkerConfig | None = None,
    video_id: str | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    progress: bool = False,
    _classifier: _Classifier | None = None,
) -> VideoResult:
    """Process one video into ``out_dir/<video_id>/`` (see the module doc); returns what happened.

    ``model``: an ActionModel (or the pytorchvideo wrapper), on any device; clips go to its device.
    ``detector``: any PersonDetector (precomputed boxes are looked up at ``run.time_offset`` + keyframe
    time). ``video_id``: default the file's stem. ``fingerprint``: what identifies the model/detector for
    ``--resume`` (written to run.json). A video that cannot be decoded is a ``failed`` result; errors of the
    model or the detector are raised.
    """
    run = run or RunConfig()
    linker = linker or LinkerConfig()
    path = Path(path)
    video_id = validate_video_id(video_id or path.stem, path)
    out_dir = Path(out_dir)
    final, staging = out_dir / video_id, out_dir / f".{video_id}.partial"
    result = VideoResult(video_id, str(path), "failed")
    clock = time.perf_counter()
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if _classifier is None:
        _classifier = _Classifier(model, next(model.parameters()).device)
    job = _VideoJob(path, video_id, model, detector, run, linker, staging, _classifier, progress)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VideoDecodeWarning)  # reported as this video's failure
            counts = job.execute()
        signature = _signature(path)
    except (VideoReadError, VideoRunError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        result.error = str(err)
        result.wall_s = time.perf_counter() - clock
        return result
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.status, result.out_dir = "done", str(final)
    for key in ("frames", "keyframes", "people", "tracks", "tubes", "video_s"):
        setattr(result, key, counts[key])
    result.warnings = job.warnings
    result.timings = {k: round(v, 4) for k, v in sorted(job.timings.items())}
    result.wall_s = time.perf_counter() - clock
    from detection.sinks.run_report import write_run_report

    write_run_report(staging / "run.json", {
        "video_id": video_id,
        "input": signature,
        "fingerprint": json.loads(json.dumps(fingerprint or {}, default=str)),
        "config": {"run": config_to_dict(run), "tubes": config_to_dict(linker)},
        "model": {"class": type(model).__name__, "input": model.input_spec.to_dict(),
                  "device": str(_classifier.device)},
        "detector": {"class": type(detector).__name__, **asdict(detector.settings)},
        "counts": {k: v for k, v in counts.items() if k != "tubes"},
        "tubes": counts["tubes"],
        "files": [f for f in OUTPUT_FILES if (staging / f).is_file()],
        "timings": {**result.timings, "wall_s": round(result.wall_s, 4)},
        "realtime_factor": round(counts["video_s"] / result.wall_s, 4) if result.wall_s > 0 else None,
        "warnings": job.warnings,
    })
    # The folder appears complete or not at all (an older one is moved aside first).
    old = out_dir / f".{video_id}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)
    return result


def shard_of(items: Sequence[Any], rank: int, world_size: int) -> list[Any]:
    """Rank ``rank``'s share of ``items``: items ``rank, rank + world_size, ...``."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank {rank} of {world_size}")
    return list(items[rank::world_size])


def _is_finished(final: Path, path: Path, fingerprint: dict[str, Any]) -> bool:
    from detection.sinks.run_report import read_run_report

    report = read_run_report(final / "run.json")
    if report is None or report.get("fingerprint") != fingerprint:
        return False
    try:
        if report.get("input") != _signature(path):
            return False
    except OSError:
        return False
    return all((final / f).is_file() for f in report.get("files", []))


def _gather(results: list[VideoResult], world_size: int) -> list[VideoResult] | None:
    """Every rank's results on rank 0 (None elsewhere), over a gloo process group."""
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        created = True
    try:
        gathered: list[Any] = [None] * world_size if dist.get_rank() == 0 else None
        dist.gather_object([asdict(r) for r in results], gathered, dst=0)
        if dist.get_rank() != 0:
            return None
        return [VideoResult(**r) for part in gathered for r in part]
    finally:
        if created:
            dist.destroy_process_group()


def run_videos(
    videos: Sequence[str | os.PathLike],
    model: Any,
    detector: PersonDetector,
    out_dir: str | os.PathLike,
    *,
    run: RunConfig | None = None,
    linker: LinkerConfig | None = None,
    resume: bool = False,
    progress: bool = False,
    fingerprint: Mapping[str, Any] | None = None,
    on_video: Callable[[VideoResult], None] | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> RunSummary:
    """Run every video through the pipeline into ``out_dir/<video_id>/``; returns the summary.

    ``model`` should already sit on its device (``run.device`` is for callers building it). ``resume``:
    skip videos finished by an earlier run with the same settings and input. ``fingerprint``: what names
    the model and detector for resuming (default: the model's weights hash and the detector's settings).
    ``on_video(result)`` is called after each video. ``rank`` / ``world_size``: default from the
    ``RANK`` / ``WORLD_SIZE`` environment (``torchrun``); each rank takes its share and rank 0 gathers
    everything into ``out_dir/summary.json`` (gloo). Video ids are file stems and must be distinct.
    Raises ValueError for duplicate or unsafe ids, FileNotFoundError for a missing path.
    """
    run = run or RunConfig()
    linker = linker or LinkerConfig()
    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    paths = [Path(v).expanduser() for v in videos]
    ids: dict[str, Path] = {}
    for p in paths:
        vid = validate_video_id(p.stem, p)
        if vid in ids:
            raise ValueError(f"inputs {ids[vid]} and {p} have the same video id {vid!r}")
        ids[vid] = p
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(fingerprint) if fingerprint is not None else {
        "model": model_fingerprint(model), "detector": detector_fingerprint_of(detector)}
    fp = _fingerprint(run, linker, extra)
    classifier = _Classifier(model, next(model.parameters()).device)
    summary = RunSummary(out_dir)
    clock = time.perf_counter()
    from tqdm import tqdm

    mine = shard_of(paths, rank, world_size)
    for path in tqdm(mine, desc="videos", unit="video", disable=not progress or len(mine) < 2):
        vid = path.stem
        if resume and _is_finished(out_dir / vid, path, fp):
            result = VideoResult(vid, str(path), "skipped", out_dir=str(out_dir / vid))
            report = json.loads((out_dir / vid / "run.json").read_text(encoding="utf-8"))
            counts = report.get("counts", {})
            for key in ("frames", "keyframes", "people", "tracks", "video_s"):
                setattr(result, key, counts.get(key, 0))
            result.tubes = report.get("tubes", {})
        elif not path.is_file():
            result = VideoResult(vid, str(path), "failed", error=f"{path}: no such file")
        else:
            result = run_video(path, model, detector, out_dir, run=run, linker=linker, video_id=vid, fingerprint=fp,
                               progress=progress, _classifier=classifier)
        summary.videos.append(result)
        if on_video is not None:
            on_video(result)
    summary.wall_s = time.perf_counter() - clock
    if world_size > 1:
        everything = _gather(summary.videos, world_size)
        if everything is None:
            return summary
        order = {str(p): i for i, p in enumerate(paths)}
        summary.videos = sorted(everything, key=lambda r: order.get(r.path, len(order)))
    atomic_write(out_dir / "summary.json", json.dumps(summary.to_dict(), indent=1) + "\n")
    return summary
