"""``actdet run`` end to end on generated videos: a tiny random model, a blob detector, every output parsed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from detection.config import RunConfig
from detection.persons.base import DetectorSettings, PersonDetector
from detection.tubes.linker import LinkerConfig
from detection.video import VideoWriter

ROOT = Path(__file__).resolve().parent.parent
FILES = ("detections.csv", "tubes.json", "tracks.txt", "cvat.xml", "annotated.mp4")


class BlobDetector(PersonDetector):
    """People are the bright rectangles of the generated videos (a detector stub; ``delay`` seconds per batch)."""

    name = "blobs"

    def __init__(self, settings: DetectorSettings | None = None, delay: float = 0.0) -> None:
        super().__init__(settings or DetectorSettings(score_threshold=0.5, batch_size=4))
        self.delay = delay

    def _detect_pixels(self, frames):
        time.sleep(self.delay)
        out = []
        for frame in frames:
            mask = (frame.max(axis=2) > 128).astype(np.uint8)
            n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
            boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:].tolist() if area > 20]
            out.append((np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), 0.9, np.float32), None))
        return out


def make_video(path: Path, seconds: float, people: int = 2, fps: int = 30, size=(160, 120)) -> Path:
    """Moving bright rectangles on a dark textured background (deterministic)."""
    width, height = size
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    with VideoWriter(path, fps, width, height, threads=1) as writer:
        for i in range(int(seconds * fps)):
            image = background.copy()
            for p in range(people):
                x = int((10 + 40 * p + i * (1 + p)) % (width - 30))
                y = 20 + 30 * p
                image[y : y + 50, x : x + 20] = (230, 200, 90)
            writer.write(image)
    return path


@pytest.fixture(scope="module")
def model(one_torch_thread):
    import torch

    from detection.models.zoo import build_model

    torch.manual_seed(0)
    return build_model("synthetic/tiny").eval()


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    good = make_video(root / "good.mp4", 3.0)
    empty = make_video(root / "empty.mp4", 2.0, people=0)
    make_video(root / "whole.mp4", 3.0)
    corrupt = root / "corrupt.mp4"
    data = (root / "whole.mp4").read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])
    return {"good": good, "empty": empty, "corrupt": corrupt}


LINK = LinkerConfig(action_threshold=0.05)  # random scores: every class makes tubes


def test_multi_video_run_isolates_failures_and_every_file_parses(tmp_path, model, videos):
    from data_prep.cvat import cvat_video_tracks, read_cvat_video_xml
    from detection.formats.act import ActGroundTruth
    from detection.formats.tubes import read_tubes_json
    from detection.pipeline import run_videos
    from detection.tubes.io import read_detections_csv, read_mot_txt
    from eval.tube_inputs import read_detected_tubes
    from eval.video_map import evaluate_video_map

    run = RunConfig(keyframes="every:4", batch_size=3)
    summary = run_videos([videos["good"], videos["corrupt"], videos["empty"]], model, BlobDetector(), tmp_path,
                         run=run, linker=LINK)
    status = {v.video_id: v.status for v in summary.videos}
    assert status == {"good": "done", "corrupt": "failed", "empty": "done"}
    assert not summary.ok and "decoding stopped early" in summary.failed[0].error
    assert not (tmp_path / "corrupt").exists() and not list(tmp_path.glob(".*partial"))
    assert any("no people" in w for w in summary.videos[2].warnings)
    assert "1 videos failed" in summary.text() and (tmp_path / "summary.json").is_file()

    good = tmp_path / "good"
    assert sorted(p.name for p in good.iterdir()) == sorted([*FILES, "run.json"])
    rows = read_detections_csv(good / "detections.csv")
    assert len(rows) and (rows.track_ids >= 0).any()
    assert np.isin(rows.action_ids[rows.action_ids >= 0], model.label_map.ids).all()
    assert summary.videos[0].keyframes == 23  # frames 0, 4, ..., 88
    [tubes] = read_tubes_json(good / "tubes.json")
    assert tubes.video == "good" and len(tubes.tubes) == sum(summary.videos[0].tubes.values()) > 0
    # Video-mAP reads the tubes (against ground truth made of the tubes' own first class).
    names = list(model.label_map.names)
    gt = ActGroundTruth(labels=names, gttubes={"good": {}}, nframes={"good": 90}, resolution={"good": (120, 160)},
                        test_videos=[["good"]])
    first = tubes.tubes[0]
    px = first.boxes * np.array([160, 120, 160, 120])
    gt.gttubes["good"][model.label_map.index(first.label)] = [np.column_stack([first.frames + 1, px])]
    result = evaluate_video_map(gt, read_detected_tubes(good / "tubes.json", gt))
    assert result.classes[model.label_map.index(first.label)].video_ap_at("0.5") > 0
    mot = read_mot_txt(good / "tracks.txt", 160, 120)
    assert len(mot) and set(mot.ids.tolist()) == set(rows.track_ids[rows.track_ids >= 0].tolist())
    # CVAT: the structure CVAT imports, and our reader's round trip.
    root = ET.parse(good / "cvat.xml").getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("mode") == "interpolation" and task.findtext("original_size/width") == "160"
    assert [a.findtext("name") for a in task.iterfind("labels/label/attributes/attribute")] == names
    assert all(a.findtext("input_type") == "checkbox" for a in task.iterfind("labels/label/attributes/attribute"))
    for track in root.iterfind("track"):
        boxes = track.findall("box")
        assert all(len(b.findall("attribute")) == len(names) for b in boxes)
        assert [b.get("outside") for b in boxes].count("1") <= 1 and boxes[-1].get("outside") in ("0", "1")
    parsed = read_cvat_video_xml(good / "cvat.xml")
    assert {t.id for t in parsed.tracks} == set(mot.ids.tolist())
    tracks = cvat_video_tracks(parsed, actions_from="attributes")
    assert any(b.actions for t in tracks.tracks for b in t.boxes)
    # The annotated video: every decoded frame, H.264.
    with av.open(str(good / "annotated.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in container.decode(stream)) == 90
    # The person-free video: empty but valid files.
    assert read_tubes_json(tmp_path / "empty" / "tubes.json")[0].tubes == []
    assert (tmp_path / "empty" / "detections.csv").read_text() == ""


def test_ava_mode_csv_is_the_official_layout_and_evaluates(tmp_path, model, videos):
    from detection.pipeline import run_videos
    from eval.frame_map import evaluate_frame_map_files

    run = RunConfig(keyframes="ava", time_offset=900, video=False, cvat=False)
    summary = run_videos([videos["good"]], model, BlobDetector(), tmp_path, run=run, linker=LINK)
    assert summary.ok
    csv = tmp_path / "good" / "detections.csv"
    lines = csv.read_text().splitlines()
    assert lines and all(len(line.split(",")) == 8 and line.split(",")[6] for line in lines)
    assert {line.split(",")[1] for line in lines} == {"0900", "0901", "0902"}
    assert not (tmp_path / "good" / "annotated.mp4").exists()
    # Ground truth: the detected boxes themselves, all labelled with the first class.
    gt = tmp_path / "gt.csv"
    seen = dict.fromkeys(",".join(line.split(",")[:6]) for line in lines)
    gt.write_text("".join(f"{key},{model.label_map.ids[0]},{k}\n" for k, key in enumerate(seen)))
    labels = tmp_path / "labels.pbtxt"
    model.label_map.to_pbtxt(labels, evaluated_only=False)
    result = evaluate_frame_map_files(gt, csv, labels)
    assert result.mAP == pytest.approx(1.0)


def test_window_and_clips_clamped_at_the_ends(tmp_path, model, videos):
    from detection.pipeline import run_video

    run = RunConfig(keyframes="fps:2", start_s=1.0, end_s=2.5, video=True, cvat=False)
    result = run_video(videos["good"], model, BlobDetector(), tmp_path, run=run, linker=LINK)
    assert result.status == "done" and result.frames == 45 and result.keyframes == 3  # 1.0, 1.5, 2.0 s
    with av.open(str(tmp_path / "good" / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 45
    from detection.tubes.io import read_detections_csv

    rows = read_detections_csv(tmp_path / "good" / "detections.csv")
    assert set(np.round(rows.timestamps, 3).tolist()) == {1.0, 1.5, 2.0}


def test_buffers_do_not_grow_with_the_video(tmp_path, model):
    from detection.pipeline import run_video
    from detection.sinks.run_report import read_run_report

    short = make_video(tmp_path / "short.mp4", 4.0, size=(96, 64))
    long = make_video(tmp_path / "long.mp4", 16.0, size=(96, 64))
    run = RunConfig(keyframes="every:8", batch_size=2, queue_size=8)
    peaks = []
    for path in (short, long):
        assert run_video(path, model, BlobDetector(), tmp_path / "out", run=run, linker=LINK).status == "done"
        peaks.append(read_run_report(tmp_path / "out" / path.stem / "run.json")["counts"]["buffers"])
    assert peaks[0] == peaks[1]
    assert peaks[1]["keyframes_in_flight"] <= 4 + 2 + 2 and peaks[1]["held_frames"] <= 8 * 8


_SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r})
torch.set_num_threads(1)
torch.manual_seed(0)
from detection.config import RunConfig
from detection.models.zoo import build_model
from detection.pipeline import run_videos
from test_pipeline import BlobDetector, LINK
model = build_model("synthetic/tiny").eval()
summary = run_videos(sys.argv[2:], model, BlobDetector(delay={delay}), sys.argv[1],
                     run=RunConfig(keyframes="every:3", batch_size=2), linker=LINK, resume=True)
print({{v.video_id: v.status for v in summary.videos}})
"""


