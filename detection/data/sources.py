"""Where clip frames come from: JPEG folders (cv2) or the videos themselves (PyAV, one seek per clip).

Both sources answer the same two questions for a video id: how many frames it has, and the uint8 RGB
frames ``(T, H, W, 3)`` at given 0-based frame indices. Frame indices live on the dataset's frame grid
(``DataConfig.fps``): frame ``i`` is the image at ``i / fps`` seconds from the start of the video. A frame
that is missing or cannot be decoded raises :class:`FrameReadError` naming the file.

Both are safe to hand to data-loader workers: the constructors only read small text files and list a
folder; containers are opened per read, inside whichever process reads, and caches are plain data.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np

from detection.formats.ava import read_frame_list
from detection.video import VideoInfo, VideoReadError, probe, read_frames

__all__ = [
    "FrameFolderSource",
    "FrameReadError",
    "FrameSource",
    "VideoFileSource",
    "check_video_id",
    "frame_file_name",
]

Naming = Literal["pyslowfast", "mmaction2"]
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".mpg", ".mpeg")  # preferred order


class FrameReadError(OSError):
    """A frame (or the whole video) is missing or unreadable; ``path`` names the file."""

    def __init__(self, message: str, path: str | os.PathLike) -> None:
        super().__init__(message)
        self.path = str(path)


def check_video_id(video_id: str) -> str:
    """``video_id`` if it can safely become one path component; ValueError otherwise."""
    if (not video_id or video_id in (".", "..") or "/" in video_id or "\\" in video_id or "\0" in video_id
            or video_id != video_id.strip()):
        raise ValueError(f"video id {video_id!r} cannot be used as a file name")
    return video_id


def frame_file_name(video_id: str, frame_index: int, naming: Naming = "pyslowfast") -> str:
    """The file name of 0-based ``frame_index``: ``<id>_000001.jpg`` (pyslowfast) or ``img_00001.jpg``."""
    if naming == "pyslowfast":
        return f"{video_id}_{frame_index + 1:06d}.jpg"
    if naming == "mmaction2":
        return f"img_{frame_index + 1:05d}.jpg"
    raise ValueError(f"unknown frame naming {naming!r} (pyslowfast or mmaction2)")


class FrameSource(Protocol):
    """What the dataset needs of a source of frames."""

    def location(self, video_id: str) -> Path | None:
        """The folder or file of a video, None when it is not there."""

    def num_frames(self, video_id: str) -> int | None:
        """Frames of the video on the frame grid (None: unknown, reads past the end repeat the last)."""

    def read(self, video_id: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """uint8 RGB ``(len(indices), H, W, 3)``; raises FrameReadError."""


class FrameFolderSource:
    """Frames from JPEG folders ``<frames_dir>/<video_id>/<name>`` (names per ``naming``, 1-based).

    ``frame_lists``: PySlowFast frame lists (paths relative to ``frames_dir``) giving each video's frame
    count and, where they differ from ``naming``, the file of each frame. Without a list, a video's
    frame count is the number of files that follow ``naming`` in its folder (counted once per process).
    """

    def __init__(self, frames_dir: str | os.PathLike, naming: Naming = "pyslowfast",
                 frame_lists: Sequence[str | os.PathLike] = ()) -> None:
        frame_file_name("x", 0, naming)  # validates ``naming``
        self.frames_dir = Path(frames_dir)
        self.naming: Naming = naming
        self._counts: dict[str, int] = {}
        self._paths: dict[str, list[str]] = {}  # only videos whose listed paths differ from ``naming``
        for path in frame_lists:
            self._add_frame_list(Path(path))

    def _add_frame_list(self, path: Path) -> None:
        by_video: dict[str, dict[int, str]] = {}
        for entry in read_frame_list(path):
            by_video.setdefault(entry.original_video_id, {})[entry.frame_index] = entry.path
        for vid, frames in by_video.items():
            count = max(frames) + 1
            if len(frames) != count:
                gap = min(set(range(count)) - set(frames))
                raise ValueError(f"{path}: video {vid} lists {len(frames)} frames but not frame {gap} "
                                 f"(indices must run 0..{count - 1})")
            paths = [frames[i] for i in range(count)]
            self._counts[vid] = count
            if any(p != f"{vid}/{frame_file_name(vid, i, self.naming)}" for i, p in enumerate(paths)):
                self._paths[vid] = paths

    def location(self, video_id: str) -> Path | None:
        listed = self._paths.get(video_id)
        folder = (self.frames_dir / listed[0]).parent if listed else self.frames_dir / check_video_id(video_id)
        return folder if folder.is_dir() else None

    def num_frames(self, video_id: str) -> int | None:
        if video_id not in self._counts:
            folder = self.frames_dir / check_video_id(video_id)
            try:
                names = os.listdir(folder)
            except OSError as err:
                raise FrameReadError(f"{folder}: cannot list the frame folder: {err.strerror or err}", folder) from err
            # The frames follow ``naming``; count the longest run 1..n that is present.
            count = 0
            present = set(names)
            while frame_file_name(video_id, count, self.naming) in present:
                count += 1
            self._counts[video_id] = count
        return self._counts[video_id]

    def frame_path(self, video_id: str, frame_index: int) -> Path:
        """The file of 0-based ``frame_index``."""
        listed = self._paths.get(video_id)
        if listed is not None and 0 <= frame_index < len(listed):
            return self.frames_dir / listed[frame_index]
        return self.frames_dir / check_video_id(video_id) / frame_file_name(video_id, frame_index, self.naming)

    def read(self, video_id: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The frames at ``indices`` (repeats decoded once) as uint8 RGB ``(T, H, W, 3)``.

        Raises FrameReadError naming the file that is missing, cannot be decoded or differs in size.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        unique, inverse = np.unique(indices, return_inverse=True)
        images = []
        for index in unique.tolist():
            path = self.frame_path(video_id, index)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                what = "cannot be decoded as an image" if path.is_file() else "is missing"
                raise FrameReadError(f"{path}: frame {index} of video {video_id} {what}", path)
            if images and image.shape != images[0].shape:
                raise FrameReadError(f"{path}: frame {index} of video {video_id} is {image.shape[1]}x{image.shape[0]}"
                                     f", the frames before it {images[0].shape[1]}x{images[0].shape[0]}", path)
            images.append(image)
        frames = np.stack(images)[inverse]
        return frames[..., ::-1].copy()  # BGR -> RGB (one copy for the whole clip)


class VideoFileSource:
    """Frames decoded from ``<videos_dir>/<video_id>.<ext>`` with PyAV, resampled to ``fps``.

    Grid frame ``i`` is the video frame nearest ``i / fps`` seconds, so a 25 or 29.97 fps video reads like
    frames extracted at ``fps``. Each read opens the file, seeks once to the keyframe before the clip's
    first frame and decodes forward to its last; video metadata is probed once per video and process.
    """

    def __init__(self, videos_dir: str | os.PathLike, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.videos_dir = Path(videos_dir)
        self.fps = float(fps)
        self._files: dict[str, str] = {}  # video id -> file name, from one listing of the folder
        rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}

        def preference(file_name: str) -> int:
            return rank.get(os.path.splitext(file_name)[1].lower(), len(rank))

        try:
            names = sorted(os.listdir(self.videos_dir))
        except OSError:
            names = []
        for name in names:
            stem = os.path.splitext(name)[0]
            if not stem or name.startswith("."):
                continue
            best = self._files.get(stem)
            if best is None or preference(name) < preference(best):
                self._files[stem] = name
        self._info: dict[str, VideoInfo] = {}

    def location(self, video_id: str) -> Path | None:
        name = self._files.get(check_video_id(video_id))
        return self.videos_dir / name if name is not None else None

    def _path(self, video_id: str) -> Path:
        path = self.location(video_id)
        if path is None:
            missing = self.videos_dir / f"{video_id}.*"
            raise FrameReadError(f"{missing}: no video file for video {video_id}", missing)
        return path

    def info(self, video_id: str) -> VideoInfo:
        """The probed metadata of a video (cached). Raises FrameReadError."""
        if video_id not in self._info:
            path = self._path(video_id)
            try:
                self._info[video_id] = probe(path)
            except VideoReadError as err:
                raise FrameReadError(str(err), path) from err
        return self._info[video_id]

    def _source_frames(self, info: VideoInfo) -> int | None:
        if info.num_frames:
            return info.num_frames
        return math.ceil(info.duration_s * info.fps) if info.duration_s else None

    def num_frames(self, video_id: str) -> int | None:
        info = self.info(video_id)
        last = self._source_frames(info)
        if last is None:
            return None
        # The last grid frame whose nearest video frame is the video's last frame or before it.
        return int(math.floor((last - 1) / info.fps * self.fps + 0.5)) + 1

    def read(self, video_id: str, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """The grid frames at ``indices`` as uint8 RGB ``(T, H, W, 3)``. Raises FrameReadError."""
        info = self.info(video_id)
        grid = np.asarray(indices, dtype=np.int64).reshape(-1)
        source = np.floor(grid * (info.fps / self.fps) + 0.5).astype(np.int64)  # nearest video frame
        last = self._source_frames(info)
        if last is not None:
            source = np.minimum(source, last - 1)
        try:
            frames, _ = read_frames(info.path, source)
        except (VideoReadError, ValueError) as err:
            raise FrameReadError(f"{err} (video {video_id}, frames {grid.min()}..{grid.max()})", info.path) from err
        return frames
