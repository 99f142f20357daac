"""A synthetic AVA-format dataset: stick figures whose actions can only be told apart by their motion.

Each video shows up to ``max_people`` articulated figures on a textured, slowly panning backdrop. They
enter and leave through the left and right edges, cross and occlude one another, and perform a
sequence of 1.5-4 s segments of one movement class (stand, walk, run/jog, jump/leap, bend/bow), some of
them while waving a hand. A single frame is deliberately ambiguous: standing figures hold poses taken
from the other actions, walk and run share limb amplitudes and differ in speed and cadence.

:func:`generate_dataset` writes the videos, JPEG frames and annotations in the layout PySlowFast's AVA
loader reads (``DATASET.md``), person proposals that look like a detector's, and ACT-style ground-truth
tubes. Everything is a pure function of the :class:`SyntheticSpec`: the same spec gives the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from data_prep import synthetic_render as sr
from detection.formats.act import ActGroundTruth, write_act_groundtruth
from detection.formats.ava import (
    AvaRows,
    FrameListEntry,
    atomic_write,
    write_ava_csv,
    write_exclusions,
    write_frame_list,
)
from detection.formats.files import read_json_object
from detection.structures import LabelMap, box_iou

__all__ = [
    "GENERATOR_VERSION",
    "SYNTHETIC_LABELS",
    "PersonState",
    "SyntheticScene",
    "SyntheticSpec",
    "VideoAnnotations",
    "annotate",
    "generate_dataset",
    "synthetic_label_map",
    "video_id_for",
]

GENERATOR_VERSION = 1  # bump whenever the output for a given spec changes

SYNTHETIC_LABELS: list[tuple[int, str]] = [
    (sr.STAND, "stand"),
    (sr.WALK, "walk"),
    (sr.RUN, "run/jog"),
    (sr.JUMP, "jump/leap"),
    (sr.BEND, "bend/bow (at the waist)"),
    (sr.WAVE, "hand wave"),
]
MIN_VISIBLE = 0.25  # a person is present when this fraction of its box is inside the frame
EXCLUDE_IOU = 0.6  # keyframes where two people overlap more than this are excluded
BLEND_S = 0.3  # poses blend over this long around a segment change
WAVE_PROB = 0.35  # share of stand / walk segments with a hand wave
# Choice of the next movement for a figure that is inside the frame.
MOVE_WEIGHTS = {sr.STAND: 0.24, sr.WALK: 0.15, sr.RUN: 0.17, sr.JUMP: 0.2, sr.BEND: 0.24}
SPEED = {sr.WALK: (0.3, 0.6), sr.RUN: (1.0, 1.6)}  # body heights per second
SEGMENT_S = (1.5, 4.0)


def synthetic_label_map() -> LabelMap:
    """The six classes, with AVA's ids and names, in the model's column order."""
    return LabelMap.from_pairs(SYNTHETIC_LABELS)


def video_id_for(seed: int, index: int) -> str:
    """``syn_s{seed}_{index:03d}``: a video id that is also a safe file name."""
    return f"syn_s{seed}_{index:03d}"


@dataclass
class SyntheticSpec:
    """What to render. Sizes in pixels, lengths in seconds.

    ``val_videos``: the last this many videos form the val split (None: a quarter, at least one).
    ``time_offset``: AVA timestamp of each video's first frame; keyframes are the whole seconds
    ``keyframe_margin_s .. floor(seconds) - keyframe_margin_s`` after it. ``frames``: also write JPEGs.
    """

    videos: int = 4
    seconds: float = 12.0
    fps: int = 30
    width: int = 320
    height: int = 240
    seed: int = 0
    max_people: int = 4
    val_videos: int | None = None
    time_offset: int = 900
    frames: bool = True
    keyframe_margin_s: int = 2

    def validate(self) -> None:
        """Raise ValueError naming the first field that cannot work."""
        checks = [
            (self.videos >= 1, f"videos must be >= 1, got {self.videos}"),
            (self.seconds > 0, f"seconds must be positive, got {self.seconds}"),
            (self.fps >= 1, f"fps must be >= 1, got {self.fps}"),
            (self.width >= 32 and self.height >= 32, f"frame too small: {self.width}x{self.height}"),
            (self.width % 2 == 0 and self.height % 2 == 0, f"width and height must be even (H.264), got "
                                                           f"{self.width}x{self.height}"),
            (self.max_people >= 1, f"max_people must be >= 1, got {self.max_people}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.keyframe_margin_s >= 0, f"keyframe_margin_s must be >= 0, got {self.keyframe_margin_s}"),
            (self.val_videos is None or 0 <= self.val_videos <= self.videos,
             f"val_videos must be in [0, videos={self.videos}], got {self.val_videos}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SyntheticSpec: {message}")

    @property
    def num_val(self) -> int:
        return self.val_videos if self.val_videos is not None else max(1, self.videos // 4)

    @property
    def num_frames(self) -> int:
        return int(round(self.seconds * self.fps))

    def keyframe_seconds(self) -> list[int]:
        """Keyframe times in whole seconds from the start of a video."""
        last = min(math.floor(self.seconds) - self.keyframe_margin_s, (self.num_frames - 1) // self.fps)
        return list(range(self.keyframe_margin_s, last + 1))

    def video_ids(self) -> tuple[list[str], list[str]]:
        """(train ids, val ids); the val videos are the last ones."""
        ids = [video_id_for(self.seed, i) for i in range(self.videos)]
        cut = self.videos - self.num_val
        return ids[:cut], ids[cut:]


@dataclass(frozen=True)
class PersonState:
    """One person on one frame.

    box: (4,) float32 normalized xyxy, the tight box of the figure's pixels inside the frame (occluders
    ignored); actions: AVA ids in label-map order (one movement, then "hand wave" if waving);
    visible_fraction: share of the figure's whole (unclipped) box that lies inside the frame.
    """

    person_id: int
    box: np.ndarray
    actions: tuple[int, ...]
    visible_fraction: float


# --------------------------------------------------------------------------------------------------
# The scene: who is where, doing what, on every frame


@dataclass
class _Segment:
    action: int
    wave: bool
    start: int  # first frame
    end: int  # one past the last frame
    facing: float  # +1 right, -1 left
    speed: float  # body heights per second along ``facing``
    motion: dict = field(repr=False)


@dataclass
class _Actor:
    """A figure's plan and, once simulated, its per-frame track over ``[first, last)``."""

    person_id: int
    lane_y: float  # world pixel row of the feet (depth: larger is nearer)
    height_px: float
    colors: dict
    first: int
    last: int = 0
    x0: float = 0.0  # world pixel column of the pelvis at ``first``
    segments: list[_Segment] = field(default_factory=list)
    # Filled by the simulation, one row per frame of [first, last):
    joints: np.ndarray = field(default=None, repr=False)  # (n, J, 2) screen pixels
    boxes_px: np.ndarray = field(default=None, repr=False)  # (n, 4) unclipped, continuous pixels
    boxes: np.ndarray = field(default=None, repr=False)  # (n, 4) float32 normalized, of the pixels in frame
    visible: np.ndarray = field(default=None, repr=False)  # (n,) visible fraction
    move: np.ndarray = field(default=None, repr=False)  # (n,) movement id
    wave: np.ndarray = field(default=None, repr=False)  # (n,) bool
    pose: np.ndarray = field(default=None, repr=False)  # (n, N_POSE)

    def alive(self, frame_index: int) -> bool:
        return self.first <= frame_index < self.last


