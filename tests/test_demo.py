import json

import numpy as np

from detection.config import load_config
from detection.demo import run_demo
from detection.formats.act import read_act_groundtruth
from detection.video import FrameStream, probe


def test_demo_prepares_data_and_draws_ground_truth(tmp_path):
    cfg = load_config(
        "synthetic/tiny",
        [f"output_dir={tmp_path / 'demo'}", f"data.root={tmp_path / 'data'}", "data.synthetic.videos=2",
         "data.synthetic.seconds=5", "data.synthetic.frames=false"],
    )
    report = run_demo(cfg, quiet=True)
    assert report.config_path.read_text().count("seconds: 5.0") == 1
    gt = read_act_groundtruth(tmp_path / "data" / "annotations" / "gt_tubes.pkl")
    (video,) = gt.test_videos[0]
    (preview,) = report.previews
    assert preview == tmp_path / "demo" / "preview" / f"{video}.mp4"
    info = probe(preview)
    assert (info.width, info.height) == (320, 240)

    # Frames with ground truth differ from the source video (boxes drawn); the frame count is kept.
    source = tmp_path / "data" / "videos" / f"{video}.mp4"
    annotated = {int(t[0]) - 1 for tubes in gt.gttubes[video].values() for tube in tubes for t in tube}
    changed = []
    with FrameStream(source) as src, FrameStream(preview) as out:
        pairs = list(zip(src, out, strict=True))
    assert len(pairs) == 150
    for a, b in pairs:
        changed.append(np.abs(a.image.astype(int) - b.image.astype(int)).max() > 60)
    changed = np.array(changed)
    assert changed[sorted(annotated)].all()
    assert not changed[[i for i in range(150) if i not in annotated]].any()

    summary = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert summary["previews"] == [str(preview)]
    assert str(preview) in report.summary()


def test_second_demo_run_reuses_the_dataset(tmp_path):
    overrides = [f"output_dir={tmp_path / 'demo'}", f"data.root={tmp_path / 'data'}", "data.synthetic.videos=1",
                 "data.synthetic.seconds=5", "data.synthetic.frames=false"]
    run_demo(load_config("synthetic/tiny", overrides), quiet=True)
    manifest = tmp_path / "data" / "manifest.json"
    stamp = manifest.stat().st_mtime_ns
    run_demo(load_config("synthetic/tiny", overrides), quiet=True)
    assert manifest.stat().st_mtime_ns == stamp
