"""``prep convert``: CVAT XML and per-person CSV into the AVA layout, exact rows, errors, split, videos."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from data_prep.convert import (
    ConversionError,
    PersonTrack,
    TrackBox,
    VideoTracks,
    convert_dataset,
    find_videos,
    read_person_csv,
    write_person_csv,
)
from data_prep.cvat import cvat_video_tracks, read_cvat_video_xml
from detection.cli import main
from detection.formats.ava import read_ava_csv, read_exclusions
from detection.structures import LabelMap
from detection.video import VideoWriter

W, H, FPS, SECONDS = 64, 48, 10, 3


def make_video(path: Path, seconds: float = SECONDS) -> Path:
    with VideoWriter(path, FPS, W, H) as writer:
        for i in range(int(seconds * FPS)):
            writer.write(np.full((H, W, 3), 8 * i % 256, np.uint8))
    return path


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    for name in ("clipA", "clipB", "clipC"):
        make_video(folder / f"{name}.mp4")
    return folder


def px(x1, y1, x2, y2):
    """Normalized → pixel attributes of a CVAT box on a W x H frame."""
    return f'xtl="{x1 * W:.2f}" ytl="{y1 * H:.2f}" xbr="{x2 * W:.2f}" ybr="{y2 * H:.2f}"'


def cvat_xml(source: str, tracks: str, stop_frame: int = SECONDS * FPS - 1) -> str:
    return f"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>1</id><name>task {source}</name><size>{stop_frame + 1}</size><mode>interpolation</mode>
      <start_frame>0</start_frame><stop_frame>{stop_frame}</stop_frame><frame_filter></frame_filter>
      <labels>
        <label><name>person</name><attributes>
          <attribute><name>walk</name><mutable>True</mutable><input_type>checkbox</input_type>
            <default_value>false</default_value><values>false</values></attribute>
          <attribute><name>talk</name><mutable>True</mutable><input_type>checkbox</input_type>
            <default_value>false</default_value><values>false</values></attribute>
        </attributes></label>
      </labels>
      <original_size><width>{W}</width><height>{H}</height></original_size>
      <source>{source}</source>
    </task>
  </meta>
{tracks}</annotations>
"""


def box(frame, coords, walk=False, talk=False, outside=False, keyframe=True):
    return (f'    <box frame="{frame}" outside="{int(outside)}" occluded="0" keyframe="{int(keyframe)}" {px(*coords)} '
            f'z_order="0"><attribute name="walk">{str(walk).lower()}</attribute>'
            f'<attribute name="talk">{str(talk).lower()}</attribute></box>\n')


def track(track_id, boxes):
    return f'  <track id="{track_id}" label="person" source="manual">\n{"".join(boxes)}  </track>\n'


# Track 0: keyframes at frames 0 and 20, outside from frame 25; track 5: one box at frame 5, held to the end.
KEYFRAMES_ONLY = track(0, [
    box(0, (0.1, 0.1, 0.5, 0.8), walk=True),
    box(20, (0.2, 0.2, 0.6, 0.9), walk=True, talk=True),
    box(25, (0.2, 0.2, 0.6, 0.9), outside=True),
]) + track(5, [box(5, (0.5, 0.25, 0.75, 1.0), talk=True)])

# What CVAT writes for the same tracks: a box at every frame (keyframe="0" between), attributes carried.
def dense_export() -> str:
    boxes = []
    for f in range(0, 26):
        if f <= 20:
            w = f / 20
            coords = tuple(a + w * (b - a) for a, b in zip((0.1, 0.1, 0.5, 0.8), (0.2, 0.2, 0.6, 0.9), strict=True))
            boxes.append(box(f, coords, walk=True, talk=f == 20, keyframe=f in (0, 20)))
        elif f < 25:
            boxes.append(box(f, (0.2, 0.2, 0.6, 0.9), walk=True, talk=True, keyframe=False))
        else:
            boxes.append(box(f, (0.2, 0.2, 0.6, 0.9), outside=True))
    held = [box(f, (0.5, 0.25, 0.75, 1.0), talk=True, keyframe=f == 5) for f in range(5, SECONDS * FPS)]
    return track(0, boxes) + track(5, held)


