import json

import numpy as np
import pytest

from detection.formats.tubes import VideoTubes, read_tubes_json, write_tubes_json
from detection.structures import Tube


def _video(name="v1", n_tubes=2):
    tubes = [
        Tube(name, label=12 + k, track_id=k, frames=np.arange(5, 9) + k,
             boxes=np.tile([[0.1, 0.2, 0.3, 0.9]], (4, 1)) + 0.01 * k, scores=[0.5, 0.6, 0.7, 0.8], score=0.65)
        for k in range(n_tubes)
    ]
    return VideoTubes(video=name, fps=30.0, width=320, height=240, labels={12: "stand", 13: "x"}, tubes=tubes)


def test_single_video_roundtrip(tmp_path):
    path = tmp_path / "tubes.json"
    write_tubes_json(path, _video())
    data = json.loads(path.read_text())
    assert data["video"] == "v1" and data["labels"] == {"12": "stand", "13": "x"}
    assert data["tubes"][1]["start_frame"] == 6 and data["tubes"][1]["end_frame"] == 9
    (video,) = read_tubes_json(path)
    assert video.labels == {12: "stand", 13: "x"} and (video.width, video.height, video.fps) == (320, 240, 30.0)
    for a, b in zip(video.tubes, _video().tubes, strict=True):
        assert (a.label, a.track_id, a.score) == (b.label, b.track_id, b.score)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


def test_several_videos_are_a_list(tmp_path):
    path = tmp_path / "all.json"
    write_tubes_json(path, [_video("a"), _video("b", 0)])
    assert isinstance(json.loads(path.read_text()), list)
    videos = read_tubes_json(path)
    assert [v.video for v in videos] == ["a", "b"] and [len(v.tubes) for v in videos] == [2, 0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("fps"), r"missing keys \['fps'\]"),
        (lambda d: d["tubes"][0].update(frames=[5, 5, 6, 7]), "tube 0: .*frames must increase"),
        (lambda d: d["tubes"][0].update(start_frame=4), "tube 0: start_frame/end_frame disagree"),
        (lambda d: d["tubes"][1].pop("label"), "tube 1: 'label'"),
        (lambda d: d["tubes"][0].update(boxes=[[0.5, 0, 0.1, 1]] * 4), "tube 0: .*x2 < x1"),
    ],
)
def test_malformed_tubes_are_named(tmp_path, mutate, message):
    data = _video().to_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_tubes_json(path)


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"video": "a",\n "fps": }')
    with pytest.raises(ValueError, match=r"broken.json:2: not valid JSON"):
        read_tubes_json(path)