class SyntheticScene:
    """Video ``video_index`` of ``spec``: planned and simulated on construction (cheap), drawn on demand.

    Frame indices are 0-based; boxes are normalized xyxy unless named ``_px``.
    """

    def __init__(self, spec: SyntheticSpec, video_index: int) -> None:
        spec.validate()
        if not 0 <= video_index < spec.videos:
            raise ValueError(f"video_index {video_index} is outside [0, {spec.videos})")
        self.spec, self.video_index = spec, video_index
        self.video_id = video_id_for(spec.seed, video_index)
        self.width, self.height, self.fps = spec.width, spec.height, spec.fps
        self.num_frames = spec.num_frames
        self._half_blend = max(1, round(BLEND_S * self.fps / 2))
        rng = np.random.default_rng([spec.seed, video_index])
        self.camera = sr.camera_path(rng, self.num_frames, self.fps, self.width, self.height)
        self._actors: list[_Actor] = []
        self._plan_scene(rng)
        self._draw_order = sorted(self._actors, key=lambda a: (a.lane_y, a.person_id))

    # -- planning ----------------------------------------------------------------------------------
    def _view(self, start: int, seconds: float = 0.0) -> tuple[float, float]:
        """World x range that stays visible from frame ``start`` for ``seconds`` (the camera pans)."""
        cam = self.camera[min(start, self.num_frames - 1): max(start + 1, start + int(seconds * self.fps)), 0]
        return float(cam.max()), float(cam.min()) + self.width

    def _plan_scene(self, rng: np.random.Generator) -> None:
        n, fps, cap = self.num_frames, self.fps, self.spec.max_people
        first_count = min(cap, int(rng.choice([1, 2, 3, 4], p=[0.15, 0.35, 0.3, 0.2])))
        for _ in range(first_count):
            self._add_actor(rng, first=0, enter_side=0)
        t = rng.uniform(0.2, 2.0) * fps
        while t < n - 1.5 * fps:
            alive = [a for a in self._actors if a.alive(int(t))]
            if len(alive) < cap:
                self._add_actor(rng, first=int(t), enter_side=int(rng.choice([-1, 1])))
                t += rng.uniform(0.8, 3.5) * fps
            else:
                t = min(a.last for a in alive) + rng.uniform(0.2, 1.5) * fps

    def _add_actor(self, rng: np.random.Generator, first: int, enter_side: int) -> None:
        """Plan and simulate one figure; ``enter_side`` -1/+1 walks in from the left/right edge."""
        lane = rng.uniform(0.55, 0.97)
        # Perspective: nearer figures (feet lower in the frame) are taller, 0.3 H to 0.6 H.
        height_px = (0.3 + 0.3 * (lane - 0.55) / 0.42) * self.height * rng.uniform(0.93, 1.07)
        actor = _Actor(len(self._actors), lane * self.height, height_px, sr.figure_colors(rng), first)
        self._plan_segments(rng, actor, enter_side)
        self._simulate(actor)
        if enter_side:  # start fully outside the frame, so the figure walks in
            box = actor.boxes_px[0]
            overlap = box[2] if enter_side < 0 else self.width - box[0]
            if overlap > 0:
                actor.x0 -= enter_side * (overlap + 1)
                self._simulate(actor)
        # Leave fully: extend the last segment until the figure is out of the frame.
        while actor.last < self.num_frames and self._on_screen(actor, actor.last - 1):
            grow = min(self.num_frames, actor.last + max(1, self.fps // 4)) - actor.last
            actor.last += grow
            actor.segments[-1].end += grow
            self._simulate(actor)
        self._actors.append(actor)

    def _on_screen(self, actor: _Actor, frame_index: int) -> bool:
        box = actor.boxes_px[frame_index - actor.first]
        return bool(box[2] > 0 and box[0] < self.width)

    def _plan_segments(self, rng: np.random.Generator, actor: _Actor, enter_side: int) -> None:
        """Segments of ``actor`` from its first frame until it has left the frame or the video ends.

        Positions are world pixels of the pelvis, tracked roughly here (the blending shifts them a
        little); ``_add_actor`` corrects the entry and exit against the simulated boxes.
        """
        n, fps, bh = self.num_frames, self.fps, actor.height_px
        margin = 0.3 * bh  # how far inside the edges a figure that means to stay keeps its pelvis
        outside = 0.6 * bh  # pelvis this far beyond an edge: the figure is out of the frame
        min_frames = 2 * self._half_blend + 1
        f = actor.first
        left, right = self._view(f)
        if enter_side:
            x, facing = (left - outside if enter_side < 0 else right + outside), -float(enter_side)
        else:
            x, facing = rng.uniform(left + margin, right - margin), float(rng.choice([-1.0, 1.0]))
        actor.x0 = x
        leave_at = f + rng.uniform(3.0, 12.0) * fps if rng.random() < 0.75 else math.inf
        leaving = 0.0  # direction of the edge once the figure heads out for good
        while f < n:
            left, right = self._view(f, SEGMENT_S[1])
            if leaving and (x - right if leaving > 0 else left - x) >= outside:
                break
            entering = f == actor.first and enter_side != 0
            duration = rng.uniform(*SEGMENT_S)
            if entering or leaving or f >= leave_at:
                action = sr.RUN if rng.random() < 0.5 else sr.WALK
                if not entering and not leaving:
                    leaving = -1.0 if x - left < right - x else 1.0  # out through the nearer edge
            else:
                action = int(rng.choice(list(MOVE_WEIGHTS), p=list(MOVE_WEIGHTS.values())))
            speed = rng.uniform(*SPEED[action]) if action in SPEED else 0.0
            if leaving:
                facing = leaving
            elif action in SPEED:
                if entering:  # at least until the whole figure is in
                    duration = max(duration, (abs(x - (left if facing > 0 else right)) + 0.5 * bh) / (speed * bh))
                else:  # mostly towards the side with more room
                    facing = 1.0 if right - x > x - left else -1.0
                    facing = -facing if rng.random() < 0.25 else facing
                room = (right - margin - x) if facing > 0 else (x - left - margin)
                if speed * bh * duration > room:  # would reach the edge
                    if f - actor.first >= 2 * fps and rng.random() < 0.7:
                        leaving = facing  # carry on through it
                    elif room / (speed * bh) >= SEGMENT_S[0]:
                        duration = room / (speed * bh)  # stop short of it
                    elif not entering:
                        action, speed = int(rng.choice([sr.STAND, sr.JUMP, sr.BEND])), 0.0
            elif rng.random() < 0.2:
                facing = -facing  # turn round on the spot
            if leaving:  # no further than needed to get out
                to_go = (right - x if facing > 0 else x - left) + outside
                duration = min(duration, max(to_go, 0.0) / (speed * bh) + 0.1)
            frames = max(1 if leaving else min_frames, int(round(duration * fps)))
            wave = action in (sr.STAND, sr.WALK) and rng.random() < WAVE_PROB
            motion = sr.sample_motion(rng, action, wave)
            actor.segments.append(_Segment(action, wave, f, min(n, f + frames), facing, speed, motion))
            x += facing * speed * bh * frames / fps
            f += frames
        actor.last = min(f, n)

    # -- simulation --------------------------------------------------------------------------------
    def _simulate(self, actor: _Actor) -> None:
        """Per-frame poses, positions, joints, boxes and labels of ``actor`` over [first, last)."""
        fps, hb = self.fps, self._half_blend
        frames = np.arange(actor.first, actor.last)
        n = len(frames)
        pose, velocity, facing = np.zeros((n, sr.N_POSE)), np.zeros(n), np.zeros(n)
        move, wave = np.zeros(n, np.int64), np.zeros(n, bool)
        segments = actor.segments
        for k, seg in enumerate(segments):
            # Each segment is evaluated hb frames beyond its ends; smoothstep weights of neighbours
            # sum to one across a boundary, so poses and velocities blend over 2 * hb frames.
            lo = max(actor.first, seg.start - (hb if k > 0 else 0))
            hi = min(actor.last, seg.end + (hb if k < len(segments) - 1 else 0))
            f = np.arange(lo, hi)
            w = np.ones(len(f))
            if k > 0:
                w *= sr._smoothstep((f - seg.start + hb + 0.5) / (2 * hb))
            if k < len(segments) - 1:
                w *= 1.0 - sr._smoothstep((f - seg.end + hb + 0.5) / (2 * hb))
            idx = f - actor.first
            pose[idx] += w[:, None] * sr.motion_pose(seg.action, seg.motion, (f - seg.start) / fps)
            velocity[idx] += w * seg.facing * seg.speed * actor.height_px / fps  # pixels per frame
            facing[idx] += w * seg.facing
            own = slice(seg.start - actor.first, seg.end - actor.first)
            move[own], wave[own] = seg.action, seg.wave
        x = actor.x0 + np.concatenate([[0.0], np.cumsum(velocity[:-1])])
        root = np.stack([x - self.camera[frames, 0], actor.lane_y - self.camera[frames, 1]], axis=1)
        joints = sr.forward_kinematics(pose, facing, actor.height_px, root)
        boxes_px = sr.figure_boxes(joints, actor.height_px)
        size = np.array([self.width, self.height, self.width, self.height], np.float64)
        clipped = np.clip(boxes_px, 0.0, size)
        area = (boxes_px[:, 2] - boxes_px[:, 0]) * (boxes_px[:, 3] - boxes_px[:, 1])
        inside = np.clip(clipped[:, 2] - clipped[:, 0], 0, None) * np.clip(clipped[:, 3] - clipped[:, 1], 0, None)
        actor.joints, actor.boxes_px, actor.pose = joints, boxes_px, pose
        # The box is that of the pixels inside the frame (for a figure cut by an edge it is smaller than
        # its clipped full box); presence is judged on the full box.
        shown = sr.visible_boxes(joints, actor.height_px, self.width, self.height)
        empty = np.isnan(shown).any(axis=1)
        actor.boxes = np.where(empty[:, None], 0.0, shown / size).astype(np.float32)
        actor.visible = np.where(empty, 0.0, inside / np.maximum(area, 1e-9))
        actor.move, actor.wave = move, wave

    # -- queries -----------------------------------------------------------------------------------
    @property
    def person_ids(self) -> list[int]:
        return [a.person_id for a in self._actors]

    def _actor(self, person_id: int) -> _Actor:
        try:
            return self._actors[person_id]
        except IndexError:
            raise KeyError(f"{self.video_id}: no person {person_id}") from None

    def _check_frame(self, frame_index: int) -> int:
        if not 0 <= frame_index < self.num_frames:
            raise IndexError(f"{self.video_id}: frame {frame_index} is outside [0, {self.num_frames})")
        return int(frame_index)

    def people(self, frame_index: int, include_hidden: bool = False) -> list[PersonState]:
        """The people present on a frame (>= 25 % of their box inside it), by person id.

        ``include_hidden`` also lists people that exist but are (mostly) outside the frame.
        """
        f = self._check_frame(frame_index)
        out = []
        for a in self._actors:
            if not a.alive(f):
                continue
            i = f - a.first
            if a.visible[i] < MIN_VISIBLE and not include_hidden:
                continue
            actions = (int(a.move[i]), sr.WAVE) if a.wave[i] else (int(a.move[i]),)
            out.append(PersonState(a.person_id, a.boxes[i].copy(), actions, float(a.visible[i])))
        return out

    def pixel_box(self, frame_index: int, person_id: int) -> np.ndarray:
        """Unclipped tight box (4,) in pixels (continuous convention) of a person alive on the frame."""
        a = self._actor(person_id)
        if not a.alive(frame_index):
            raise KeyError(f"{self.video_id}: person {person_id} is not in the scene on frame {frame_index}")
        return a.boxes_px[frame_index - a.first].copy()

    def joints(self, frame_index: int, person_id: int) -> np.ndarray:
        """Joint positions (N_JOINTS, 2) in pixels of a person alive on the frame (OpenCV convention)."""
        a = self._actor(person_id)
        if not a.alive(frame_index):
            raise KeyError(f"{self.video_id}: person {person_id} is not in the scene on frame {frame_index}")
        return a.joints[frame_index - a.first].copy()

    def person_height(self, person_id: int) -> float:
        """Body height of a person in pixels."""
        return self._actor(person_id).height_px

    def person_mask(self, frame_index: int, person_id: int) -> np.ndarray:
        """Coverage (H, W) float32 in [0, 1] of one person drawn alone (no occluders)."""
        a = self._actor(person_id)
        return sr.coverage_mask(self.joints(frame_index, person_id), a.height_px, self.width, self.height)

    @cached_property
    def _texture(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.floor(self.camera.min(axis=0)) - 2
        hi = np.ceil(self.camera.max(axis=0)) + 2
        size = (hi - lo).astype(int) + np.array([self.width, self.height])
        rng = np.random.default_rng([self.spec.seed, self.video_index, 1])
        horizon = rng.uniform(0.3, 0.48) * self.height - lo[1]
        return sr.make_texture(rng, int(size[0]), int(size[1]), horizon), -lo

    def background(self, frame_index: int) -> np.ndarray:
        """The backdrop alone (H, W, 3) uint8 RGB, panned by the camera to this frame."""
        f = self._check_frame(frame_index)
        texture, origin = self._texture
        dx, dy = self.camera[f] + origin
        shift = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])  # output (x, y) samples texture (x+dx, y+dy)
        return cv2.warpAffine(texture, shift, (self.width, self.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)

    def render(self, frame_index: int, people: Iterable[int] | None = None, background: bool = True) -> np.ndarray:
        """Frame (H, W, 3) uint8 RGB; ``people`` limits the figures drawn, ``background=False`` uses black.

        Figures are drawn far to near, so nearer people occlude farther ones.
        """
        f = self._check_frame(frame_index)
        pad = sr.canvas_pad(self.height)  # see canvas_pad: cv2 mis-draws strokes that cross the border
        image = self.background(f) if background else np.zeros((self.height, self.width, 3), np.uint8)
        canvas = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT)
        wanted = None if people is None else set(people)
        for a in self._draw_order:
            if not a.alive(f) or (wanted is not None and a.person_id not in wanted):
                continue
            i = f - a.first
            if a.visible[i] <= 0:
                continue
            sr.draw_figure(canvas, a.joints[i] + pad, a.height_px, a.colors)
        return np.ascontiguousarray(canvas[pad:-pad, pad:-pad])

    def depth_order(self) -> list[int]:
        """Person ids from far to near (the drawing order)."""
        return [a.person_id for a in self._draw_order]

    def label_tracks(self) -> dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        """Per person: (first frame, movement ids (n,), wave flags (n,), present (n,)) over its life."""
        return {a.person_id: (a.first, a.move.copy(), a.wave.copy(), a.visible >= MIN_VISIBLE)
                for a in self._actors}

    def pose_track(self, person_id: int) -> tuple[int, np.ndarray]:
        """(first frame, poses (n, N_POSE)): the joint angles behind a person's figure, for analysis."""
        a = self._actor(person_id)
        return a.first, a.pose.copy()


# --------------------------------------------------------------------------------------------------
# Annotations of one video


@dataclass
class VideoAnnotations:
    """What :func:`annotate` derives from a scene; seconds are from the start of the video."""

    gt: list[tuple[int, np.ndarray, int, int]]  # (sec, box, action id, person id)
    excluded: list[int]  # seconds
    proposals: list[tuple[int, np.ndarray, float]]  # (sec, box, score)
    tubes: dict[int, list[np.ndarray]]  # label index -> [(L, 5) frame, x1, y1, x2, y2 pixels]
    people: int


def _occlusion(boxes: np.ndarray, nearer: np.ndarray) -> np.ndarray:
    """Share (N,) of each box covered by the boxes nearer to the camera (sum of overlaps, capped at 1)."""
    if len(boxes) == 0:
        return np.zeros(0)
    lt = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2) * nearer
    area = np.maximum(np.prod(boxes[:, 2:] - boxes[:, :2], axis=1), 1e-9)
    return np.minimum(1.0, inter.sum(axis=1) / area)


