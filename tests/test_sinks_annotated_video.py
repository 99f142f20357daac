import av
import numpy as np

from detection.sinks.annotated_video import AnnotatedVideoSink
from detection.structures import KeyframeDetections, LabelMap


def test_every_frame_written_with_its_nearest_keyframe(tmp_path):
    labels = LabelMap.from_pairs([(12, "stand"), (14, "walk")])
    sink = AnnotatedVideoSink(tmp_path / "a.mp4", 10, 64, 48, labels)
    kf = KeyframeDetections("v", 4, 0.4, [[0.1, 0.1, 0.6, 0.9]], [0.9], [[0.2, 0.8]], [1])
    for i in range(6):
        sink.add_frame(i, np.zeros((48, 64, 3), np.uint8))
    assert sink.held == 6 and sink.frames_written == 0  # waiting for the keyframe after them
    sink.add_keyframes([kf])
    assert sink.held == 1  # frame 5: the next keyframe may be nearer
    sink.close()
    with av.open(str(tmp_path / "a.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[4].any() and frames[0].any()
