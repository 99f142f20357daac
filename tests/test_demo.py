import json

import av
import numpy as np

from detection.config import load_config
from detection.demo import run_demo
from detection.formats.act import read_act_groundtruth
from detection.formats.tubes import read_tubes_json
from detection.video import FrameStream, probe
from eval.frame_map import evaluate_frame_map_files

# A demo small enough for a test: 3 videos of 5 s, a handful of training steps.
SMALL = ["data.synthetic.videos=3", "data.synthetic.seconds=5", "data.synthetic.keyframe_margin_s=1",
         "data.synthetic.frames=false", "data.source=videos", "data.synthetic.val_videos=1",
         "train.max_steps=4", "train.warmup_steps=1", "train.eval_every=4", "train.checkpoint_every=4",
         "train.batch_size=2", "train.num_workers=0", "train.log_every=2"]


def small_config(tmp_path):
    return load_config("synthetic/tiny", [f"output_dir={tmp_path / 'demo'}", f"data.root={tmp_path / 'data'}", *SMALL])


def test_demo_trains_runs_and_evaluates_end_to_end(tmp_path):
    report = run_demo(small_config(tmp_path), quiet=True)
    gt = read_act_groundtruth(tmp_path / "data" / "annotations" / "gt_tubes.pkl")
    (video,) = gt.test_videos[0]
    assert report.train_steps == 4 and report.checkpoint.is_file() and not report.train_reused
    (run_dir,) = report.run_dirs
    assert run_dir == tmp_path / "demo" / "run" / video
    for name in ("detections.csv", "tubes.json", "tracks.txt", "cvat.xml", "annotated.mp4", "run.json"):
        assert (run_dir / name).is_file(), name

    # The reported figures are those of the files the run wrote.
    data = tmp_path / "data" / "annotations"
    again = evaluate_frame_map_files(data / "val.csv", run_dir / "detections.csv", data / "label_map.pbtxt",
                                     data / "val_excluded_timestamps.csv")
    assert report.frame_map == again.mAP and 0.0 <= report.frame_map <= 1.0
    assert set(report.video_map) == {"0.2", "0.5", "0.75", "0.5:0.95"}
    (tubes,) = read_tubes_json(run_dir / "tubes.json")
    assert tubes.video == video
    with av.open(str(run_dir / "annotated.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 150

    # The ground-truth preview: boxes drawn exactly on the annotated frames, the frame count kept.
    (preview,) = report.previews
    assert (probe(preview).width, probe(preview).height) == (320, 240)
    source = tmp_path / "data" / "videos" / f"{video}.mp4"
    annotated = {int(t[0]) - 1 for tubes in gt.gttubes[video].values() for tube in tubes for t in tube}
    with FrameStream(source) as src, FrameStream(preview) as out:
        pairs = zip(src, out, strict=True)
        changed = np.array([np.abs(a.image.astype(int) - b.image.astype(int)).max() > 60 for a, b in pairs])
    assert len(changed) == 150
    assert changed[sorted(annotated)].all() and not changed[[i for i in range(150) if i not in annotated]].any()

    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert summary["frame_map"] == report.frame_map and summary["runs"] == [str(run_dir)]
    text = report.summary()
    assert str(run_dir / "annotated.mp4") in text and "frame-mAP" in text and "video-mAP@0.5" in text


def test_second_demo_reuses_the_dataset_and_the_trained_model(tmp_path):
    cfg = small_config(tmp_path)
    first = run_demo(cfg, quiet=True)
    manifest = tmp_path / "data" / "manifest.json"
    stamps = manifest.stat().st_mtime_ns, first.checkpoint.stat().st_mtime_ns
    second = run_demo(small_config(tmp_path), quiet=True)
    assert (manifest.stat().st_mtime_ns, second.checkpoint.stat().st_mtime_ns) == stamps
    assert second.train_reused and second.frame_map == first.frame_map
