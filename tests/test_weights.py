"""Backbone weights: torchvision / pytorchvideo / PySlowFast layouts give the source model's own features,
positional tables are re-sampled on load, every unmatched key is reported, offline downloads fail fast."""

from __future__ import annotations

import re
import socket
import time
import urllib.error
import warnings
from unittest import mock

import pytest
import torch
import torchvision.models._api as tv_api
import torchvision.models.video.mvit as tv_mvit

from detection.models.backbone import MViTBackbone
from detection.models.weights import (
    SOURCES,
    LoadReport,
    WeightsLoadError,
    WeightsUnavailableError,
    convert_pyslowfast_mvit,
    convert_pytorchvideo_mvit,
    detect_layout,
    load_backbone_weights,
    read_checkpoint,
    resolve_source,
)

SIZE = (4, 64, 64)  # the real architectures at a reduced clip size
TINY = {"depth": 4, "embed_dim": 16, "num_heads": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build_torchvision_mvit(arch: str, size=SIZE) -> tv_mvit.MViT:
    """torchvision's ``mvit_v1_b`` / ``mvit_v2_s`` at another clip size (the builders fix 16x224x224)."""
    with mock.patch.object(tv_mvit, "_mvit", side_effect=lambda **kw: kw):
        kwargs = getattr(tv_mvit, arch)()
    for key in ("weights", "progress", "spatial_size", "temporal_size"):
        kwargs.pop(key)
    kwargs.setdefault("rel_pos_embed", False)
    kwargs.setdefault("proj_after_attn", False)
    return tv_mvit.MViT(spatial_size=size[1:], temporal_size=size[0], **kwargs)


def grid_before_head(model: torch.nn.Module, norm: torch.nn.Module, clips: torch.Tensor, shape) -> torch.Tensor:
    """The token grid a classification model produces before its head, as (B, C, T', H', W')."""
    seen = {}
    handle = norm.register_forward_hook(lambda module, args, out: seen.setdefault("tokens", out))
    try:
        with torch.no_grad():
            model(clips)
    finally:
        handle.remove()
    tokens = seen["tokens"][:, 1:]  # drop the class token
    return tokens.transpose(1, 2).reshape(shape)


@pytest.fixture(scope="module")
def torchvision_models():
    models = {}
    for seed, arch in enumerate(("mvit_v1_b", "mvit_v2_s")):
        torch.manual_seed(seed)
        models[arch] = build_torchvision_mvit(arch).eval()
    return models


@pytest.fixture(scope="module")
def clips():
    return torch.randn(2, 3, *SIZE, generator=torch.Generator().manual_seed(7))


# --------------------------------------------------------------------------------------------------
# torchvision


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_torchvision_weights_give_torchvisions_features(arch, torchvision_models, clips):
    source = torchvision_models[arch]
    ours = MViTBackbone(arch, SIZE, 32).eval()
    report = load_backbone_weights(ours, source.state_dict())
    assert report.ok and report.layout == "torchvision"
    assert report.head == ["head.1.weight", "head.1.bias"]
    assert not report.interpolated and len(report.loaded) == len(ours.state_dict())
    with torch.no_grad():
        features = ours(clips)
    expected = grid_before_head(source, source.norm, clips, features.shape)
    assert features.shape == (2, 768, 2, 2, 2)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_stride_32_weights_load_into_stride_16(arch, torchvision_models, clips):
    ours = MViTBackbone(arch, SIZE, 16).eval()
    report = load_backbone_weights(ours, torchvision_models[arch].state_dict())
    assert report.ok
    if arch == "mvit_v2_s":  # the last block's queries now span 4 cells instead of 2: 2 * 4 - 1 rows
        assert report.interpolated == {
            "blocks.15.attn.rel_pos_h": ((3, 96), (7, 96)),
            "blocks.15.attn.rel_pos_w": ((3, 96), (7, 96)),
        }
    else:
        assert not report.interpolated
    with torch.no_grad():
        assert ours(clips).shape == (2, 768, 2, 4, 4)


# --------------------------------------------------------------------------------------------------
# pytorchvideo


@pytest.fixture(scope="module")
def pytorchvideo_mvit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # pytorchvideo's torch.jit.script use
        from pytorchvideo.models.hub.vision_transformers import mvit_base_16x4

        torch.manual_seed(3)
        return mvit_base_16x4(pretrained=False, spatial_size=SIZE[1], temporal_size=SIZE[0]).eval()


@pytest.fixture(scope="module")
def pytorchvideo_file(pytorchvideo_mvit, tmp_path_factory):
    """pytorchvideo's state dict saved the way its hub files are: {"model_state": ...} in a .pyth."""
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / "MVIT_B_16x4.pyth"
    path.parent.mkdir()
    torch.save({"model_state": pytorchvideo_mvit.state_dict()}, path)
    return path


def test_pytorchvideo_weights_give_pytorchvideos_features(pytorchvideo_mvit, pytorchvideo_file, clips):
    ours = MViTBackbone("mvit_v1_b", SIZE, 32).eval()
    report = load_backbone_weights(ours, pytorchvideo_file)
    assert report.ok and report.layout == "pytorchvideo"
    assert report.head == ["head.1.weight", "head.1.bias"] and not report.interpolated
    assert any("eps" in note for note in report.notes)
    # Compare in float64: the fused qkv and the order of the scaling round differently in float32.
    reference = pytorchvideo_mvit
    try:
        reference.double()
        ours.double()
        with torch.no_grad():
            features = ours(clips.double())
        expected = grid_before_head(reference, reference.norm_embed, clips.double(), features.shape)
    finally:
        reference.float()
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-10)


