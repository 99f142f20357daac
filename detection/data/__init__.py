"""Datasets for training and evaluation in AVA format, frame sources, and box-aware augmentations."""

from detection.data.ava_dataset import AvaBatch, AvaDataset, AvaSample, MissingFrameWarning, clip_indices, collate
from detection.data.sources import FrameFolderSource, FrameReadError, VideoFileSource

__all__ = [
    "AvaBatch",
    "AvaDataset",
    "AvaSample",
    "FrameFolderSource",
    "FrameReadError",
    "MissingFrameWarning",
    "VideoFileSource",
    "clip_indices",
    "collate",
]
