"""The MViT video backbone: torchvision's MViT modules without the classifier, returning a feature grid.

``MViTBackbone`` maps normalized clips (B, 3, T, H, W) to features (B, C, T', H', W') with
``T' = ceil(T / 2)`` (the patch embedding's temporal stride) and ``H' = ceil(H / feature_stride)`` (likewise W').
It is built from torchvision's ``MViT`` class and ``MSBlockConfig`` and reuses its modules (``conv_proj``,
``pos_encoding``, ``blocks``, ``norm``) under torchvision's names, so a torchvision state dict loads as is
(the ``head.*`` keys aside). Two presets, identical to torchvision's ``mvit_v1_b`` and ``mvit_v2_s`` block
settings and flags at ``depth``/``embed_dim``/``num_heads`` = None:

- ``mvit_v1_b``: MViTv1-B 16x4, absolute (separable space/time) positional embeddings, 16 blocks.
- ``mvit_v2_s``: MViTv2-S 16x4, decomposed relative positional embeddings, residual pooling, 16 blocks.

Any input size runs, at build time and at run time. The block layout is built for ``input_size``; another
clip size re-samples v1's absolute embeddings on the fly (bicubic over the H'xW' grid, linear over T'),
and v2's relative tables are re-sampled by torchvision's attention itself (``_add_rel_pos``).

``feature_stride=16`` drops the spatial stride of the last query pooling (RoI heads need resolution); the
pooling convolutions keep their kernels, so the parameters are the same as at stride 32 (v2's relative
tables of the last stage grow and are interpolated when stride-32 weights are loaded). The key/value
strides follow the adaptive rule of the papers (start at 1x8x8, divide by each query stride), so at stride
16 the last stage keeps pooling keys and values 2x: they stay at H/32 like in every other stage.

``forward_fine`` also returns the tokens of the last block at spatial stride 8 (the end of the second
stage): finer features for RoI heads over small people.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint
from torchvision.models.video.mvit import MSBlockConfig, MViT, Pool

from detection.config import BackboneConfig

__all__ = [
    "ARCHS",
    "MViTBackbone",
    "MViTPreset",
    "PATCH_KERNEL",
    "PATCH_PADDING",
    "PATCH_STRIDE",
    "build_backbone",
    "make_block_settings",
    "patch_grid",
    "resize_rel_pos",
    "resize_spatial_pos",
    "resize_temporal_pos",
    "stage_lengths",
]

# The patch embedding (a Conv3d) of every preset: (T, H, W) kernel, stride and padding.
PATCH_KERNEL = (3, 7, 7)
PATCH_STRIDE = (2, 4, 4)
FINE_STRIDE = 8  # spatial stride of the fine features (forward_fine)
PATCH_PADDING = (1, 3, 3)


class ChannelsLastPool(nn.Module):
    """torchvision's MViT ``Pool`` computed on channels-last grids: same parameters, names and result.

    torchvision copies the (B, [heads,] N, C) tokens into a channels-first (B*heads, C, T, H, W) grid for
    the pooling (a depthwise Conv3d in the attention, a max pool on the skip path). The tokens already are
    a channels-last grid: a permuted view needs no copy, and oneDNN pools it faster (the depthwise Conv3d
    ~3x, forward + backward, measured on CPU), which makes a training step of the tiny config ~25 %
    faster. CUDA inputs take torchvision's path (not measured there).
    """

    def __init__(self, pool: Pool) -> None:
        super().__init__()
        self.pool = pool.pool
        self.norm_act = pool.norm_act
        self.norm_before_pool = pool.norm_before_pool

    def forward(self, x: Tensor, thw: tuple[int, int, int]) -> tuple[Tensor, tuple[int, int, int]]:
        if x.is_cuda or self.norm_before_pool or x.dim() not in (3, 4):
            return Pool.forward(self, x, thw)  # type: ignore[arg-type]
        heads = x.dim() == 4
        if not heads:
            x = x.unsqueeze(1)
        class_token, tokens = x[:, :, :1], x[:, :, 1:]
        b, h, _, c = tokens.shape
        grid = tokens.reshape(b * h, *thw, c).permute(0, 4, 1, 2, 3)  # a channels-last view, no copy
        pooled = self.pool(grid)
        t, hh, w = pooled.shape[2:]
        out = torch.cat((class_token, pooled.permute(0, 2, 3, 4, 1).reshape(b, h, t * hh * w, c)), dim=2)
        if self.norm_act is not None:
            out = self.norm_act(out)
        return (out if heads else out.squeeze(1)), (t, hh, w)


def _channels_last_pools(blocks: nn.ModuleList) -> None:
    """Swap every ``Pool`` of ``blocks`` (attention and skip path) for :class:`ChannelsLastPool`."""
    for block in blocks:
        for owner, name in ((block.attn, "pool_q"), (block.attn, "pool_k"), (block.attn, "pool_v"),
                            (block, "pool_skip")):
            pool = getattr(owner, name, None)
            if isinstance(pool, Pool):
                setattr(owner, name, ChannelsLastPool(pool))


@dataclass(frozen=True)
class MViTPreset:
    """One MViT variant as torchvision defines it (the 16-block, 96-channel base layout)."""

    depth: int = 16
    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 11, 2)  # blocks per stage; a query pooling starts each stage after the first
    first_kv_stride: int = 8  # spatial key/value stride of the first stage (divided by every query stride)
    pool_kernel: int = 3
    stochastic_depth: float = 0.2
    residual_pool: bool = False
    residual_with_cls_embed: bool = False
    rel_pos_embed: bool = False
    proj_after_attn: bool = False  # v2 doubles channels inside the pooling block, v1 in the block before it
    pool_q_every_block: bool = False  # v2 pools queries (stride 1) in every block


ARCHS: dict[str, MViTPreset] = {
    "mvit_v1_b": MViTPreset(),
    "mvit_v2_s": MViTPreset(
        residual_pool=True, rel_pos_embed=True, proj_after_attn=True, pool_q_every_block=True
    ),
}


def stage_lengths(depth: int, base: Sequence[int] = (1, 2, 11, 2)) -> list[int]:
    """Blocks per stage for ``depth`` blocks, proportional to ``base`` (the 16-block layout), each >= 1.

    Largest-remainder rounding: ``depth=16`` gives ``base`` back, 4 gives [1, 1, 1, 1], 8 gives [1, 1, 5, 1].
    Raises ValueError when ``depth`` is smaller than the number of stages.
    """
    if depth < len(base):
        raise ValueError(f"depth {depth} is too small: MViT needs at least {len(base)} blocks (one per stage)")
    total = sum(base)
    ideal = [b * depth / total for b in base]
    lengths = [max(1, math.floor(v)) for v in ideal]
    while sum(lengths) < depth:  # give a block to the stage furthest below its share
        i = max(range(len(base)), key=lambda s: (ideal[s] - lengths[s], -s))
        lengths[i] += 1
    while sum(lengths) > depth:  # take one from the stage furthest above its share (never below 1)
        i = max((s for s in range(len(base)) if lengths[s] > 1), key=lambda s: (lengths[s] - ideal[s], -s))
        lengths[i] -= 1
    return lengths


def make_block_settings(
    arch: str,
    *,
    depth: int | None = None,
    embed_dim: int | None = None,
    num_heads: int | None = None,
    feature_stride: int = 32,
) -> list[MSBlockConfig]:
    """torchvision ``MSBlockConfig`` per block for ``arch``, shrunk by depth/embed_dim/num_heads when given.

    Each stage after the first starts with a 1x2x2 query pooling and doubles channels and heads;
    ``feature_stride=16`` sets the last query stride to 1x1x1 (same kernel, so the same parameters). With
    all of depth/embed_dim/num_heads None and stride 32 this is exactly torchvision's preset. Raises
    ValueError for an unknown arch, a stride other than 16/32, or sizes that do not divide.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown MViT arch {arch!r}; known: {sorted(ARCHS)}")
    if feature_stride not in (16, 32):
        raise ValueError(f"feature_stride must be 16 or 32, got {feature_stride!r}")
    preset = ARCHS[arch]
    depth = preset.depth if depth is None else depth
    embed_dim = preset.embed_dim if embed_dim is None else embed_dim
    num_heads = preset.num_heads if num_heads is None else num_heads
    if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads:
        raise ValueError(f"embed_dim {embed_dim} must be a positive multiple of num_heads {num_heads}")
    lengths = stage_lengths(depth, preset.stages)
    starts = [sum(lengths[:s]) for s in range(1, len(lengths))]  # the query-pooling blocks
    q_strides = {start: 2 for start in starts}
    if feature_stride == 16:
        q_strides[starts[-1]] = 1

    def stage(i: int) -> int:
        return sum(1 for start in starts if start <= i)

    kernel = [preset.pool_kernel] * 3
    kv_stride = preset.first_kv_stride
    settings = []
    for i in range(depth):
        if i in q_strides:
            kv_stride = max(kv_stride // q_strides[i], 1)
        if preset.proj_after_attn:  # v2: the pooling block itself doubles the channels
            c_in, c_out = embed_dim * 2 ** stage(i - 1), embed_dim * 2 ** stage(i)
        else:  # v1: the block before the pooling block doubles them
            c_in, c_out = embed_dim * 2 ** stage(i), embed_dim * 2 ** stage(i + 1)
        if i in q_strides:
            kernel_q, stride_q = kernel, [1, q_strides[i], q_strides[i]]
        elif preset.pool_q_every_block:
            kernel_q, stride_q = kernel, [1, 1, 1]
        else:
            kernel_q, stride_q = [], []
        settings.append(
            MSBlockConfig(
                num_heads=num_heads * 2 ** stage(i),
                input_channels=c_in,
                output_channels=c_out,
                kernel_q=list(kernel_q),
                kernel_kv=list(kernel),
                stride_q=stride_q,
                stride_kv=[1, kv_stride, kv_stride],
            )
        )
    return settings


def patch_grid(input_size: Sequence[int]) -> tuple[int, int, int]:
    """The (T', H', W') token grid the patch embedding makes of a (T, H, W) clip."""
    sizes = zip(input_size, PATCH_KERNEL, PATCH_STRIDE, PATCH_PADDING, strict=True)
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in sizes)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------------
# Positional-embedding resampling (shared by the forward pass and the weight loader)


