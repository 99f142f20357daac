import numpy as np

from data_prep.cvat import cvat_video_tracks, read_cvat_video_xml
from detection.sinks.cvat import CvatVideoWriter
from detection.structures import LabelMap, Tube
from detection.tubes.linker import TrackPiece

LABELS = LabelMap.from_pairs([(12, "stand"), (14, "walk")])


def test_tracks_with_per_frame_actions_round_trip(tmp_path):
    writer = CvatVideoWriter(tmp_path / "c.xml", LABELS, 200, 100, name="v", source="v.mp4")
    boxes = np.tile(np.array([[0.1, 0.1, 0.5, 0.9]], np.float32), (6, 1))
    writer.add_pieces([TrackPiece("v", 7, np.arange(0, 3), boxes[:3], np.ones(3, np.float32)),
                       TrackPiece("v", 7, np.arange(3, 6), boxes[3:], np.ones(3, np.float32)),
                       TrackPiece("v", 2, np.arange(2, 10), np.tile(boxes[:1], (8, 1)), np.ones(8, np.float32))])
    writer.add_tubes([Tube("v", 14, 7, np.arange(2, 5), boxes[:3], np.ones(3), 0.9)])
    writer.add_keyframes([0, 4, 8])
    writer.close(num_frames=10)
    assert [p.name for p in tmp_path.iterdir()] == ["c.xml"]
    video = read_cvat_video_xml(tmp_path / "c.xml")
    assert (video.width, video.height, video.size, video.stop_frame, video.source) == (200, 100, 10, 9, "v.mp4")
    assert [a.name for a in video.labels["person"].attributes] == ["stand", "walk"]
    track = {t.id: t for t in video.tracks}[7]
    assert [b.frame for b in track.boxes] == list(range(7)) and track.boxes[-1].outside
    assert [b.attributes["walk"] for b in track.boxes[:6]] == ["false", "false", "true", "true", "true", "false"]
    assert (track.boxes[0].xtl, track.boxes[0].ybr) == (20.0, 90.0)
    assert not {t.id: t for t in video.tracks}[2].boxes[-1].outside  # reaches the last frame
    tracks = cvat_video_tracks(video, actions_from="attributes")
    walking = [b.frame for t in tracks.tracks for b in t.boxes if "walk" in b.actions]
    assert walking == [2, 3, 4]