def _proposals(rng: np.random.Generator, people: list[PersonState], depth: dict[int, int],
               aspect: float) -> list[tuple[np.ndarray, float]]:
    """Detector-like person boxes (normalized) and scores for one keyframe.

    True people are found with jittered boxes (a few % of their size) and high, varied scores, less
    often and less confidently when partly outside the frame or occluded; false positives score
    mostly low. ``aspect`` is width / height of the frame.
    """
    out: list[tuple[np.ndarray, float]] = []
    boxes = np.array([p.box for p in people], np.float64).reshape(-1, 4)
    rank = np.array([depth[p.person_id] for p in people])
    occluded = _occlusion(boxes, rank[None, :] > rank[:, None])
    for k, person in enumerate(people):
        hidden = float(occluded[k]) + (1.0 - person.visible_fraction)
        if rng.random() < 0.04 + 0.5 * max(0.0, hidden - 0.25):
            continue  # missed
        size = boxes[k, 2:] - boxes[k, :2]
        box = boxes[k] + rng.normal(0.0, 0.035, 4) * np.tile(size, 2)
        score = 0.99 - 0.1 * rng.beta(1.2, 4.0) - 0.4 * max(0.0, hidden - 0.35)
        out.append((box, score))
        if rng.random() < 0.04:  # a duplicate, shifted: a common detector false positive
            out.append((boxes[k] + rng.normal(0.0, 0.15, 4) * np.tile(size, 2), score * rng.uniform(0.3, 0.8)))
    for _ in range(int(rng.poisson(0.35))):  # background false positives
        h = rng.uniform(0.15, 0.55)
        w = h * rng.uniform(0.25, 0.6) / aspect
        x, y = rng.uniform(-0.05, 1.05 - w), rng.uniform(0.1, 1.05 - h)
        score = rng.uniform(0.8, 0.95) if rng.random() < 0.12 else 0.05 + 0.6 * rng.beta(1.0, 3.5)
        out.append((np.array([x, y, x + w, y + h]), score))
    result = []
    for box, score in out:
        box = np.clip(box, 0.0, 1.0)
        box = np.concatenate([np.minimum(box[:2], box[2:]), np.maximum(box[:2], box[2:])])
        if (box[2] - box[0]) * (box[3] - box[1]) > 1e-4:
            result.append((box.astype(np.float32), float(np.clip(score, 0.01, 0.999))))
    result.sort(key=lambda item: -item[1])
    return result


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [start, stop) of True in a boolean vector."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))


