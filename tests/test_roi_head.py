import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detection.models.roi_head import RoIActionHead, action_loss, boxes_to_pixels

STRIDE = 16


def position_features(t: int, h: int, w: int, stride: int = STRIDE) -> torch.Tensor:
    """(1, 3, T, H', W'): channel 0 = pixel x of each cell's centre, 1 = pixel y, 2 = frame index."""
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * stride
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * stride
    f = torch.zeros(1, 3, t, h, w, dtype=torch.float64)
    f[0, 0] = xs[None, None, :]
    f[0, 1] = ys[None, :, None]
    f[0, 2] = torch.arange(t, dtype=torch.float64)[:, None, None]
    return f


def head(in_channels=3, num_classes=4, **kw) -> RoIActionHead:
    return RoIActionHead(in_channels, num_classes, feature_stride=STRIDE, dropout=0.0, **kw).double()


def expected_max(lo: float, hi: float, roi_size: int = 7) -> float:
    """Max over the bins of a linear ramp: the centre of the last bin."""
    return hi - (hi - lo) / (2 * roi_size)


@pytest.mark.parametrize("image_size", [(64, 96), (250, 330)])  # a multiple of 16, and not one
def test_pooled_values_match_the_pixel_positions(image_size):
    height, width = image_size
    grid = (math.ceil(height / STRIDE), math.ceil(width / STRIDE))
    feats = position_features(4, *grid)
    box = np.array([[0.30, 0.25, 0.62, 0.70]], np.float32)
    pooled = head().pool(feats, [box], image_size)[0]
    x1, y1, x2, y2 = box[0].astype(np.float64) * [width, height, width, height]
    # aligned=True with spatial_scale 1/16: a cell's value is read at its pixel centre, so RoIAlign of a
    # feature map that holds pixel coordinates returns the pixel coordinates of its samples.
    assert pooled[0].item() == pytest.approx(expected_max(x1, x2), abs=1e-4)
    assert pooled[1].item() == pytest.approx(expected_max(y1, y2), abs=1e-4)
    assert pooled[2].item() == pytest.approx(1.5)  # mean of frames 0..3: the temporal average


def test_row_bins_keep_the_top_and_the_bottom_of_the_box_apart():
    feats = position_features(4, 4, 6)
    box = np.array([[0.30, 0.25, 0.62, 0.70]], np.float32)
    pooled = head(row_bins=2).pool(feats, [box], (64, 96))[0]
    assert pooled.shape == (3 * 2,)  # each channel's bands, top then bottom
    x1, y1, x2, y2 = box[0].astype(np.float64) * [96, 64, 96, 64]
    cell = (y2 - y1) / 7
    # 7 rows in 2 bands: rows 0-3 and 3-6 (adaptive pooling); y grows downwards, so each band's max is
    # its last row's centre; x is the same in both bands.
    assert pooled[2].item() == pytest.approx(y1 + 3.5 * cell, abs=1e-4)
    assert pooled[3].item() == pytest.approx(expected_max(y1, y2), abs=1e-4)
    assert pooled[0].item() == pooled[1].item() == pytest.approx(expected_max(x1, x2), abs=1e-4)
    assert head(row_bins=2).proj.in_features == 6
    torch.testing.assert_close(head(row_bins=1).pool(feats, [box], (64, 96)), head().pool(feats, [box], (64, 96)))
    with pytest.raises(ValueError, match="row_bins"):
        head(row_bins=8)


def test_the_true_image_size_matters_when_it_is_not_a_multiple_of_the_stride():
    feats = position_features(1, 16, 21)  # a 250 x 330 clip gives a 16 x 21 grid
    box = [np.array([[0.5, 0.5, 0.9, 0.9]], np.float32)]
    exact = head().pool(feats, box, (250, 330))[0]
    derived = head().pool(feats, box, None)[0]  # assumes 256 x 336
    assert exact[0].item() == pytest.approx(expected_max(0.5 * 330, 0.9 * 330), abs=1e-4)
    assert derived[0].item() == pytest.approx(expected_max(0.5 * 336, 0.9 * 336), abs=1e-4)