# Expected AVA rows at 1 Hz (frames 0, 10, 20): (video, t, box, action, person); walk=1, talk=2
EXPECTED_A = [
    ("clipA", 0.0, (0.1, 0.1, 0.5, 0.8), 1, 0),
    ("clipA", 1.0, (0.15, 0.15, 0.55, 0.85), 1, 0),  # interpolated; actions of the box before
    ("clipA", 1.0, (0.5, 0.25, 0.75, 1.0), 2, 5),
    ("clipA", 2.0, (0.2, 0.2, 0.6, 0.9), 1, 0),
    ("clipA", 2.0, (0.2, 0.2, 0.6, 0.9), 2, 0),
    ("clipA", 2.0, (0.5, 0.25, 0.75, 1.0), 2, 5),  # held after its last box to the task's end
]


def rows_of(path: Path) -> list[tuple]:
    rows = read_ava_csv(path, kind="groundtruth")
    return [(str(rows.video_ids[i]), float(rows.timestamps[i]), tuple(np.round(rows.boxes[i].astype(float), 3)),
             int(rows.action_ids[i]), int(rows.person_ids[i])) for i in range(len(rows))]


def as_expected(rows: list[tuple]) -> list[tuple]:
    return [(v, t, tuple(np.round(np.array(b, np.float32).astype(float), 3)), a, p) for v, t, b, a, p in rows]


def cvat_tracks(tmp_path: Path, name: str, source: str, tracks: str, **kw) -> VideoTracks:
    path = tmp_path / name
    path.write_text(cvat_xml(source, tracks, **kw), encoding="utf-8")
    return cvat_video_tracks(read_cvat_video_xml(path))


def test_cvat_to_ava_exact_rows_keyframes_only_and_dense(tmp_path, video_dir):
    anns = [cvat_tracks(tmp_path, "a.xml", "clipA.mp4", KEYFRAMES_ONLY),
            cvat_tracks(tmp_path, "b.xml", "clipB.mp4", dense_export())]
    out = tmp_path / "out"
    manifest = convert_dataset(out, anns, find_videos([video_dir]), val_videos=["clipB"])
    assert rows_of(out / "annotations/train.csv") == as_expected(EXPECTED_A)
    expected_b = [("clipB", *r[1:]) for r in EXPECTED_A]
    assert rows_of(out / "annotations/val.csv") == as_expected(expected_b)
    assert LabelMap.from_pbtxt(out / "annotations/label_map.pbtxt").names == ("walk", "talk")
    assert read_exclusions(out / "annotations/train_excluded_timestamps.csv") == set()
    assert manifest["splits"] == {"train": ["clipA"], "val": ["clipB"]}
    assert manifest["time_offset"] == 0 and manifest["keyframe_rate"] == 1.0
    assert manifest["videos"]["clipA"]["fps"] == FPS and manifest["videos"]["clipA"]["num_frames"] == 30
    assert manifest["person_ids"]["clipA"] == {"0": 0, "5": 5}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    data = yaml.safe_load((out / "data.yaml").read_text())["data"]
    assert data == {"root": str(out.resolve()), "label_map": "annotations/label_map.pbtxt", "source": "videos",
                    "fps": FPS, "time_offset": 0, "train_annotations": "annotations/train.csv",
                    "val_annotations": "annotations/val.csv", "train_proposals": None, "val_proposals": None,
                    "synthetic": None}