def annotate(scene: SyntheticScene) -> VideoAnnotations:
    """Keyframe ground truth, exclusions, proposals and ground-truth tubes of one scene (no drawing)."""
    spec = scene.spec
    rng = np.random.default_rng([spec.seed, scene.video_index, 2])
    depth = {pid: rank for rank, pid in enumerate(scene.depth_order())}
    label_map = synthetic_label_map()
    gt, excluded, proposals = [], [], []
    seconds = spec.keyframe_seconds()
    for sec in seconds:
        people = scene.people(sec * spec.fps)
        boxes = np.array([p.box for p in people], np.float32).reshape(-1, 4)
        iou = box_iou(boxes, boxes)
        np.fill_diagonal(iou, 0.0)
        if len(people) > 1 and iou.max() > EXCLUDE_IOU:
            excluded.append(sec)
        else:
            gt += [(sec, p.box, action, p.person_id) for p in people for action in p.actions]
        proposals += [(sec, box, score) for box, score in _proposals(rng, people, depth, scene.width / scene.height)]
    size = np.array([scene.width, scene.height, scene.width, scene.height], np.float32)
    tubes: dict[int, list[np.ndarray]] = {}
    for pid in scene.person_ids:
        a = scene._actor(pid)
        present = a.visible >= MIN_VISIBLE
        for label_id in label_map.ids:
            has = a.wave if label_id == sr.WAVE else a.move == label_id
            for lo, hi in _runs(present & has):
                frames = np.arange(a.first + lo, a.first + hi, dtype=np.float32) + 1  # ACT counts from 1
                tube = np.concatenate([frames[:, None], a.boxes[lo:hi] * size], axis=1).astype(np.float32)
                tubes.setdefault(label_map.index(label_id), []).append(tube)
    return VideoAnnotations(gt, excluded, proposals, dict(sorted(tubes.items())), len(scene.person_ids))


