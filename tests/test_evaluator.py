import numpy as np
import pytest
import torch
from synthetic_data import training_overrides
from torch import nn

from detection.config import load_config
from detection.data import AvaDataset
from detection.engine.evaluator import evaluate, reference_map
from detection.formats.ava import read_ava_csv
from detection.models.action_model import InputSpec
from detection.models.zoo import config_label_map
from eval.frame_map import evaluate_frame_map_files


@pytest.fixture(scope="module")
def data_root(training_dataset):
    return training_dataset


def make_config(root, *extra):
    return load_config("synthetic/tiny", [*training_overrides(root), "model.backbone.input_size=[4, 64, 64]",
                                          "train.num_workers=0", *extra])


class Oracle(nn.Module):
    """Scores each box with the labels of the dataset box it sits on (logits +-10), whatever the clip."""

    def __init__(self, dataset: AvaDataset, input_spec: InputSpec, scale: float = 10.0):
        super().__init__()
        self.label_map, self.input_spec = dataset.label_map, input_spec
        self.anchor = nn.Parameter(torch.zeros(1))  # something to sit on a device
        self.table = {}
        for i in range(len(dataset)):
            boxes, labels, _, _ = dataset.targets(i)
            for box, row in zip(boxes, labels, strict=True):
                self.table[tuple(np.round(box, 3).tolist())] = torch.from_numpy(row)
        self.scale = scale

    def forward(self, clips, boxes):
        rows = [self.table[tuple(np.round(b.numpy(), 3).tolist())] for per_clip in boxes for b in per_clip]
        return (torch.stack(rows) * 2 - 1) * self.scale + self.anchor * 0

    def scores(self, logits):
        return torch.sigmoid(logits)


def test_perfect_scores_on_ground_truth_boxes_give_map_one(data_root, tmp_path):
    cfg = make_config(data_root, "data.val_proposals=null")  # score the ground-truth boxes
    spec = InputSpec(num_frames=4, sampling_rate=2, short_side=64, size=(64, 64))
    dataset = AvaDataset(cfg.data, "val", spec, config_label_map(cfg))
    result = evaluate(Oracle(dataset, spec), cfg, "val", tmp_path / "val", dataset=dataset, batch_size=2)
    assert result.frame_map == pytest.approx(1.0)
    assert result.num_keyframes == len(dataset) == 5
    # One row per box and class, and the file evaluates the same through eval/frame_map.
    rows = read_ava_csv(result.detections_csv, kind="detections")
    assert len(rows) == result.num_boxes * len(dataset.label_map)
    again = evaluate_frame_map_files(data_root / "annotations/val.csv", result.detections_csv,
                                     data_root / "annotations/label_map.pbtxt")
    assert again.mAP == pytest.approx(result.frame_map)
    for name in ("metrics.json", "per_class.csv", "table.txt", "summary.json", "tubes.json"):
        assert (tmp_path / "val" / name).is_file(), name
    # Ground-truth tubes exist: the perfect keyframes, linked, are found again as tubes.
    assert result.video_map is not None and result.video is not None
    assert result.video_map["0.2"] > 0.5  # keyframes at 1 Hz: the tubes miss the ends of the GT tubes
    assert set(result.metrics()) >= {"mAP", "video_mAP@0.2", "video_mAP@0.5"}


def test_wrong_scores_rank_low_and_no_video_map_without_tubes(data_root, tmp_path):
    cfg = make_config(data_root, "data.val_proposals=null")
    spec = InputSpec(num_frames=4, sampling_rate=2, short_side=64, size=(64, 64))
    dataset = AvaDataset(cfg.data, "val", spec, config_label_map(cfg))
    inverted = Oracle(dataset, spec, scale=-10.0)  # every true class scored lowest
    result = evaluate(inverted, cfg, "val", tmp_path / "bad", dataset=dataset, video_map=False)
    assert result.frame_map < 0.6 and result.video_map is None and result.tubes_json is None
    with pytest.raises(FileNotFoundError, match="missing.pkl"):
        evaluate(inverted, cfg, "val", tmp_path / "x", dataset=dataset, gt_tubes=tmp_path / "missing.pkl")


def test_reference_levels_order(data_root, tmp_path):
    cfg = make_config(data_root)  # the config's proposals: the oracle is limited by their recall
    oracle = reference_map(cfg, "val", tmp_path / "o", "oracle")
    prior = reference_map(cfg, "val", tmp_path / "p", "prior")
    random = reference_map(cfg, "val", tmp_path / "r", "random", seed=1)
    assert 0.5 < oracle.frame_map <= 1.0
    assert prior.frame_map < oracle.frame_map and random.frame_map < oracle.frame_map
    assert (tmp_path / "o" / "detections.csv").is_file()


def test_the_real_model_runs_and_rows_follow_the_keyframes(data_root, tmp_path):
    from detection.models.action_model import build_action_model

    cfg = make_config(data_root)
    torch.manual_seed(0)
    model = build_action_model(cfg.model, config_label_map(cfg), load_weights=False)
    result = evaluate(model, cfg, "val", tmp_path / "m", batch_size=3, video_map=False)
    assert model.training  # the mode is restored
    rows = read_ava_csv(result.detections_csv)
    keys = list(zip(rows.video_ids.tolist(), rows.timestamps.tolist(), strict=True))
    assert keys == sorted(keys) and 0.0 <= result.frame_map <= 1.0
    assert np.all((rows.scores >= 0) & (rows.scores <= 1))
