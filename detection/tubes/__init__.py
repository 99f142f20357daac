"""Online tracking and temporal labelling of keyframe detections into action tubes.

``tracker``: class-agnostic person tracks (Kalman + ByteTrack-style two-pass assignment);
``labelling``: per-track, per-class action/background Viterbi, offline or with a fixed lag;
``linker``: the streaming :class:`TubeLinker` that combines them into :class:`~detection.structures.Tube`;
``io``: the detections CSV with track ids and MOTChallenge track files.
"""

from detection.tubes.labelling import FixedLagViterbi, viterbi_offline, viterbi_online
from detection.tubes.linker import LinkerConfig, TrackPiece, TubeLinker, link_offline
from detection.tubes.tracker import OnlineTracker, TrackerConfig, TrackerStep

__all__ = [
    "FixedLagViterbi",
    "LinkerConfig",
    "OnlineTracker",
    "TrackPiece",
    "TrackerConfig",
    "TrackerStep",
    "TubeLinker",
    "link_offline",
    "viterbi_offline",
    "viterbi_online",
]
