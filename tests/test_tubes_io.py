"""Files of the linking stage: detections CSV with track ids, MOTChallenge tracks, and ``actdet link``."""

import numpy as np
import pytest

from detection.cli import main
from detection.formats.tubes import read_tubes_json
from detection.structures import LabelMap
from detection.tubes.io import (
    DetectionRows,
    MotWriter,
    keyframes_from_rows,
    read_detections_csv,
    read_mot_txt,
    write_detections_csv,
    write_mot_txt,
)
from detection.tubes.linker import TrackPiece

LABELS = LabelMap.from_pairs([(1, "bend"), (4, "dance"), (12, "stand")])


def _write_detections(path, videos=("vidA",), seconds=range(902, 912), offset=0.0):
    """Two people crossing at 1 Hz: the left one stands then dances, the right one bends from 905 s."""
    lines = []
    for video in videos:
        for sec in seconds:
            k = sec - seconds[0]
            left, right = 0.1 + 0.05 * k, 0.7 - 0.05 * k
            people = [(left, {12: 0.9 if k < 5 else 0.1, 4: 0.85 if k >= 5 else 0.05}), (right, {1: 0.8 if sec >= 905
                                                                                                 else 0.1})]
            for x, actions in people:
                box = f"{x:.3f},0.300,{x + 0.1:.3f},0.700"
                lines.append(f"{video},{sec + offset:g},{box},,0.97")  # the person's detector score
                lines += [f"{video},{sec + offset:g},{box},{a},{s:.4f}" for a, s in actions.items()]
    path.write_text("\n".join(lines) + "\n")
    return len(lines)