def test_keyframe_rate_and_every_frame(tmp_path, video_dir):
    ann = cvat_tracks(tmp_path, "a.xml", "clipA.mp4", KEYFRAMES_ONLY)
    out = tmp_path / "out"
    convert_dataset(out, [ann], find_videos([video_dir]), keyframe_rate=2, val_fraction=0)
    rows = rows_of(out / "annotations/train.csv")
    assert sorted({r[1] for r in rows}) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert ("clipA", 2.5, (0.5, 0.25, 0.75, 1.0), 2, 5) in rows and not [r for r in rows if r[1] == 2.5 and r[4] == 0]
    assert "0.5," in (out / "annotations/train.csv").read_text()

    convert_dataset(out, [ann], find_videos([video_dir]), keyframe_rate=None, val_fraction=0)
    rows = rows_of(out / "annotations/train.csv")
    person0 = sorted({r[1] for r in rows if r[4] == 0})
    assert person0 == [round(f / FPS, 4) for f in range(25)]  # frames 0..24; outside from 25
    assert {r[1] for r in rows if r[4] == 5} == {round(f / FPS, 4) for f in range(5, 30)}
    at = {r[1]: r[2] for r in rows if r[4] == 0 and r[3] == 1}
    assert at[0.5] == tuple(np.round(np.float32([0.125, 0.125, 0.525, 0.825]).astype(float), 3))


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_person_csv_frames_pixels_interpolation_and_gaps(tmp_path, video_dir):
    csv_path = write_csv(tmp_path / "people.csv", [
        "video,frame,track,x1,y1,x2,y2,action",
        "# a comment",
        f"clipA,0,alice,{0.1 * W},{0.1 * H},{0.5 * W},{0.8 * H},walk",
        f"clipA,0,alice,{0.1 * W},{0.1 * H},{0.5 * W},{0.8 * H},talk",  # same box: actions add up
        f"clipA,20,alice,{0.2 * W},{0.2 * H},{0.6 * W},{0.9 * H},walk,talk",  # 2 s gap > max gap: no 1 s row
        f"clipA,5,bob,{0.5 * W},{0.25 * H},{0.75 * W},{1.0 * H},stand",
        f"clipA,15,bob,{0.25 * W},{0.25 * H},{0.5 * W},{1.0 * H}",  # 1 s gap: interpolated at frame 10
        "",
        f"clipC.mp4,10,7,{W * 0.25:.1f},0,{W * 0.5:.1f},{H * 0.5:.1f},stand",
        f"clipC.mp4,20,7,{W * 0.25:.1f},0,{W * 0.5:.1f},{H * 0.5:.1f}",  # a person without action
    ])
    anns = read_person_csv(csv_path)
    assert [a.video for a in anns] == ["clipA", "clipC.mp4"] and anns[0].units == "pixels"
    assert [t.track for t in anns[0].tracks] == ["alice", "bob"]
    out = tmp_path / "out"
    manifest = convert_dataset(out, anns, find_videos([video_dir]), val_fraction=0)
    assert manifest["labels"] == [{"id": 1, "name": "stand"}, {"id": 2, "name": "talk"}, {"id": 3, "name": "walk"}]
    assert manifest["person_ids"] == {"clipA": {"alice": 0, "bob": 1}, "clipC": {"7": 7}}
    assert manifest["counts"]["keyframe_boxes_without_action"] == 1
    assert rows_of(out / "annotations/train.csv") == as_expected([
        ("clipA", 0.0, (0.1, 0.1, 0.5, 0.8), 2, 0),
        ("clipA", 0.0, (0.1, 0.1, 0.5, 0.8), 3, 0),
        ("clipA", 1.0, (0.375, 0.25, 0.625, 1.0), 1, 1),  # bob between frames 5 and 15, actions of frame 5
        ("clipA", 2.0, (0.2, 0.2, 0.6, 0.9), 2, 0),
        ("clipA", 2.0, (0.2, 0.2, 0.6, 0.9), 3, 0),
        ("clipC", 1.0, (0.25, 0.0, 0.5, 0.5), 1, 7),
    ])
    assert rows_of(out / "annotations/val.csv") == []

    # with an unlimited gap alice is interpolated at 1 s too
    anns = read_person_csv(csv_path, max_gap_s=None)
    convert_dataset(out, anns, find_videos([video_dir]), val_fraction=0)
    assert ("clipA", 1.0, (0.15, 0.15, 0.55, 0.85), 2, 0) in rows_of(out / "annotations/train.csv")