def test_pytorchvideo_converter_names(pytorchvideo_mvit, torchvision_models):
    converted = convert_pytorchvideo_mvit(pytorchvideo_mvit.state_dict())
    reference = torchvision_models["mvit_v1_b"].state_dict()
    assert sorted(converted) == sorted(reference)
    assert {k: v.shape for k, v in converted.items()} == {k: v.shape for k, v in reference.items()}
    q = pytorchvideo_mvit.state_dict()["blocks.3.attn.q.weight"]
    v = pytorchvideo_mvit.state_dict()["blocks.3.attn.v.bias"]
    assert torch.equal(converted["blocks.3.attn.qkv.weight"][: q.shape[0]], q)
    assert torch.equal(converted["blocks.3.attn.qkv.bias"][-v.shape[0]:], v)


def test_pytorchvideo_name_loads_from_the_hub_cache_offline(pytorchvideo_file, monkeypatch, no_network):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(pytorchvideo_file.parent.parent))
    ours = MViTBackbone("mvit_v1_b", SIZE, 16)
    with mock.patch.object(torch.hub, "load_state_dict_from_url", wraps=torch.hub.load_state_dict_from_url) as spy:
        report = load_backbone_weights(ours, "pytorchvideo:mvit_base_16x4", progress=False)
    assert report.ok and report.source == "pytorchvideo:mvit_base_16x4"
    assert spy.call_args.args[0] == SOURCES["pytorchvideo:mvit_base_16x4"].url
    assert spy.call_args.kwargs["weights_only"] is True


# --------------------------------------------------------------------------------------------------
# PySlowFast


def to_pyslowfast(state: dict[str, torch.Tensor], separate_qkv: bool = False) -> dict[str, torch.Tensor]:
    """A torchvision MViT state dict under PySlowFast's names (slowfast/models/video_model_builder.py MViT,
    attention.py MultiScaleBlock/MultiScaleAttention, stem_helper.py PatchEmbed, common.py Mlp,
    head_helper.py TransformerBasicHead), saved from a DDP-wrapped model ("module." prefix)."""
    out = {}
    for key, value in state.items():
        if key.startswith("conv_proj."):
            key = "patch_embed.proj." + key[len("conv_proj."):]  # PatchEmbed.proj
        elif key == "pos_encoding.class_token":
            key, value = "cls_token", value.reshape(1, 1, -1)  # nn.Parameter(torch.zeros(1, 1, embed_dim))
        elif key == "pos_encoding.class_pos":
            key, value = "pos_embed_class", value.reshape(1, 1, -1)
        elif key == "pos_encoding.spatial_pos":
            key, value = "pos_embed_spatial", value[None]  # (1, H*W, C)
        elif key == "pos_encoding.temporal_pos":
            key, value = "pos_embed_temporal", value[None]  # (1, T, C)
        elif key.startswith("head.1."):
            key = "head.projection." + key[len("head.1."):]  # TransformerBasicHead.projection
        else:
            key = key.replace(".attn.project.0.", ".attn.proj.")
            key = re.sub(r"\.attn\.pool_([qkv])\.pool\.weight$", r".attn.pool_\1.weight", key)
            key = re.sub(r"\.attn\.pool_([qkv])\.norm_act\.0\.", r".attn.norm_\1.", key)
            key = key.replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.3.", ".mlp.fc2.")
            key = re.sub(r"^(blocks\.\d+)\.project\.", r"\1.proj.", key)
        if separate_qkv and ".attn.qkv." in key:  # older MViTv1 checkpoints: attn.q / attn.k / attn.v
            for name, part in zip("qkv", value.chunk(3, dim=0), strict=True):
                out["module." + key.replace(".qkv.", f".{name}.")] = part.clone()
            continue
        out["module." + key] = value
    return out


