from dataclasses import dataclass, field
from typing import Literal

import pytest
import yaml

from detection.config import (
    Config,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    list_configs,
    load_config,
    resolve_config_path,
    save_config,
)


@dataclass
class Backbone:
    depth: int = 16
    input_size: tuple[int, int, int] = (16, 224, 224)
    arch: Literal["mvit_v1_b", "mvit_v2_s"] = "mvit_v2_s"


@dataclass
class Model:
    backbone: Backbone = field(default_factory=Backbone)
    dropout: float = 0.5
    weights: str | None = None
    freeze: list[str] = field(default_factory=list)
    checkpointing: bool = False


@dataclass
class Root:
    model: Model = field(default_factory=Model)


def test_nested_dict_becomes_typed_config():
    cfg = config_from_dict(
        Root,
        {"model": {"backbone": {"depth": 8, "input_size": [8, 160, 288]}, "dropout": 0, "freeze": ["a"]}},
    )
    assert cfg.model.backbone.depth == 8
    assert cfg.model.backbone.input_size == (8, 160, 288)
    assert cfg.model.dropout == 0.0 and isinstance(cfg.model.dropout, float)
    assert cfg.model.freeze == ["a"] and cfg.model.weights is None


def test_unknown_key_names_the_dotted_key_and_the_nearest():
    with pytest.raises(ConfigError, match=r"unknown config key 'model\.backbon' \(did you mean 'backbone'\?\)"):
        config_from_dict(Root, {"model": {"backbon": {}}})
    with pytest.raises(ConfigError, match=r"'model\.backbone\.dept' \(did you mean 'depth'\?\)"):
        config_from_dict(Root, {"model": {"backbone": {"dept": 3}}})
    with pytest.raises(ConfigError, match=r"unknown config key 'zzz'$"):
        config_from_dict(Root, {"zzz": 1})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"model": {"backbone": {"depth": "deep"}}}, r"model\.backbone\.depth: expected an integer"),
        ({"model": {"backbone": {"depth": True}}}, r"model\.backbone\.depth: expected an integer"),
        ({"model": {"checkpointing": "yes"}}, r"model\.checkpointing: expected true/false"),
        ({"model": {"backbone": {"arch": "resnet"}}}, r"'resnet' is not one of"),
        ({"model": {"backbone": {"input_size": [1, 2]}}}, r"input_size: expected 3 values, got 2"),
        ({"model": {"freeze": "a"}}, r"model\.freeze: expected a list"),
        ({"model": 3}, r"model: expected a mapping for section Model"),
    ],
)
def test_wrong_types_are_reported(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(Root, data)


def test_overrides_parse_yaml_values_and_create_sections():
    data = {"model": {"dropout": 0.5}}
    apply_overrides(data, ["model.backbone.depth=4", "model.weights=null", "model.freeze=[a, b]", "model.dropout=0.1"])
    cfg = config_from_dict(Root, data)
    assert cfg.model.backbone.depth == 4 and cfg.model.weights is None
    assert cfg.model.freeze == ["a", "b"] and cfg.model.dropout == pytest.approx(0.1)
    apply_overrides(data, ["model.dropout=1e-3"])  # YAML 1.1 reads this as a string; a float field takes it
    assert config_from_dict(Root, data).model.dropout == 0.001
    with pytest.raises(ConfigError, match="expected a number"):
        config_from_dict(Root, {"model": {"dropout": "1e-3x"}})
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["model.depth"])
    with pytest.raises(ConfigError, match="not of the form"):
        apply_overrides({}, ["model..depth=3"])


def test_shipped_config_by_name_with_override_and_typo(tmp_path):
    assert "synthetic/tiny" in list_configs()
    cfg = load_config("synthetic/tiny", ["data.synthetic.videos=2", f"output_dir={tmp_path}"])
    assert isinstance(cfg, Config)
    assert cfg.data.synthetic.videos == 2 and cfg.output_dir == str(tmp_path)
    typo = r"tiny.yaml: unknown config key 'data\.synthetic\.vidoes' \(did you mean 'videos'"
    with pytest.raises(ConfigError, match=typo):
        load_config("synthetic/tiny", ["data.synthetic.vidoes=2"])
    with pytest.raises(ConfigError, match="no config file or name 'synthetic/huge'.*synthetic/tiny"):
        resolve_config_path("synthetic/huge")


def test_resolved_config_is_saved_and_reloads_identically(tmp_path):
    cfg = load_config("synthetic/tiny", ["data.synthetic.seed=7"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert yaml.safe_load(path.read_text())["data"]["synthetic"]["seed"] == 7
    assert load_config(path) == cfg
    assert config_to_dict(load_config(path)) == config_to_dict(cfg)


def test_invalid_yaml_and_non_mapping_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping at the top level"):
        load_config(listy)