def resize_spatial_pos(spatial_pos: Tensor, src_hw: Sequence[int], dst_hw: Sequence[int]) -> Tensor:
    """Bicubic resampling of a flattened (H*W, C) spatial embedding from grid ``src_hw`` to ``dst_hw``."""
    src_hw, dst_hw = tuple(src_hw), tuple(dst_hw)
    if src_hw == dst_hw:
        return spatial_pos
    channels = spatial_pos.shape[-1]
    grid = spatial_pos.reshape(1, *src_hw, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid.float(), size=dst_hw, mode="bicubic", align_corners=False).to(spatial_pos.dtype)
    return grid.permute(0, 2, 3, 1).reshape(dst_hw[0] * dst_hw[1], channels)


def resize_temporal_pos(temporal_pos: Tensor, length: int) -> Tensor:
    """Linear resampling of a (T, C) temporal embedding to ``length`` rows."""
    if temporal_pos.shape[0] == length:
        return temporal_pos
    rows = F.interpolate(temporal_pos.float().t()[None], size=length, mode="linear", align_corners=False)
    return rows[0].t().to(temporal_pos.dtype)


def resize_rel_pos(table: Tensor, length: int) -> Tensor:
    """Linear resampling of a (L, D) relative-position table to ``length`` rows (as torchvision does at run time)."""
    return resize_temporal_pos(table, length)