@pytest.mark.parametrize(("arch", "separate_qkv"), [("mvit_v1_b", True), ("mvit_v1_b", False), ("mvit_v2_s", False)])
def test_pyslowfast_layout_converts_back_exactly(arch, separate_qkv, torchvision_models, clips):
    source = torchvision_models[arch]
    reference = source.state_dict()
    fake = to_pyslowfast(reference, separate_qkv)
    assert detect_layout({k[len("module."):]: v for k, v in fake.items()}) == "pyslowfast"
    converted = convert_pyslowfast_mvit({k[len("module."):]: v for k, v in fake.items()})
    assert sorted(converted) == sorted(reference)
    for key, value in reference.items():
        assert converted[key].shape == value.shape and torch.equal(converted[key], value), key

    ours = MViTBackbone(arch, SIZE, 32).eval()
    report = load_backbone_weights(ours, {"model_state": fake, "epoch": 30, "cfg": "MVIT:\n  DEPTH: 16\n"})
    assert report.ok and report.layout == "pyslowfast"
    assert report.head == ["head.1.weight", "head.1.bias"]
    with torch.no_grad():
        features = ours(clips)
    expected = grid_before_head(source, source.norm, clips, features.shape)
    torch.testing.assert_close(features, expected, rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------------
# Positional tables trained at another size


def save_ours(model: MViTBackbone, path, size) -> None:
    """Our checkpoint format: the model's state dict and its config."""
    config = {"model": {"backbone": {"arch": model.arch, "input_size": list(size), "feature_stride": 16}}}
    torch.save({"model": {f"backbone.{k}": v for k, v in model.state_dict().items()}, "config": config}, path)


def test_v1_positions_are_interpolated_on_load(tmp_path):
    torch.manual_seed(0)
    trained = MViTBackbone("mvit_v1_b", (8, 64, 64), 16, **TINY).eval()
    save_ours(trained, tmp_path / "v1.pt", (8, 64, 64))

    wider = MViTBackbone("mvit_v1_b", (8, 64, 96), 16, **TINY).eval()
    report = load_backbone_weights(wider, tmp_path / "v1.pt")
    assert report.ok and report.layout == "torchvision"
    assert report.interpolated == {"pos_encoding.spatial_pos": ((256, 16), (384, 16))}
    clips = torch.randn(1, 3, 8, 64, 96)
    with torch.no_grad():  # the same re-sampling as running the 64x64 model on 64x96 clips
        torch.testing.assert_close(wider(clips), trained(clips), rtol=0, atol=1e-5)

    longer = MViTBackbone("mvit_v1_b", (16, 64, 64), 16, **TINY)
    report = load_backbone_weights(longer, tmp_path / "v1.pt")
    assert report.interpolated == {"pos_encoding.temporal_pos": ((4, 16), (8, 16))}


def test_v2_relative_tables_are_interpolated_on_load(tmp_path):
    trained = MViTBackbone("mvit_v2_s", (8, 64, 64), 16, **TINY)
    save_ours(trained, tmp_path / "v2.pt", (8, 64, 64))
    other = MViTBackbone("mvit_v2_s", (16, 64, 96), 16, **TINY).eval()
    report = load_backbone_weights(other, tmp_path / "v2.pt")
    assert report.ok and report.interpolated
    assert all(re.search(r"attn\.rel_pos_[hwt]$", key) for key in report.interpolated)
    assert {"blocks.0.attn.rel_pos_h", "blocks.0.attn.rel_pos_w", "blocks.0.attn.rel_pos_t"} <= set(report.interpolated)
    assert report.interpolated["blocks.0.attn.rel_pos_h"] == ((31, 16), (47, 16))  # 2 * max(16, 24) - 1
    assert report.interpolated["blocks.0.attn.rel_pos_t"] == ((7, 16), (15, 16))
    assert "interpolated: blocks.0.attn.rel_pos_t (7, 16) -> (15, 16)" in report.summary()
    with torch.no_grad():
        assert other(torch.randn(1, 3, 16, 64, 96)).shape == (1, 128, 8, 4, 6)


def test_non_square_positions_without_a_config_are_a_mismatch():
    source = MViTBackbone("mvit_v1_b", (8, 64, 96), 16, **TINY).state_dict()  # 16 x 24 cells, not a square
    square = MViTBackbone("mvit_v1_b", (8, 64, 64), 16, **TINY)
    with pytest.warns(UserWarning, match="shape mismatch: pos_encoding.spatial_pos"):
        report = load_backbone_weights(square, source, strict=False)
    assert report.mismatched == {"pos_encoding.spatial_pos": ((384, 16), (256, 16))}


# --------------------------------------------------------------------------------------------------
# The report


def test_report_lists_every_unmatched_key():
    torch.manual_seed(0)
    source = MViTBackbone("mvit_v2_s", (4, 32, 32), 16, **TINY).state_dict()
    source.pop("norm.bias")
    source["blocks.0.attn.extra"] = torch.zeros(3)
    source["blocks.1.mlp.0.weight"] = torch.zeros(5, 5)
    source["head.1.weight"] = torch.zeros(400, 128)
    target = MViTBackbone("mvit_v2_s", (4, 32, 32), 16, **TINY)
    before = target.state_dict()

    with pytest.raises(WeightsLoadError) as caught:
        load_backbone_weights(target, source)
    for key in ("norm.bias", "blocks.0.attn.extra", "blocks.1.mlp.0.weight"):
        assert key in str(caught.value)
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in before.items())  # strict: nothing loaded

    with pytest.warns(UserWarning, match="1 missing, 1 unexpected, 1 shape mismatches"):
        report = load_backbone_weights(target, source, strict=False)
    assert isinstance(report, LoadReport) and not report.ok
    assert report.missing == ["norm.bias"]
    assert report.unexpected == ["blocks.0.attn.extra"]
    assert report.mismatched == {"blocks.1.mlp.0.weight": ((5, 5), (128, 32))}
    assert report.head == ["head.1.weight"]
    summary = report.summary()
    for line in ("missing: norm.bias", "unexpected: blocks.0.attn.extra",
                 "shape mismatch: blocks.1.mlp.0.weight: checkpoint (5, 5) vs backbone (128, 32)",
                 "unused head keys: head.1.weight"):
        assert line in summary
    assert torch.equal(target.state_dict()["conv_proj.weight"], source["conv_proj.weight"])
    assert torch.equal(target.state_dict()["blocks.1.mlp.0.weight"], before["blocks.1.mlp.0.weight"])


