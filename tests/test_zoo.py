import json
import urllib.error

import pytest
import torch

from detection.cli import main
from detection.config import load_config
from detection.models import zoo
from detection.models.action_model import ActionModel
from detection.models.pytorchvideo_ava import PytorchVideoAvaModel


def test_every_entry_has_complete_metadata():
    assert zoo.list_models() == list(zoo.ZOO)
    assert {"pytorchvideo/slowfast_r50_detection", "pytorchvideo/slow_r50_detection", "ava/mvit_v1_b_16x4",
            "ava/mvit_v2_s_16x4", "synthetic/tiny"} <= set(zoo.ZOO)
    for name, entry in zoo.ZOO.items():
        assert entry.name == name
        for field in ("description", "architecture", "weights", "trained_on", "metric_note", "label_map"):
            assert getattr(entry, field).strip(), (name, field)
        assert entry.input_spec.num_frames >= 1 and entry.input_spec.short_side >= 1
        if entry.metric is None:
            assert entry.metric_note.startswith("none"), name  # says plainly that there is no number
        else:
            assert entry.metric.value > 0 and entry.metric.source.startswith("pytorchvideo model zoo"), name
        if entry.config is not None:
            assert load_config(entry.config).name == entry.config
        json.dumps(entry.to_dict())


def test_published_numbers_and_contracts_of_the_pytorchvideo_models():
    sf, slow = zoo.ZOO["pytorchvideo/slowfast_r50_detection"], zoo.ZOO["pytorchvideo/slow_r50_detection"]
    assert (sf.metric.value, slow.metric.value) == (24.67, 19.5)
    assert sf.weights.endswith("/ava/SLOWFAST_8x8_R50_DETECTION.pyth")
    assert sf.input_spec.describe() == "32x2, short side 256" and slow.input_spec.describe() == "4x16, short side 256"
    assert zoo.ZOO["ava/mvit_v2_s_16x4"].input_spec.describe() == "16x4, short side 224"


def test_build_model_by_zoo_name_config_and_alias():
    assert isinstance(zoo.build_model("synthetic/tiny"), ActionModel)
    assert isinstance(zoo.build_model("slow_r50_detection"), PytorchVideoAvaModel)
    with pytest.raises(Exception, match="no zoo model"):
        zoo.build_model("nonsense/model")


def test_model_info_reports_size_and_cost():
    info = zoo.model_info("synthetic/tiny")
    assert info["parameters"] == sum(p.numel() for p in zoo.build_model("synthetic/tiny").parameters())
    assert 0.1 < info["gflops"] < 5
    assert info["input_size"] == [8, 128, 160] and info["feature_stride"] == 16 and info["num_classes"] == 6
    smaller = zoo.model_info(zoo.build_model("synthetic/tiny"), input_size=(8, 64, 80))
    assert smaller["gflops"] < info["gflops"] / 3


def test_checkpoint_roundtrip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = zoo.build_model("synthetic/tiny").eval()
    clips = torch.randn(2, 3, 8, 64, 80)
    boxes = [torch.tensor([[0.1, 0.2, 0.5, 0.9]]), torch.tensor([[0.3, 0.1, 0.8, 0.7], [0.0, 0.0, 1.0, 1.0]])]
    path = zoo.save_checkpoint(tmp_path / "ckpt" / "tiny.pt", model, load_config("synthetic/tiny"))
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.pt"]  # no temporary file left behind
    raw = zoo.read_actdet_checkpoint(path)
    assert raw["format"] == "actdet-1" and raw["label_map"][0] == [12, "stand"]
    assert raw["config"]["model"]["backbone"]["depth"] == 4
    loaded = zoo.load_checkpoint(path)
    assert loaded.label_map.ids == model.label_map.ids
    torch.testing.assert_close(loaded(clips, boxes), model(clips, boxes), rtol=0, atol=0)
    assert zoo.model_info(path)["parameters"] == zoo.model_info(model)["parameters"]


def test_foreign_files_are_refused_with_the_way_out(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(ValueError, match="not an actdet-1 checkpoint.*actdet model convert"):
        zoo.load_checkpoint(path)


def test_convert_a_backbone_checkpoint_with_its_config(tmp_path):
    torch.manual_seed(1)
    source = zoo.build_model("synthetic/tiny")
    torch.save({"model_state": source.backbone.state_dict()}, tmp_path / "backbone.pyth")
    result = zoo.convert(tmp_path / "backbone.pyth", tmp_path / "out.pt", config="synthetic/tiny")
    assert result.load_report is not None
    loaded = zoo.load_checkpoint(result.path)
    for key, value in source.backbone.state_dict().items():
        torch.testing.assert_close(loaded.backbone.state_dict()[key], value)
    with pytest.raises(ValueError, match="--config"):
        zoo.convert(tmp_path / "backbone.pyth", tmp_path / "out2.pt")


def test_convert_pytorchvideo_ava_weights_from_a_local_file(tmp_path):
    model = zoo.build_model("pytorchvideo/slow_r50_detection")
    torch.save({"model_state": model.net.state_dict()}, tmp_path / "SLOW_4x16_R50_DETECTION.pyth")
    result = zoo.convert(tmp_path / "SLOW_4x16_R50_DETECTION.pyth", tmp_path / "slow.pt",
                         config="pytorchvideo/slow_r50_detection")
    loaded = zoo.load_checkpoint(result.path)
    assert isinstance(loaded, PytorchVideoAvaModel) and loaded.num_classes == 80
    clips, boxes = torch.randn(1, 3, 4, 64, 64), [torch.tensor([[0.2, 0.2, 0.8, 0.8]])]
    torch.testing.assert_close(loaded(clips, boxes), model.eval()(clips, boxes))


# -- the command line ------------------------------------------------------------------------------


def test_cli_model_list(capsys):
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    for name in zoo.ZOO:
        assert name in out
    assert "24.67" in out and "no metric (none yet" in out
    assert main(["model", "list", "--json"]) == 0
    assert {e["name"] for e in json.loads(capsys.readouterr().out)} == set(zoo.ZOO)


def test_cli_model_info(capsys):
    assert main(["model", "info", "synthetic/tiny", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["gflops"] > 0 and info["parameters"] > 0 and info["feature_stride"] == 16
    assert main(["model", "info", "configs/synthetic/tiny.yaml"]) == 0
    assert "gflops" in capsys.readouterr().out
    assert main(["model", "info", "no/such-model"]) == 2
    assert "no zoo model" in capsys.readouterr().err


def test_cli_model_convert(tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiny.pt"
    assert main(["model", "convert", "synthetic/tiny", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out and zoo.read_actdet_checkpoint(out)["format"] == "actdet-1"

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    assert main(["model", "convert", "pytorchvideo/slow_r50_detection", "--out", str(tmp_path / "x.pt")]) == 2
    err = capsys.readouterr().err
    assert "actdet model convert: error:" in err and "SLOW_4x16_R50_DETECTION.pyth" in err
    assert "Traceback" not in err and not (tmp_path / "x.pt").exists()