def _run_script(tmp_path: Path, delay: float) -> Path:
    script = tmp_path / f"run_{int(delay * 1000)}.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(root=str(ROOT), tests=str(ROOT / "tests"), delay=delay)))
    return script


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_kill_then_resume_gives_the_same_bytes(tmp_path, videos):
    first = make_video(tmp_path / "first.mp4", 1.0)
    second = make_video(tmp_path / "second.mp4", 4.0)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    # Killed (SIGKILL) in the middle of the second video.
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(_run_script(tmp_path, 0.05)), str(out), str(first), str(second)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        partial = out / ".second.partial"
        if (out / "first" / "run.json").exists() and partial.exists() and any(partial.iterdir()):
            time.sleep(0.5)
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "second").exists()
    # --resume: the first video is kept, the second redone from its start.
    resumed = subprocess.run([sys.executable, str(_run_script(tmp_path, 0.0)), str(out), str(first), str(second)],
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "'first': 'skipped'" in resumed.stdout and "'second': 'done'" in resumed.stdout
    # An uninterrupted run writes the same bytes.
    ref = tmp_path / "ref"
    clean = subprocess.run([sys.executable, str(_run_script(tmp_path, 0.0)), str(ref), str(first), str(second)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    for video in ("first", "second"):
        for name in FILES:
            assert _digest(out / video / name) == _digest(ref / video / name), (video, name)
    assert not list(out.glob(".*"))


def test_torchrun_shares_the_videos_out_and_rank_0_summarises(tmp_path):
    videos = [make_video(tmp_path / f"v{i}.mp4", 1.0 + 0.5 * i) for i in range(3)]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    script = str(_run_script(tmp_path, 0.0))
    torchrun = Path(sys.executable).with_name("torchrun")
    two = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", script, str(tmp_path / "two"),
                          *map(str, videos)], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, script, str(tmp_path / "one"), *map(str, videos)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    # Rank 0 took videos 0 and 2, rank 1 video 1; rank 0's summary lists all three in the given order.
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert [v["video_id"] for v in summary["videos"]] == ["v0", "v1", "v2"]
    assert all(v["status"] == "done" for v in summary["videos"])
    for video in ("v0", "v1", "v2"):
        for name in FILES:
            assert _digest(tmp_path / "two" / video / name) == _digest(tmp_path / "one" / video / name), (video, name)