def _bilinear(plane: np.ndarray, y: float, x: float) -> float:
    """torchvision's roi_align sampling rule (zero outside [-1, size], clamped to the border cells)."""
    h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * plane[y0, x0] + (1 - ly) * lx * plane[y0, x1]
            + ly * (1 - lx) * plane[y1, x0] + ly * lx * plane[y1, x1])


def reference_pool(feats: np.ndarray, box_px: np.ndarray, stride: int, s: int = 7) -> np.ndarray:
    """Temporal mean, RoIAlign (aligned, adaptive sampling) and spatial max written out by hand."""
    frame = feats.mean(axis=1)  # (C, H, W)
    x1, y1, x2, y2 = box_px / stride - 0.5
    bh, bw = (y2 - y1) / s, (x2 - x1) / s
    gh, gw = max(math.ceil((y2 - y1) / s), 1), max(math.ceil((x2 - x1) / s), 1)
    out = np.full(frame.shape[0], -np.inf)
    for c in range(frame.shape[0]):
        for i in range(s):
            for j in range(s):
                samples = [
                    _bilinear(frame[c], y1 + i * bh + (iy + 0.5) * bh / gh, x1 + j * bw + (ix + 0.5) * bw / gw)
                    for iy in range(gh) for ix in range(gw)
                ]
                out[c] = max(out[c], sum(samples) / len(samples))
    return out


def test_head_matches_a_direct_computation_on_random_features():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 3, 2, 6, 8))
    boxes = [np.array([[0.05, 0.1, 0.6, 0.95], [0.5, 0.0, 1.0, 0.4]], np.float32),
             np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)]
    image = (90, 120)  # neither a multiple of 16
    got = head().pool(torch.from_numpy(feats), boxes, image).numpy()
    scale = np.array([120, 90, 120, 90], np.float64)
    want = [reference_pool(feats[b], box.astype(np.float64) * scale, STRIDE) for b in range(2) for box in boxes[b]]
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-9, atol=1e-9)


def test_fine_features_are_normalized_pooled_and_concatenated():
    torch.manual_seed(0)
    coarse = RoIActionHead(6, 4, STRIDE, dropout=0.0)
    both = RoIActionHead(6, 4, STRIDE, dropout=0.0, fine_channels=5, fine_stride=8)
    feats, fine = torch.randn(2, 6, 2, 4, 5), torch.randn(2, 5, 2, 8, 10)
    boxes = [torch.tensor([[0.1, 0.1, 0.5, 0.9]]), torch.tensor([[0.0, 0.2, 1.0, 1.0], [0.4, 0.4, 0.6, 0.6]])]
    pooled = both.pool(feats, boxes, (64, 80), fine)
    assert pooled.shape == (3, 11) and both.proj.in_features == 11
    torch.testing.assert_close(pooled[:, :6], coarse.pool(feats, boxes, (64, 80)))
    # The fine part: the same pooling, at stride 8, of the channel-normalized temporal mean.
    normed = F.layer_norm(fine.mean(dim=2).permute(0, 2, 3, 1), (5,)).permute(0, 3, 1, 2)
    fine_as_coarse = RoIActionHead(5, 4, 8, dropout=0.0)
    torch.testing.assert_close(pooled[:, 6:], fine_as_coarse.pool(normed[:, :, None], boxes, (64, 80)))
    logits = both(feats, boxes, (64, 80), fine)
    torch.testing.assert_close(logits, both.proj(pooled))
    logits.sum().backward()
    assert both.fine_norm.weight.grad is not None and both.fine_norm.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="fine"):
        both(feats, boxes, (64, 80))
    with pytest.raises(ValueError, match="fine"):
        coarse(feats, boxes, (64, 80), fine)
    with pytest.raises(ValueError, match="fine"):
        both(feats, boxes, (64, 80), fine[:, :4])