def test_detections_csv_roundtrip_with_track_ids(tmp_path):
    rows = DetectionRows(
        video_ids=np.array(["a", "a", "b"]),
        timestamps=np.array([902.0, 902.0, 0.5]),
        boxes=np.array([[0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.6, 0.9]], np.float32),
        action_ids=np.array([-1, 12, 4]),
        scores=np.array([0.9, 0.75, 0.5], np.float32),
        track_ids=np.array([3, 3, -1]),
    )
    write_detections_csv(tmp_path / "d.csv", rows)
    text = (tmp_path / "d.csv").read_text()
    assert text.splitlines()[0] == "a,0902,0.100,0.200,0.300,0.400,,0.9000,3"
    back = read_detections_csv(tmp_path / "d.csv")
    for name in ("video_ids", "timestamps", "boxes", "action_ids", "scores", "track_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rows, name))
    # Windows line ends and quoting take the other paths to the same rows.
    (tmp_path / "crlf.csv").write_bytes(text.replace("\n", "\r\n").encode())
    np.testing.assert_array_equal(read_detections_csv(tmp_path / "crlf.csv").track_ids, rows.track_ids)
    (tmp_path / "q.csv").write_text(text.replace("a,", '"a",', 1))
    np.testing.assert_array_equal(read_detections_csv(tmp_path / "q.csv").track_ids, rows.track_ids)


def test_detections_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,902,0.1,0.2,0.3,0.4,12,0.9,1\na,903,0.1,0.2,0.3,0.4,12,0.9\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected 9 columns"):
        read_detections_csv(path)
    path.write_text("a,902,0.1,0.2,0.3,0.4,12,0.9,1\na,903,0.1,0.2,0.3,0.4,12,0.9,x7\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: track id 'x7'"):
        read_detections_csv(path)
    path.write_text("a,902,0.1,0.2,0.3,0.4,12,0.9,1\n\na,903,0.5,0.2,0.3,0.4,12,0.9,2\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: inverted box"):  # the real file and line, not a temporary
        read_detections_csv(path)


def test_rows_become_keyframes(tmp_path):
    path = tmp_path / "d.csv"
    _write_detections(path, videos=("vidB", "vidA"), seconds=range(902, 905), offset=0.0)
    with open(path, "a") as f:
        f.write("vidA,902,0.5,0.5,0.6,0.6,99,0.7\n")  # an action id the label map lacks, a person without score row
    rows = read_detections_csv(path)
    with pytest.warns(UserWarning, match="1 rows have action ids"):
        table = keyframes_from_rows(rows, LABELS, fps=25.0, time_offset=900.0, where=str(path))
    assert list(table.keyframes) == ["vidB", "vidA"]  # order of first appearance
    kfs = table.keyframes["vidA"]
    assert [kf.frame_index for kf in kfs] == [50, 75, 100] and kfs[0].time_s == 2.0
    assert len(kfs[0]) == 3 and kfs[0].track_ids is None
    first = kfs[0]
    np.testing.assert_allclose(sorted(first.person_scores), [0.97, 0.97, 1.0])  # 1.0 without a person row
    left = int(np.argmin(first.boxes[:, 0]))
    np.testing.assert_allclose(first.action_scores[left], [0.0, 0.05, 0.9])  # columns in label-map order
    # Every row points at its own box.
    all_kfs = table.all_keyframes()
    for i in range(len(rows)):
        kf = all_kfs[table.row_keyframe[i]]
        np.testing.assert_array_equal(kf.boxes[table.row_box[i]], rows.boxes[i])
        assert kf.video_id == rows.video_ids[i]
    with pytest.raises(ValueError, match="before the time offset"):
        keyframes_from_rows(rows, LABELS, time_offset=903.0)
    with pytest.raises(ValueError, match="same frame"):
        keyframes_from_rows(rows, LABELS, fps=0.4, time_offset=900.0)


def test_mot_roundtrip(tmp_path):
    pieces = [
        TrackPiece("v", 1, np.arange(0, 3), np.array([[0.1, 0.2, 0.3, 0.6]] * 3, np.float32), np.full(3, 0.9)),
        TrackPiece("v", 2, np.arange(1, 3), np.array([[0.5, 0.25, 0.75, 1.0]] * 2, np.float32), np.full(2, 0.5)),
        TrackPiece("v", 1, np.arange(3, 5), np.array([[0.2, 0.2, 0.4, 0.6]] * 2, np.float32), np.full(2, 0.8)),
    ]
    write_mot_txt(tmp_path / "t.txt", pieces, width=640, height=480)
    first = (tmp_path / "t.txt").read_text().splitlines()[0]
    assert first == "1,1,64.00,96.00,128.00,192.00,0.9000,-1,-1,-1"
    mot = read_mot_txt(tmp_path / "t.txt", 640, 480)
    assert mot.frames.tolist() == [0, 1, 1, 2, 2, 3, 4] and mot.ids.tolist() == [1, 1, 2, 1, 2, 1, 1]
    np.testing.assert_allclose(mot.boxes[2], [0.5, 0.25, 0.75, 1.0], atol=1e-6)
    np.testing.assert_allclose(mot.scores[-1], 0.8)
    # A failed writer leaves nothing behind.
    with pytest.raises(RuntimeError), MotWriter(tmp_path / "x.txt") as writer:
        writer.write(pieces[0])
        raise RuntimeError("stop")
    assert not (tmp_path / "x.txt").exists() and not list(tmp_path.glob(".x.txt*"))
    (tmp_path / "bad.txt").write_text("1,1,10,10,5,5,1\n0,1,10,10,5,5,1\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2"):
        read_mot_txt(tmp_path / "bad.txt")


def test_actdet_link_csv_to_json(tmp_path, capsys):
    det = tmp_path / "det.csv"
    num_rows = _write_detections(det, videos=("vidA", "vidB"))
    LABELS.to_pbtxt(tmp_path / "map.pbtxt")
    out = tmp_path / "tubes.json"
    argv = ["link", "--detections", str(det), "--labelmap", str(tmp_path / "map.pbtxt"), "--out", str(out),
            "--time-offset", "900", "--size", "640x480", "--quiet"]
    status = main(argv + ["--tracks", str(tmp_path / "{video}.txt"), "--detections-out", str(tmp_path / "dt.csv"),
                          "lag=3", "tubes.switch_penalty=1.5"])
    assert status == 0, capsys.readouterr().err
    assert "tubes on" in capsys.readouterr().out
    videos = read_tubes_json(out)
    assert [v.video for v in videos] == ["vidA", "vidB"]
    for v in videos:
        assert (v.width, v.height, v.fps) == (640, 480, 30.0) and v.labels == {1: "bend", 4: "dance", 12: "stand"}
        got = sorted((t.track_id, t.label, t.start_frame, t.end_frame) for t in v.tubes)
        # Keyframes every 30 frames from frame 60; tubes extended by 15 frames on each side.
        assert got == [(1, 4, 195, 345), (1, 12, 45, 195), (2, 1, 135, 345)]
        assert all(t.is_contiguous for t in v.tubes)
    mot = read_mot_txt(tmp_path / "vidA.txt", 640, 480)
    assert sorted(set(mot.ids.tolist())) == [1, 2] and mot.frames.min() == 60 and mot.frames.max() == 330
    tracked = read_detections_csv(tmp_path / "dt.csv")
    assert len(tracked) == num_rows and set(tracked.track_ids.tolist()) == {1, 2}
    # Linking the tracked CSV again keeps its ids and gives the same tubes.
    argv2 = ["link", "--detections", str(tmp_path / "dt.csv"), *argv[3:5], "--out", str(tmp_path / "again.json"),
             *argv[7:], "lag=3", "switch_penalty=1.5"]
    assert main(argv2) == 0
    assert (tmp_path / "again.json").read_text() == out.read_text()


def test_actdet_link_errors(tmp_path, capsys):
    det = tmp_path / "det.csv"
    _write_detections(det, videos=("vidA", "vidB"))
    LABELS.to_pbtxt(tmp_path / "map.pbtxt")
    base = ["link", "--detections", str(det), "--labelmap", str(tmp_path / "map.pbtxt"), "--out",
            str(tmp_path / "t.json"), "--quiet"]
    assert main(base + ["--tracks", str(tmp_path / "t.txt")]) == 2
    assert "{video}" in capsys.readouterr().err
    assert main(base + ["lagg=3"]) == 2
    assert "did you mean 'lag'" in capsys.readouterr().err
    assert main(base + ["lag=99"]) == 2
    assert "lag must be in" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--size", "640"])
