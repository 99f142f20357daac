import pickle

import numpy as np
import pytest

from detection.formats.act import ActGroundTruth, read_act_groundtruth, write_act_groundtruth


def _gt():
    tube = np.array([[1, 10, 20, 50, 100], [2, 11, 20, 51, 100], [3, 12, 21, 52, 101]], np.float32)
    return ActGroundTruth(
        labels=["walk", "run"],
        gttubes={"cls/v1": {1: [tube]}},
        nframes={"cls/v1": 40},
        resolution={"cls/v1": (240, 320)},
        train_videos=[["cls/v0"]],
        test_videos=[["cls/v1"]],
    )


def test_roundtrip(tmp_path):
    path = tmp_path / "gt.pkl"
    write_act_groundtruth(path, _gt())
    back = read_act_groundtruth(path)
    assert back.labels == ["walk", "run"] and back.nframes == {"cls/v1": 40}
    assert back.resolution == {"cls/v1": (240, 320)}
    np.testing.assert_array_equal(back.gttubes["cls/v1"][1][0], _gt().gttubes["cls/v1"][1][0])
    assert back.test_videos == [["cls/v1"]]
    assert [p.name for p in tmp_path.iterdir()] == ["gt.pkl"]


def test_python2_style_pickle_is_read_with_latin1(tmp_path):
    path = tmp_path / "py2.pkl"
    data = _gt().to_dict()
    data["labels"] = [b"caf\xe9".decode("latin1"), "run"]
    path.write_bytes(pickle.dumps(data, protocol=2))
    assert read_act_groundtruth(path).labels[0] == "café"


def test_tubes_become_normalized_zero_based(tmp_path):
    (tube,) = _gt().tubes("cls/v1")
    assert tube.label == 1 and tube.frames.tolist() == [0, 1, 2] and tube.is_contiguous
    np.testing.assert_allclose(tube.boxes[0], [10 / 320, 20 / 240, 50 / 320, 100 / 240], rtol=1e-6)


def test_missing_keys_are_named(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"labels": [], "gttubes": {}}))
    with pytest.raises(ValueError, match=r"missing keys \['nframes', 'resolution'\]"):
        read_act_groundtruth(path)