def test_rows_follow_clips_and_boxes_with_empty_clips():
    torch.manual_seed(0)
    h = RoIActionHead(8, 5, STRIDE, dropout=0.0)
    feats = torch.randn(3, 8, 2, 4, 5)
    boxes = [torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8]]), torch.zeros(0, 4),
             np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)]
    logits = h(feats, boxes, (64, 80))
    assert logits.shape == (3, 5)
    one = h(feats[2:], boxes[2:], (64, 80))
    torch.testing.assert_close(logits[2:], one)
    assert h(feats[1:2], [torch.zeros(0, 4)], (64, 80)).shape == (0, 5)


def test_bad_inputs_are_clear_errors():
    h = RoIActionHead(8, 5, STRIDE)
    feats = torch.randn(2, 8, 1, 4, 4)
    with pytest.raises(ValueError, match="one box tensor per clip"):
        h(feats, [torch.zeros(1, 4)])
    with pytest.raises(ValueError, match=r"boxes\[1\]: expected shape \(n, 4\)"):
        h(feats, [torch.zeros(1, 4), torch.zeros(2, 5)])
    with pytest.raises(ValueError, match=r"boxes\[1\]\[0\]: expected finite x1 <= x2, y1 <= y2"):
        h(feats, [torch.zeros(1, 4), torch.tensor([[0.5, 0.1, 0.2, 0.9]])])
    with pytest.raises(ValueError, match=r"boxes\[0\]\[1\]"):
        h(feats, [torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.1, float("nan"), 0.2, 0.3]]), torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="expected 8 channels"):
        h(torch.randn(2, 4, 1, 4, 4), [torch.zeros(1, 4)] * 2)
    with pytest.raises(ValueError, match="activation"):
        RoIActionHead(8, 5, STRIDE, activation="relu")


def test_sigmoid_head_scores_and_bce_loss():
    h = RoIActionHead(4, 3, STRIDE)
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    torch.testing.assert_close(h.scores(logits), torch.sigmoid(logits))
    torch.testing.assert_close(h.loss(logits, targets), F.binary_cross_entropy_with_logits(logits, targets))
    with pytest.raises(ValueError, match="multi-hot"):
        h.loss(logits, torch.tensor([0, 1]))


def test_softmax_head_scores_and_cross_entropy():
    h = RoIActionHead(4, 3, STRIDE, activation="softmax")
    logits = torch.tensor([[2.0, -1.0, 0.0], [0.5, 0.5, -3.0]])
    scores = h.scores(logits)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(2))
    classes = torch.tensor([0, 1])
    torch.testing.assert_close(h.loss(logits, classes), F.cross_entropy(logits, classes))
    torch.testing.assert_close(h.loss(logits, F.one_hot(classes, 3).float()), F.cross_entropy(logits, classes))


def test_loss_without_boxes_is_zero_with_a_gradient():
    logits = torch.zeros(0, 3, requires_grad=True)
    for activation, targets in (("sigmoid", torch.zeros(0, 3)), ("softmax", torch.zeros(0, dtype=torch.long))):
        loss = action_loss(logits, targets, activation)
        loss.backward()
        assert loss.item() == 0.0


def test_gradients_reach_the_features_and_bf16_autocast_runs():
    h = RoIActionHead(8, 5, STRIDE)
    feats = torch.randn(2, 8, 2, 4, 5, requires_grad=True)
    boxes = [torch.tensor([[0.1, 0.1, 0.5, 0.5]]), torch.tensor([[0.2, 0.3, 0.9, 0.8]])]
    h(feats, boxes).sum().backward()
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = h.eval()(feats.detach().bfloat16(), boxes)
    assert out.shape == (2, 5) and torch.isfinite(out.float()).all()


def test_boxes_to_pixels_scales_x_by_width_and_y_by_height():
    (px,) = boxes_to_pixels([np.array([[0.5, 0.25, 1.0, 0.5]])], (200, 300), torch.device("cpu"), torch.float32)
    torch.testing.assert_close(px, torch.tensor([[150.0, 50.0, 300.0, 100.0]]))
