"""MViTBackbone: presets equal to torchvision's, shrinking, any input size, stride 16/32, checkpointing."""

from __future__ import annotations

import copy
from unittest import mock

import pytest
import torch
import torchvision.models.video.mvit as tv_mvit

from detection.config import BackboneConfig
from detection.models import backbone as backbone_module
from detection.models.backbone import (
    ARCHS,
    MViTBackbone,
    build_backbone,
    make_block_settings,
    patch_grid,
    stage_lengths,
)

TINY = {"depth": 4, "embed_dim": 16, "num_heads": 1}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def torchvision_builder_kwargs(name: str) -> dict:
    """What torchvision's ``mvit_v1_b`` / ``mvit_v2_s`` pass to ``MViT`` (without building anything)."""
    with mock.patch.object(tv_mvit, "_mvit", side_effect=lambda **kw: kw):
        kwargs = getattr(tv_mvit, name)()
    for key in ("weights", "progress", "spatial_size", "temporal_size"):
        kwargs.pop(key)
    kwargs.setdefault("rel_pos_embed", False)  # _mvit's defaults
    kwargs.setdefault("proj_after_attn", False)
    kwargs.setdefault("residual_pool", False)
    kwargs.setdefault("residual_with_cls_embed", True)
    return kwargs


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_presets_are_torchvisions(arch):
    expected = torchvision_builder_kwargs(arch)
    preset = ARCHS[arch]
    assert make_block_settings(arch) == expected["block_setting"]
    flags = ("residual_pool", "residual_with_cls_embed", "rel_pos_embed", "proj_after_attn")
    assert {f: getattr(preset, f) for f in flags} == {f: expected[f] for f in flags}
    assert preset.stochastic_depth == expected["stochastic_depth_prob"] == 0.2


@pytest.mark.parametrize(
    ("arch", "stride", "params"),
    [
        # torchvision's num_params minus the 400-class head (768 * 400 + 400)
        ("mvit_v1_b", 32, 36_610_672 - 307_600),
        ("mvit_v1_b", 16, 36_610_672 - 307_600),
        ("mvit_v2_s", 32, 34_537_744 - 307_600),
        ("mvit_v2_s", 16, 34_537_744 - 307_600 + 2 * (27 - 13) * 96),  # last block's rel tables span 14, not 7
    ],
)
def test_preset_parameter_counts(arch, stride, params):
    with torch.device("meta"):
        model = MViTBackbone(arch, (16, 224, 224), stride)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.out_channels == 768
    assert model.feature_grid() == ((8, 14, 14) if stride == 16 else (8, 7, 7))


def test_stage_lengths_are_proportional():
    assert stage_lengths(16) == [1, 2, 11, 2]
    assert stage_lengths(4) == [1, 1, 1, 1]
    assert stage_lengths(8) == [1, 1, 5, 1]
    assert sum(stage_lengths(24)) == 24 and min(stage_lengths(24)) >= 1
    with pytest.raises(ValueError, match="at least 4 blocks"):
        stage_lengths(3)


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_shrunk_layout_keeps_the_stage_structure(arch):
    settings = make_block_settings(arch, depth=8, embed_dim=16, num_heads=2)
    pooled = [i for i, s in enumerate(settings) if s.stride_q and max(s.stride_q) > 1]
    assert pooled == [1, 2, 7]  # stages of 1, 1, 5, 1 blocks
    assert [s.num_heads for s in settings] == [2, 4, 8, 8, 8, 8, 8, 16]
    assert [s.stride_kv[1] for s in settings] == [8, 4, 2, 2, 2, 2, 2, 1]
    assert settings[-1].output_channels == 16 * 8
    for s in settings:  # one head width throughout, like the presets
        attn_dim = s.output_channels if ARCHS[arch].proj_after_attn else s.input_channels
        assert attn_dim // s.num_heads == 8


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_stride_16_keeps_the_parameters(arch):
    s32 = make_block_settings(arch)
    s16 = make_block_settings(arch, feature_stride=16)
    assert s16[14].stride_q == [1, 1, 1] and s16[14].kernel_q == s32[14].kernel_q == [3, 3, 3]
    assert [s.stride_kv for s in s16[14:]] == [[1, 2, 2]] * 2  # keys/values stay at H/32
    assert s16[:14] == s32[:14]
    with torch.device("meta"):
        a = MViTBackbone(arch, (16, 224, 224), 32).state_dict()
        b = MViTBackbone(arch, (16, 224, 224), 16).state_dict()
    assert list(a) == list(b)
    differing = {k for k in a if a[k].shape != b[k].shape}
    assert differing == ({"blocks.15.attn.rel_pos_h", "blocks.15.attn.rel_pos_w"} if arch == "mvit_v2_s" else set())


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
@pytest.mark.parametrize("stride", [16, 32])
def test_output_shapes_at_any_size(arch, stride):
    model = MViTBackbone(arch, (8, 64, 96), stride, **TINY).eval()
    assert (model.out_channels, model.feature_stride, model.temporal_stride) == (128, stride, 2)
    assert model.input_size == (8, 64, 96)
    expected = {
        (8, 64, 96): (4, 4, 6) if stride == 16 else (4, 2, 3),  # the build size
        (4, 64, 64): (2, 4, 4) if stride == 16 else (2, 2, 2),
        (6, 96, 32): (3, 6, 2) if stride == 16 else (3, 3, 1),
        (5, 70, 45): (3, 5, 3) if stride == 16 else (3, 3, 2),  # sizes that do not divide: ceil
        (1, 32, 32): (1, 2, 2) if stride == 16 else (1, 1, 1),
    }
    with torch.no_grad():
        for size, grid in expected.items():
            out = model(torch.randn(2, 3, *size))
            assert out.shape == (2, 128, *grid), size
            assert model.feature_grid(size) == grid
            assert torch.isfinite(out).all()