def test_person_csv_times_without_header(tmp_path, video_dir):
    path = write_csv(tmp_path / "t.csv", ["clipB,0.5,1,0.1,0.2,0.3,0.4,sit", "clipB,1.5,1,0.3,0.2,0.5,0.4,sit"])
    anns = read_person_csv(path, timing="seconds")
    assert anns[0].units == "normalized" and anns[0].tracks[0].boxes[0].time_s == 0.5
    out = tmp_path / "out"
    convert_dataset(out, anns, find_videos([video_dir]), val_fraction=0)
    assert rows_of(out / "annotations/train.csv") == as_expected([("clipB", 1.0, (0.2, 0.2, 0.4, 0.4), 1, 1)])
    # without a header, column 2 is a frame index: 0.5 is not one
    with pytest.raises(ConversionError, match=r"t.csv:1: frame index 0.5 is not an integer"):
        read_person_csv(path)


def test_round_trip_ava_rows_through_person_csv(tmp_path):
    from data_prep.synthetic import SyntheticSpec, generate_dataset, synthetic_label_map

    src = tmp_path / "syn"
    spec = SyntheticSpec(videos=3, seconds=4, fps=10, width=96, height=64, seed=3, time_offset=0, frames=False,
                         val_videos=1, keyframe_margin_s=0)
    generated = generate_dataset(src, spec)
    label_map = synthetic_label_map()
    originals = {s: rows_of(src / f"annotations/{s}.csv") for s in ("train", "val")}
    assert len(originals["train"]) > 5
    both = read_ava_csv(src / "annotations/train.csv", kind="groundtruth")
    val = read_ava_csv(src / "annotations/val.csv", kind="groundtruth")
    csv_path = tmp_path / "people.csv"
    write_person_csv(csv_path, type(both)(*(np.concatenate([a, b]) for a, b in zip(
        (both.video_ids, both.timestamps, both.boxes, both.action_ids, both.scores, both.person_ids),
        (val.video_ids, val.timestamps, val.boxes, val.action_ids, val.scores, val.person_ids), strict=True))),
        label_map)
    anns = read_person_csv(csv_path)
    assert anns[0].units == "normalized"
    out = tmp_path / "out"
    manifest = convert_dataset(out, anns, find_videos([src / "videos"]), label_map=label_map,
                               val_videos=generated["splits"]["val"])
    assert manifest["splits"] == generated["splits"]
    for split in ("train", "val"):
        assert sorted(rows_of(out / f"annotations/{split}.csv")) == sorted(originals[split])
    assert LabelMap.from_pbtxt(out / "annotations/label_map.pbtxt") == label_map

    # The converted dataset loads with no code changes: its data.yaml as the config's data section, from the
    # videos, and from frames made by the AVA steps.
    import yaml

    from detection.cli import main
    from detection.config import DataConfig, config_from_dict
    from detection.data import AvaDataset
    from detection.models.action_model import InputSpec

    section = yaml.safe_load((out / "data.yaml").read_text())["data"]
    section["augment"] = {"jitter_short_side": [64, 64], "crop_size": None, "flip_prob": 0.0, "test_short_side": 64}
    data = config_from_dict(DataConfig, section, prefix="data")
    spec_in = InputSpec(num_frames=4, sampling_rate=2, short_side=64, size=(64, 96))
    assert main(["prep", "ava", "frames", "--root", str(out), "--source", "videos", "--fps", "10", "--quiet"]) == 0
    assert main(["prep", "ava", "lists", "--root", str(out), "--quiet"]) == 0
    for source in ("videos", "frames"):
        data.source = source
        ds = AvaDataset(data, "train", spec_in, label_map)
        expected = {}
        for v, t, b, a, _ in originals["train"]:
            expected.setdefault((v, t), set()).add((b, a))
        assert len(ds) == len(expected)
        for i in range(len(ds)):
            sample = ds[i]
            assert sample.frame_index == round(sample.timestamp * 10)  # time_offset 0
            got = {(tuple(np.round(b.astype(np.float64), 3)), label_map.ids[c])
                   for b, row in zip(sample.original_boxes, sample.labels, strict=True) for c in np.flatnonzero(row)}
            assert got == expected[(sample.video_id, sample.timestamp)]


