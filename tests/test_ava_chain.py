"""The whole AVA preparation chain on synthetic videos served over HTTP, then the dataset over its output.

serve → download → cut → frames → lists → annotations → AvaDataset (from frames and from the cut videos): the
samples must hold exactly the boxes and labels the generator drew.
"""

import shutil
import zipfile
from collections import defaultdict

import numpy as np
import pytest
from http_server import serve_directory

from data_prep.ava.pipeline import PrepOptions, run_all, verify
from data_prep.synthetic import SyntheticScene, SyntheticSpec, annotate, generate_dataset
from detection.config import AugmentConfig, DataConfig
from detection.data import AvaDataset
from detection.models.action_model import InputSpec

SPEC = SyntheticSpec(videos=3, seconds=4, width=160, height=120, max_people=3, keyframe_margin_s=1, val_videos=1)
INPUT = InputSpec(num_frames=4, sampling_rate=4, short_side=120, size=(120, 160))
NO_AUG = AugmentConfig(jitter_short_side=(120, 120), crop_size=None, flip_prob=0.0, test_short_side=120)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(source dataset, prepared root, run_all result, requests, options): the chain run once over HTTP."""
    source = tmp_path_factory.mktemp("source")
    generate_dataset(source, SPEC)
    site = tmp_path_factory.mktemp("site")
    shutil.copytree(source / "videos", site / "videos")
    names = sorted(p.name for p in (site / "videos").iterdir())
    (site / "trainval.txt").write_text("\n".join(names) + "\n")
    with zipfile.ZipFile(site / "annotations.zip", "w") as z:
        for path in sorted((source / "annotations").glob("*")):
            if path.suffix in (".csv", ".pbtxt"):
                z.write(path, f"ava_synthetic/{path.name}")  # a folder inside the zip, as AVA's has
    root = tmp_path_factory.mktemp("root")
    with serve_directory(site) as server:
        options = PrepOptions(
            video_list=server.url + "trainval.txt",
            base_url=server.url + "videos/",
            annotations_url=server.url + "annotations.zip",
            start_s=0.0,
            end_s=SPEC.seconds - 1,  # inclusive, as AVA's 900..1800: the whole 4 s video
            fps=SPEC.fps,
            jobs=2,
        )
        result = run_all(root, options, stop="annotations")
        served = list(server.requests)
    return source, root, result, served, options


def test_every_step_completes_and_verifies(prepared):
    source, root, result, served, _ = prepared
    assert result.ok, result.message + "\n" + "\n".join(r.summary() for r in result.reports)
    assert [r.step for r in result.reports][:1] == ["download"]
    assert any(req.method == "GET" and req.name.endswith(".mp4") for req in served)
    for vid in SPEC.video_ids()[0] + SPEC.video_ids()[1]:
        frames = sorted((root / "frames" / vid).glob("*.jpg"))
        assert len(frames) == SPEC.num_frames and frames[0].name == f"{vid}_000001.jpg"
    for split in ("train", "val"):  # the lists name the same frames as the generator's own lists
        name = f"frame_lists/{split}.csv"
        assert (root / name).read_text() == (source / name).read_text()
    assert not list(root.rglob("*.part")) and not list(root.rglob(".*.tmp*"))


def test_a_second_run_redoes_nothing(prepared):
    _, root, _, _, options = prepared
    again = run_all(root, options, stop="annotations")  # the server is gone: nothing may need it
    assert again.ok and all(not r.done for r in again.reports), [r.summary() for r in again.reports]


def test_verify_accepts_the_tree_and_catches_a_lost_frame(prepared, tmp_path):
    _, root, _, _, _ = prepared
    copy = tmp_path / "copy"
    shutil.copytree(root, copy, symlinks=True)
    vid = SPEC.video_ids()[0][0]
    (copy / "frames" / vid / f"{vid}_000007.jpg").unlink()
    broken = verify(copy)
    assert vid in " ".join(broken.failed) + " ".join(broken.failed.values())


@pytest.mark.parametrize("source_kind", ["frames", "videos"])
def test_dataset_returns_exactly_what_the_generator_drew(prepared, source_kind):
    _, root, _, _, _ = prepared
    drawn = defaultdict(lambda: defaultdict(set))
    for i, vid in enumerate(SPEC.video_ids()[0]):
        for sec, box, action, _ in annotate(SyntheticScene(SPEC, i)).gt:
            drawn[(vid, SPEC.time_offset + sec)][tuple(np.round(box.astype(np.float64), 3).tolist())].add(action)
    data = DataConfig(root=str(root), synthetic=None, source=source_kind, videos_dir="videos_15min",
                      train_proposals=None, augment=NO_AUG)
    ds = AvaDataset(data, "train", INPUT, seed=0)
    assert len(ds) == len(drawn)
    labels = ds.label_map
    for i in range(len(ds)):
        s = ds[i]
        got = defaultdict(set)
        for box, row in zip(s.original_boxes, s.labels, strict=True):
            got[tuple(np.round(box.astype(np.float64), 3).tolist())] |= {labels.ids[c] for c in np.flatnonzero(row)}
        assert got == drawn[(s.video_id, s.timestamp)]
        assert s.frame_indices[INPUT.num_frames // 2] == round((s.timestamp - SPEC.time_offset) * SPEC.fps)