def test_whole_model_checkpoints_keep_the_backbone_part(tmp_path):
    model = MViTBackbone("mvit_v1_b", (4, 32, 32), 16, **TINY)
    state = {f"backbone.{k}": v for k, v in model.state_dict().items()}
    state["head.proj.weight"] = torch.zeros(80, 128)
    torch.save({"model": state, "config": {"model": {"backbone": {"arch": "mvit_v1_b"}}}}, tmp_path / "m.pt")
    report = load_backbone_weights(MViTBackbone("mvit_v1_b", (4, 32, 32), 16, **TINY), tmp_path / "m.pt")
    assert report.ok and report.head == ["head.proj.weight"]


def test_weights_of_the_other_arch_are_refused():
    v2 = MViTBackbone("mvit_v2_s", (4, 32, 32), 16, **TINY).state_dict()
    with pytest.raises(WeightsLoadError, match="use arch mvit_v2_s"):
        load_backbone_weights(MViTBackbone("mvit_v1_b", (4, 32, 32), 16, **TINY), v2)
    with pytest.raises(WeightsLoadError, match="are mvit_v1_b weights but the backbone is mvit_v2_s"):
        load_backbone_weights(MViTBackbone("mvit_v2_s", (4, 32, 32), 16, **TINY), "pytorchvideo:mvit_base_32x3")