# --------------------------------------------------------------------------------------------------
# The dataset on disk


_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def _spec_dict(spec: SyntheticSpec) -> dict:
    return asdict(spec)


def _remove_outputs(root: Path, video_ids: Iterable[str]) -> None:
    """Delete the videos and frame folders of a previous dataset (ids validated before they become paths)."""
    for vid in video_ids:
        if not isinstance(vid, str) or not _VIDEO_ID.match(vid):
            continue
        (root / "videos" / f"{vid}.mp4").unlink(missing_ok=True)
        shutil.rmtree(root / "frames" / vid, ignore_errors=True)


def _render_video(scene: SyntheticScene, root: Path, write_frames: bool, progress: bool) -> None:
    """Write ``videos/<id>.mp4`` and (optionally) ``frames/<id>/<id>_NNNNNN.jpg``, each atomically."""
    from tqdm import tqdm

    from detection.video import VideoWriter

    vid = scene.video_id
    frame_dir = root / "frames" / vid
    tmp_dir = root / "frames" / f".{vid}.tmp"
    if write_frames:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        tmp_dir.mkdir(parents=True)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 90]
    with VideoWriter(root / "videos" / f"{vid}.mp4", scene.fps, scene.width, scene.height) as writer:
        for f in tqdm(range(scene.num_frames), desc=vid, unit="frame", disable=None if progress else True,
                      leave=False):  # None: off when stderr is not a terminal
            image = scene.render(f)
            writer.write(image)
            if write_frames:
                ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), jpeg)
                if not ok:
                    raise RuntimeError(f"{tmp_dir}: JPEG encoding failed on frame {f}")
                (tmp_dir / f"{vid}_{f + 1:06d}.jpg").write_bytes(data.tobytes())
        if write_frames:  # the folder appears complete or not at all
            shutil.rmtree(frame_dir, ignore_errors=True)
            os.replace(tmp_dir, frame_dir)