def test_errors_are_collected_with_locations(tmp_path, video_dir):
    csv_path = write_csv(tmp_path / "bad.csv", [
        "video,frame,track,x1,y1,x2,y2,action",
        "clipA,0,1,0.1,0.1,0.5,0.5,walk",
        "clipA,1,1,0.1,0.1,0.5,0.5,dance",  # 3: unknown label
        "clipA,2,1,0.1,0.1,1.5,0.5,walk",  # 4: outside the frame
        "clipA,3,1,0.5,0.1,0.5,0.5,walk",  # 5: x2 <= x1
        "clipZ,0,1,0.1,0.1,0.5,0.5,walk",  # 6: no such video
        "clipA,0,1,0.1,0.1,0.6,0.5,walk",  # 7: another box for track 1 at frame 0
        "clipA,1000,2,0.1,0.1,0.5,0.5,walk",  # 8: past the end of the video
        "clipA,0,1,0.1,0.1,0.5,0.5,walk",
    ])
    anns = read_person_csv(csv_path)
    label_map = LabelMap.from_pairs([(1, "walk")])
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as info:
        convert_dataset(out, anns, find_videos([video_dir]), label_map=label_map)
    errors = "\n".join(info.value.errors)
    assert f"{csv_path}:3: unknown label 'dance'" in errors
    assert f"{csv_path}:4: box [0.1, 0.1, 1.5, 0.5] is outside the frame" in errors
    assert f"{csv_path}:5: empty or inverted box" in errors
    assert f"{csv_path}:6: video 'clipZ' is not among the given videos" in errors
    assert f"{csv_path}:7: track 1 has another box at frame 0 ({csv_path}:2)" in errors
    assert f"{csv_path}:8: frame 1000 is past the end of video clipA.mp4" in errors
    assert len(info.value.errors) == 6
    assert not out.exists()  # nothing written

    unparsable = write_csv(tmp_path / "nan.csv", ["clipA,0,1,0.1,zero,0.5,0.5,walk", "clipA,0,1", "clipA,x,1,0,0,1,1"])
    with pytest.raises(ConversionError) as info:
        read_person_csv(unparsable)
    assert [e.split(": ")[0] for e in info.value.errors] == [f"{unparsable}:{i}" for i in (1, 2, 3)]

    # a box slightly outside is clipped
    ok = write_csv(tmp_path / "ok.csv", ["video,frame,track,x1,y1,x2,y2,a", "clipA,0,1,-0.005,0.1,1.004,0.5,walk"])
    convert_dataset(out, read_person_csv(ok), find_videos([video_dir]), val_fraction=0)
    assert rows_of(out / "annotations/train.csv") == as_expected([("clipA", 0.0, (0.0, 0.1, 1.0, 0.5), 1, 1)])


def test_cvat_errors_name_track_and_frame(tmp_path, video_dir):
    tracks = track(2, [box(0, (0.1, 0.1, 0.5, 0.5), walk=True), box(10, (0.6, 0.1, 0.5, 0.5), walk=True)])
    ann = cvat_tracks(tmp_path, "a.xml", "clipA.mp4", tracks)
    with pytest.raises(ConversionError) as info:
        convert_dataset(tmp_path / "out", [ann], find_videos([video_dir]))
    assert len(info.value.errors) == 1
    assert "a.xml:" in info.value.errors[0] and "track 2, frame 10: empty or inverted box" in info.value.errors[0]

    other_size = cvat_tracks(tmp_path, "b.xml", "clipA.mp4", KEYFRAMES_ONLY)
    other_size.frame_size = (640, 640)
    with pytest.raises(ConversionError, match="annotated frame size 640x640 does not match"):
        convert_dataset(tmp_path / "out", [other_size], find_videos([video_dir]))