# --------------------------------------------------------------------------------------------------
# Sources, downloads and files


def test_named_sources_carry_their_metadata():
    from pytorchvideo.models.hub.vision_transformers import checkpoint_paths

    assert SOURCES["pytorchvideo:mvit_base_16x4"].url == checkpoint_paths["mvit_base_16x4"]
    assert SOURCES["pytorchvideo:mvit_base_32x3"].url == checkpoint_paths["mvit_base_32x3"]
    assert SOURCES["torchvision:mvit_v1_b"].url == tv_mvit.MViT_V1_B_Weights.KINETICS400_V1.url
    assert SOURCES["torchvision:mvit_v2_s"].url == tv_mvit.MViT_V2_S_Weights.KINETICS400_V1.url
    for source in SOURCES.values():
        assert source.mean == (0.45, 0.45, 0.45) and source.std == (0.225, 0.225, 0.225)
        assert source.trained_on == "Kinetics-400" and source.top1 > 75
    assert resolve_source("torchvision", "mvit_v2_s") is SOURCES["torchvision:mvit_v2_s"]
    assert resolve_source("/some/file.pth", "mvit_v2_s") is None
    with pytest.raises(WeightsLoadError, match="unknown weights name"):
        resolve_source("pytorchvideo:mvit_base_16x8", "mvit_v1_b")
    with pytest.raises(FileNotFoundError, match="named weights: 'torchvision'"):
        read_checkpoint("/nonexistent/weights.pth")
    with pytest.raises(WeightsLoadError, match="cannot tell the MViT key layout"):
        detect_layout({"fc.weight": torch.zeros(1)})


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize("mocked", ["download_url_to_file", "load_state_dict_from_url"])
@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_torchvision_weights_offline_fail_fast(arch, mocked, monkeypatch, tmp_path, no_network):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache
    offline = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    if mocked == "download_url_to_file":  # what torch.hub calls to fetch a file it has not cached
        monkeypatch.setattr(torch.hub, "download_url_to_file", mock.Mock(side_effect=offline))
    else:  # torchvision's enum holds its own reference to torch.hub's loader
        monkeypatch.setattr(torch.hub, "load_state_dict_from_url", mock.Mock(side_effect=offline))
        monkeypatch.setattr(tv_api, "load_state_dict_from_url", mock.Mock(side_effect=offline))
    timeout_before = socket.getdefaulttimeout()
    model = MViTBackbone(arch, (4, 32, 32), 16, **TINY)
    start = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as caught:
        load_backbone_weights(model, "torchvision", progress=False)
    assert time.monotonic() - start < 5
    url = SOURCES[f"torchvision:{arch}"].url
    message = str(caught.value)
    assert url in message and "local path" in message and "name resolution" in message
    assert socket.getdefaulttimeout() == timeout_before


def test_pytorchvideo_weights_offline_fail_fast(monkeypatch, tmp_path, no_network):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    loader = mock.Mock(side_effect=urllib.error.URLError("network is unreachable"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", loader)
    with pytest.raises(WeightsUnavailableError, match=re.escape(SOURCES["pytorchvideo:mvit_base_32x3"].url)):
        load_backbone_weights(MViTBackbone("mvit_v1_b", (4, 32, 32), 16, **TINY), "pytorchvideo:mvit_base_32x3")
    assert loader.call_args.kwargs["weights_only"] is True and loader.call_args.kwargs["map_location"] == "cpu"


class Payload:
    """Not a tensor: a weights_only load must refuse to rebuild it."""


def test_files_are_read_with_weights_only(tmp_path):
    model = MViTBackbone("mvit_v2_s", (4, 32, 32), 16, **TINY)
    torch.save({"model": model.state_dict()}, tmp_path / "ok.pt")
    with mock.patch.object(torch, "load", wraps=torch.load) as spy:
        assert load_backbone_weights(model, tmp_path / "ok.pt").ok
    assert spy.call_args.kwargs == {"map_location": "cpu", "weights_only": True}

    torch.save({"model": model.state_dict(), "extra": Payload()}, tmp_path / "object.pt")
    with pytest.raises(WeightsLoadError, match="refused to load"):
        load_backbone_weights(model, tmp_path / "object.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsLoadError, match="junk.pt"):
        load_backbone_weights(model, tmp_path / "junk.pt")