def test_build_size_that_does_not_divide():
    model = MViTBackbone("mvit_v1_b", (5, 66, 90), 16, **TINY).eval()
    assert model.token_grid == patch_grid((5, 66, 90)) == (3, 17, 23)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 5, 66, 90)).shape == (1, 128, 3, 5, 6)


def test_v1_positions_are_resampled_only_when_the_grid_differs():
    model = MViTBackbone("mvit_v1_b", (4, 32, 32), 32, **TINY)
    enc = model.pos_encoding
    with torch.no_grad():
        same = model._embed(torch.zeros(1, 2 * 8 * 8, 16), (2, 8, 8))[0, 1:]
        expected = (enc.temporal_pos[:, None] + enc.spatial_pos[None]).reshape(-1, 16)
        torch.testing.assert_close(same, expected, rtol=0, atol=0)
        assert model._embed(torch.zeros(1, 2 * 8 * 12, 16), (2, 8, 12)).shape == (1, 1 + 2 * 8 * 12, 16)
        # 2 -> 4 time steps, linear with half-pixel centres: step 1 sits a quarter of the way to step 1 of 2
        longer = model._embed(torch.zeros(1, 4 * 8 * 8, 16), (4, 8, 8))[0, 1:].reshape(4, 64, 16)
        step = enc.temporal_pos[1] - enc.temporal_pos[0]
        torch.testing.assert_close(longer[1, 0] - longer[0, 0], 0.25 * step)


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_checkpointing_gives_the_same_output_and_gradients(arch):
    torch.manual_seed(0)
    model = MViTBackbone(arch, (4, 32, 48), 16, stochastic_depth=0.5, **TINY).train()
    clips = torch.randn(2, 3, 4, 32, 48)
    results = []
    for on in (False, True):
        model.checkpointing = on
        model.zero_grad()
        torch.manual_seed(1)  # the same stochastic-depth draws in both runs
        with mock.patch.object(backbone_module, "checkpoint", wraps=backbone_module.checkpoint) as spy:
            out = model(clips)
            out.square().mean().backward()
        assert spy.call_count == (len(model.blocks) if on else 0)
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (out_a, grads_a), (out_b, grads_b) = results
    torch.testing.assert_close(out_a, out_b, rtol=0, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(("arch", "stride"), [("mvit_v1_b", 16), ("mvit_v2_s", 32)])
def test_forward_fine_taps_the_last_stride_8_block(arch, stride):
    torch.manual_seed(0)
    model = MViTBackbone(arch, (4, 64, 96), stride, **TINY).eval()
    clips = torch.randn(2, 3, 4, 64, 96)
    # TINY's 4 blocks are one per stage: block 1 ends the stride-8 stage.
    assert model.fine_block == 1 and model.fine_channels == model.block_settings[1].output_channels
    seen = []
    hook = model.blocks[1].register_forward_hook(lambda m, args, out: seen.append(out[0][:, 1:]))
    with torch.no_grad():
        features, fine = model.forward_fine(clips)
        plain = model(clips)
    hook.remove()
    torch.testing.assert_close(features, plain)
    assert fine.shape == (2, model.fine_channels, 2, 8, 12)
    torch.testing.assert_close(fine.flatten(2).transpose(1, 2), seen[0])  # the block's own tokens, in order


def test_forward_fine_needs_a_stride_8_block():
    model = MViTBackbone("mvit_v2_s", (4, 32, 48), 16, depth=4, embed_dim=16, num_heads=1)
    model.fine_block, model.fine_channels = None, 0
    with pytest.raises(ValueError, match="stride 8"):
        model.forward_fine(torch.randn(1, 3, 4, 32, 48))


@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_channels_last_pools_compute_what_torchvisions_do(arch):
    torch.manual_seed(0)
    model = MViTBackbone(arch, (4, 32, 48), 16, stochastic_depth=0.0, **TINY).train()
    pools = [m for m in model.modules() if isinstance(m, backbone_module.ChannelsLastPool)]
    assert pools and not any(isinstance(m, tv_mvit.Pool) for m in model.modules())
    reference = copy.deepcopy(model)
    for block in reference.blocks:  # torchvision's own Pool around the same modules
        for owner, name in ((block.attn, "pool_q"), (block.attn, "pool_k"), (block.attn, "pool_v"),
                            (block, "pool_skip")):
            pool = getattr(owner, name)
            if pool is not None:
                norm = pool.norm_act[0] if pool.norm_act is not None else None
                setattr(owner, name, tv_mvit.Pool(pool.pool, norm, norm_before_pool=pool.norm_before_pool))
    assert not any(isinstance(m, backbone_module.ChannelsLastPool) for m in reference.modules())
    assert model.state_dict().keys() == reference.state_dict().keys()
    clips = torch.randn(2, 3, 4, 32, 48)
    outs = []
    for m in (model, reference):
        out = m(clips)
        out.square().mean().backward()
        outs.append((out.detach(), {n: p.grad for n, p in m.named_parameters()}))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(grad, outs[1][1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_checkpointing_is_off_in_eval_and_without_grad():
    model = MViTBackbone("mvit_v2_s", (4, 32, 32), 16, checkpointing=True, **TINY)
    clips = torch.randn(1, 3, 4, 32, 32)
    with mock.patch.object(backbone_module, "checkpoint", wraps=backbone_module.checkpoint) as spy:
        model.eval()(clips)
        with torch.no_grad():
            model.train()(clips)
    assert spy.call_count == 0


def test_build_backbone_from_config():
    cfg = BackboneConfig(
        arch="mvit_v1_b", input_size=(4, 48, 64), feature_stride=16, checkpointing=True, stochastic_depth=0.1, **TINY
    )
    model = build_backbone(cfg)
    assert isinstance(model, MViTBackbone)
    assert (model.arch, model.input_size, model.feature_stride) == ("mvit_v1_b", (4, 48, 64), 16)
    assert model.checkpointing
    assert len(model.blocks) == 4 and model.out_channels == 128
    assert model.blocks[-1].stochastic_depth.p == pytest.approx(0.1)
    assert not any(k.startswith("head.") for k in model.state_dict())


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown MViT arch"):
        MViTBackbone("mvit_v3", (4, 32, 32))
    with pytest.raises(ValueError, match="feature_stride"):
        MViTBackbone("mvit_v2_s", (4, 32, 32), 8)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        MViTBackbone("mvit_v2_s", (4, 32, 32), depth=4, embed_dim=10, num_heads=4)
    with pytest.raises(ValueError, match="input_size"):
        MViTBackbone("mvit_v2_s", (32, 32))
    model = MViTBackbone("mvit_v2_s", (4, 32, 32), **TINY)
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        model(torch.randn(3, 4, 32, 32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("arch", ["mvit_v1_b", "mvit_v2_s"])
def test_bf16_autocast_with_checkpointing_on_cuda(arch):
    torch.manual_seed(0)
    model = MViTBackbone(arch, (8, 64, 64), 16, checkpointing=True, **TINY).cuda().train()
    clips = torch.randn(2, 3, 8, 64, 96, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(clips)
    assert out.shape == (2, 128, 4, 4, 6)
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        low = model(clips).float()
    with torch.no_grad():
        full = model(clips)
    assert (low - full).abs().mean() < 0.05 * full.abs().mean()