def _write_split(root: Path, split: str, ids: list[str], videos: dict[str, VideoAnnotations],
                 spec: SyntheticSpec) -> dict[str, int]:
    """Write the ground truth, proposals, exclusions and frame list of one split; returns its counts."""
    gt, proposals, excluded, entries = [], [], set(), []
    for video_index, vid in enumerate(ids):
        ann = videos[vid]
        gt += [(vid, spec.time_offset + sec, box, action, pid) for sec, box, action, pid in ann.gt]
        proposals += [(vid, spec.time_offset + sec, box, score) for sec, box, score in ann.proposals]
        excluded |= {(vid, spec.time_offset + sec) for sec in ann.excluded}
        entries += [FrameListEntry(vid, video_index, f, f"{vid}/{vid}_{f + 1:06d}.jpg")
                    for f in range(spec.num_frames)]
    annotations = root / "annotations"
    columns = list(zip(*gt, strict=True)) or [[]] * 5
    rows = AvaRows.build(columns[0], columns[1], np.array(columns[2], np.float32).reshape(-1, 4), columns[3],
                         person_ids=columns[4])
    write_ava_csv(annotations / f"{split}.csv", rows, kind="groundtruth")
    columns = list(zip(*proposals, strict=True)) or [[]] * 4
    rows = AvaRows.build(columns[0], columns[1], np.array(columns[2], np.float32).reshape(-1, 4),
                         [-1] * len(proposals), scores=columns[3])
    write_ava_csv(annotations / f"{split}_predicted_boxes.csv", rows, kind="detections")
    write_exclusions(annotations / f"{split}_excluded_timestamps.csv", excluded)
    write_frame_list(root / "frame_lists" / f"{split}.csv", entries)
    return {
        "keyframes": len(ids) * len(spec.keyframe_seconds()),
        "excluded_keyframes": len(excluded),
        "person_boxes": len({(v, t, p) for v, t, _, _, p in gt}),
        "proposals": len(proposals),
    }