# --------------------------------------------------------------------------------------------------
# The backbone


class MViTBackbone(nn.Module):
    """MViT without its classifier: (B, 3, T, H, W) normalized clips -> (B, C, T', H', W') features.

    Attributes: ``arch``; ``input_size`` (T, H, W) it was built for (any size runs); ``out_channels`` C;
    ``feature_stride`` (16 or 32, pixels per feature cell in H and W); ``temporal_stride`` (2, frames per
    feature step); ``block_settings`` (torchvision ``MSBlockConfig`` list); ``checkpointing`` (gradient
    checkpointing per block, used only in training with autograd on; may be switched at any time).
    """

    temporal_stride: int = PATCH_STRIDE[0]

    def __init__(
        self,
        arch: str = "mvit_v2_s",
        input_size: Sequence[int] = (16, 224, 224),
        feature_stride: int = 16,
        *,
        depth: int | None = None,
        embed_dim: int | None = None,
        num_heads: int | None = None,
        stochastic_depth: float | None = None,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        input_size = tuple(int(v) for v in input_size)
        if len(input_size) != 3 or min(input_size) < 1:
            raise ValueError(f"input_size must be three positive sizes (T, H, W), got {input_size!r}")
        settings = make_block_settings(
            arch, depth=depth, embed_dim=embed_dim, num_heads=num_heads, feature_stride=feature_stride
        )
        preset = ARCHS[arch]
        drop = preset.stochastic_depth if stochastic_depth is None else float(stochastic_depth)
        if not 0.0 <= drop < 1.0:
            raise ValueError(f"stochastic_depth must be in [0, 1), got {drop}")
        # torchvision derives every grid as size // stride; give it sizes whose quotient is the true
        # convolution output, so that embeddings are built for the grid this input really makes.
        grid = patch_grid(input_size)
        mvit = MViT(
            spatial_size=(grid[1] * PATCH_STRIDE[1], grid[2] * PATCH_STRIDE[2]),
            temporal_size=grid[0] * PATCH_STRIDE[0],
            block_setting=settings,
            residual_pool=preset.residual_pool,
            residual_with_cls_embed=preset.residual_with_cls_embed,
            rel_pos_embed=preset.rel_pos_embed,
            proj_after_attn=preset.proj_after_attn,
            stochastic_depth_prob=drop,
            num_classes=1,  # the classifier is dropped below
            patch_embed_kernel=PATCH_KERNEL,
            patch_embed_stride=PATCH_STRIDE,
            patch_embed_padding=PATCH_PADDING,
        )
        self.conv_proj = mvit.conv_proj
        self.pos_encoding = mvit.pos_encoding
        self.blocks = mvit.blocks
        _channels_last_pools(self.blocks)
        self.norm = mvit.norm

        self.arch = arch
        self.input_size = input_size
        self.feature_stride = int(feature_stride)
        self.out_channels = settings[-1].output_channels
        # The last block whose tokens have spatial stride 8: the RoI head's optional fine features.
        stride, self.fine_block = PATCH_STRIDE[1], None
        for i, cnf in enumerate(settings):
            stride *= cnf.stride_q[1] if cnf.stride_q else 1
            if stride == FINE_STRIDE:
                self.fine_block = i
        self.fine_channels = 0 if self.fine_block is None else settings[self.fine_block].output_channels
        self.block_settings = settings
        self.checkpointing = bool(checkpointing)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """The (T', H', W') patch grid the positional embeddings were built for."""
        return (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)

    def feature_grid(self, input_size: Sequence[int] | None = None) -> tuple[int, int, int]:
        """The (T', H', W') feature grid of a (T, H, W) clip (default: the build size)."""
        t, h, w = patch_grid(self.input_size if input_size is None else input_size)
        for cnf in self.block_settings:
            if cnf.stride_q:
                k, s = cnf.kernel_q, cnf.stride_q
                t, h, w = ((n + 2 * (kk // 2) - kk) // ss + 1 for n, kk, ss in zip((t, h, w), k, s, strict=True))
        return t, h, w

    def _embed(self, x: Tensor, thw: tuple[int, int, int]) -> Tensor:
        """Prepend the class token and add the absolute positions (v1), re-sampled to ``thw`` if needed."""
        enc = self.pos_encoding
        class_token = enc.class_token.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat((class_token, x), dim=1)
        if enc.spatial_pos is None or enc.temporal_pos is None or enc.class_pos is None:
            return x  # v2: relative positions live in the attention blocks
        spatial = resize_spatial_pos(enc.spatial_pos, enc.spatial_size, thw[1:])
        temporal = resize_temporal_pos(enc.temporal_pos, thw[0])
        pos = (temporal[:, None, :] + spatial[None, :, :]).reshape(-1, spatial.shape[-1])
        pos = torch.cat((enc.class_pos[None], pos), dim=0)
        return x + pos.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """Features (B, out_channels, T', H', W') of normalized clips ``x`` (B, 3, T, H, W)."""
        return self._run(x, fine=False)[0]

    def forward_fine(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`forward`'s features and the stride-8 tokens of block ``fine_block`` (B, fine_channels,
        T', H / 8, W / 8), not normalized. Raises ValueError when no block has stride 8."""
        if self.fine_block is None:
            raise ValueError(f"no block of this backbone has spatial stride {FINE_STRIDE}")
        return self._run(x, fine=True)  # type: ignore[return-value]  # the tap is set with fine=True

    def _run(self, x: Tensor, fine: bool) -> tuple[Tensor, Tensor | None]:
        if x.dim() != 5 or x.shape[1] != self.conv_proj.in_channels:
            raise ValueError(f"expected clips of shape (B, 3, T, H, W), got {tuple(x.shape)}")
        x = self.conv_proj(x)
        thw = (int(x.shape[2]), int(x.shape[3]), int(x.shape[4]))
        x = self._embed(x.flatten(2).transpose(1, 2), thw)
        use_checkpoint = self.checkpointing and self.training and torch.is_grad_enabled()
        tapped = None
        for i, block in enumerate(self.blocks):
            if use_checkpoint:
                x, thw = checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw = block(x, thw)
            if fine and i == self.fine_block:
                tapped = _grid(x[:, 1:], thw)
        return _grid(self.norm(x)[:, 1:], thw), tapped  # without the class token


def _grid(tokens: Tensor, thw: tuple[int, int, int]) -> Tensor:
    """(B, T'H'W', C) tokens as a (B, C, T', H', W') feature map."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *thw)


def build_backbone(cfg: BackboneConfig) -> MViTBackbone:
    """The backbone described by ``cfg`` with random initial weights.

    ``cfg.weights`` is not read here: load initial weights with
    ``detection.models.weights.load_backbone_weights(backbone, cfg.weights)``.
    """
    return MViTBackbone(
        arch=cfg.arch,
        input_size=cfg.input_size,
        feature_stride=cfg.feature_stride,
        depth=cfg.depth,
        embed_dim=cfg.embed_dim,
        num_heads=cfg.num_heads,
        stochastic_depth=cfg.stochastic_depth,
        checkpointing=cfg.checkpointing,
    )