def test_split_by_video(tmp_path, video_dir):
    videos = find_videos([video_dir])
    anns = [VideoTracks(v, [PersonTrack("1", [TrackBox(0, None, (0.1, 0.1, 0.2, 0.2), ("a",))])], f"{v}.csv",
                        units="normalized") for v in videos]
    out = tmp_path / "out"
    first = convert_dataset(out, anns, videos, val_fraction=0.2, seed=1)["splits"]
    assert len(first["val"]) == 1 and sorted(first["train"] + first["val"]) == ["clipA", "clipB", "clipC"]
    assert convert_dataset(out, anns, videos, val_fraction=0.2, seed=1)["splits"] == first
    seeds = {tuple(convert_dataset(out, anns, videos, seed=s)["splits"]["val"]) for s in range(8)}
    assert len(seeds) > 1
    assert convert_dataset(out, anns, videos, val_videos=["clipA", "clipC"])["splits"] == {
        "train": ["clipB"], "val": ["clipA", "clipC"]}
    assert {r[0] for r in rows_of(out / "annotations/val.csv")} == {"clipA", "clipC"}
    with pytest.raises(ConversionError, match="'clipQ' is not a converted video"):
        convert_dataset(out, anns, videos, val_videos=["clipQ"])


def test_symlink_copy_and_rerun(tmp_path, video_dir):
    videos = find_videos([video_dir])
    ann = VideoTracks("clipA", [PersonTrack("1", [TrackBox(0, None, (0.1, 0.1, 0.2, 0.2), ("a",))])], "x.csv",
                      units="normalized")
    ann_b = VideoTracks("clipB", ann.tracks, "y.csv", units="normalized")
    out = tmp_path / "out"
    convert_dataset(out, [ann, ann_b], videos, val_fraction=0)
    link = out / "videos" / "clipA.mp4"
    assert link.is_symlink() and link.resolve() == (video_dir / "clipA.mp4").resolve()

    convert_dataset(out, [ann], videos, val_fraction=0, copy=True)
    assert link.is_file() and not link.is_symlink()
    assert link.read_bytes() == (video_dir / "clipA.mp4").read_bytes()
    assert not (out / "videos" / "clipB.mp4").exists()  # the earlier run's other video is gone
    stamp = link.stat().st_ino
    convert_dataset(out, [ann], videos, val_fraction=0, copy=True)
    assert link.stat().st_ino == stamp  # an identical copy is kept

    convert_dataset(out, [ann], videos, val_fraction=0)
    assert link.is_symlink()
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads((out / "manifest.json").read_text())["videos_copied"] is False


def test_cli(tmp_path, video_dir, capsys):
    xml = tmp_path / "task.xml"
    xml.write_text(cvat_xml("renamed.mp4", KEYFRAMES_ONLY), encoding="utf-8")
    out = tmp_path / "out"
    argv = ["prep", "convert", "--format", "cvat", "--annotations", str(xml), "--videos", str(video_dir),
            "--out", str(out), "--val-fraction", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "video 'renamed.mp4' is not among the given videos" in err and "nothing written" in err
    assert main([*argv, "--video-map", "task.xml=clipA"]) == 0
    assert "AVA-format dataset in" in capsys.readouterr().out
    assert rows_of(out / "annotations/train.csv") == as_expected(EXPECTED_A)
    assert os.path.islink(out / "videos" / "clipA.mp4")

    label_map = tmp_path / "labels.txt"
    label_map.write_text("3 talk\n4 walk\n")
    csv_path = write_csv(tmp_path / "p.csv", ["video,time,track,x1,y1,x2,y2,action", "clipB,1,9,0.1,0.1,0.2,0.2,run"])
    argv = ["prep", "convert", "--format", "csv", "--annotations", str(csv_path), "--videos",
            str(video_dir / "clipB.mp4"), "--out", str(out), "--label-map", str(label_map), "--copy"]
    assert main(argv) == 2
    assert f"{csv_path}:2: unknown label 'run'" in capsys.readouterr().err
    csv_path.write_text("video,time,track,x1,y1,x2,y2,action\nclipB,1,9,0.1,0.1,0.2,0.2,walk\n")
    assert main([*argv, "--val-videos", "clipB"]) == 0
    assert rows_of(out / "annotations/val.csv") == as_expected([("clipB", 1.0, (0.1, 0.1, 0.2, 0.2), 4, 9)])
    assert LabelMap.from_pbtxt(out / "annotations/label_map.pbtxt").ids == (3, 4)
    assert not (out / "videos" / "clipA.mp4").exists() and not (out / "videos" / "clipB.mp4").is_symlink()