def generate_dataset(out_dir: str | os.PathLike, spec: SyntheticSpec, progress: bool = False) -> dict:
    """Render the dataset of ``spec`` into ``out_dir`` in PySlowFast's AVA layout; returns the manifest.

    Writes ``videos/``, ``frames/`` (if ``spec.frames``), ``frame_lists/{train,val}.csv`` and, under
    ``annotations/``: ``{train,val}.csv`` (ground truth), ``{train,val}_excluded_timestamps.csv``,
    ``{train,val}_predicted_boxes.csv`` (person proposals), ``label_map.pbtxt`` and ``gt_tubes.pkl``
    (ACT layout); ``manifest.json`` last. A directory whose manifest already holds this spec is left
    alone; an interrupted run with the same spec resumes, skipping videos already written; another
    spec replaces the previous dataset's files. Raises ValueError on an invalid spec.
    """
    spec.validate()
    root = Path(out_dir)
    wanted = {"generator": "data_prep.synthetic", "generator_version": GENERATOR_VERSION,
              "spec": _spec_dict(spec)}
    manifest_path, partial_path = root / "manifest.json", root / ".synthetic_partial.json"
    old = read_json_object(manifest_path)
    if old is not None and all(old.get(k) == v for k, v in wanted.items()):
        return old
    train_ids, val_ids = spec.video_ids()
    partial = read_json_object(partial_path)
    resume = partial is not None and all(partial.get(k) == v for k, v in wanted.items())
    if not resume:
        for previous in (old, partial):
            if previous is not None:
                splits = previous.get("splits", {})
                _remove_outputs(root, [v for ids in splits.values() if isinstance(ids, list) for v in ids])
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(partial_path, json.dumps({**wanted, "splits": {"train": train_ids, "val": val_ids}}) + "\n")
    manifest_path.unlink(missing_ok=True)

    splits = {"train": train_ids, "val": val_ids}
    videos: dict[str, VideoAnnotations] = {}
    for index, vid in enumerate(train_ids + val_ids):
        scene = SyntheticScene(spec, index)
        videos[vid] = annotate(scene)
        rendered = (root / "videos" / f"{vid}.mp4").is_file() and (not spec.frames or (root / "frames" / vid).is_dir())
        if not (resume and rendered):  # videos and frame folders appear whole (atomic), so keep them
            _render_video(scene, root, spec.frames, progress)
    counts = {"videos": spec.videos, "frames": spec.num_frames * spec.videos,
              "people": sum(v.people for v in videos.values())}
    for split, ids in splits.items():
        for key, value in _write_split(root, split, ids, videos, spec).items():
            counts.setdefault(key, {})[split] = value
    label_map = synthetic_label_map()
    names = dict(SYNTHETIC_LABELS)
    counts["boxes_per_class"] = {names[i]: sum(r[2] == i for v in videos.values() for r in v.gt) for i in names}
    label_map.to_pbtxt(root / "annotations" / "label_map.pbtxt")
    write_act_groundtruth(root / "annotations" / "gt_tubes.pkl", ActGroundTruth(
        labels=list(label_map.names), gttubes={vid: v.tubes for vid, v in videos.items()},
        nframes=dict.fromkeys(videos, spec.num_frames), resolution=dict.fromkeys(videos, (spec.height, spec.width)),
        train_videos=[train_ids], test_videos=[val_ids]))
    manifest = {
        **wanted,
        "splits": {"train": train_ids, "val": val_ids},
        "keyframe_seconds": [spec.time_offset + s for s in spec.keyframe_seconds()],
        "counts": counts,
        "files": {
            "videos": "videos/{video_id}.mp4",
            "frames": "frames/{video_id}/{video_id}_{frame:06d}.jpg" if spec.frames else None,
            "frame_lists": {s: f"frame_lists/{s}.csv" for s in splits},
            "groundtruth": {s: f"annotations/{s}.csv" for s in splits},
            "excluded_timestamps": {s: f"annotations/{s}_excluded_timestamps.csv" for s in splits},
            "predicted_boxes": {s: f"annotations/{s}_predicted_boxes.csv" for s in splits},
            "label_map": "annotations/label_map.pbtxt",
            "gt_tubes": "annotations/gt_tubes.pkl",
        },
    }
    atomic_write(manifest_path, json.dumps(manifest, indent=2) + "\n")
    partial_path.unlink(missing_ok=True)
    return manifest
