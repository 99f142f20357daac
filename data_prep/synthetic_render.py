"""The drawing half of the synthetic dataset: stick-figure kinematics, motion generators, backgrounds.

Units: poses are angles in radians plus a lift in body heights; a figure's geometry is in body heights
(an upright figure is about 1.0 tall) until :func:`forward_kinematics` maps it to pixels. Pixel
coordinates follow OpenCV (pixel ``i`` is centred on ``i``); :func:`figure_boxes` returns boxes in the
continuous convention (pixel ``i`` spans ``[i, i + 1)``) that normalized boxes use.

Angles are measured in the figure's own side view, forward positive: torso pitch from vertical; thigh
and upper-arm angles from straight down (so ``pi`` points up); knee flexion turns the shank backward,
elbow flexion turns the forearm forward. ``facing`` (+1 right, -1 left, in between while turning)
mirrors the figure horizontally.
"""

from __future__ import annotations

import colorsys

import cv2
import numpy as np

# Movement classes (AVA ids) and the hand-wave overlay; the generators below key on them.
STAND, WALK, RUN, JUMP, BEND = 12, 14, 10, 7, 1
WAVE = 69

# Pose vector layout.
TORSO, HIP_F, HIP_N, KNEE_F, KNEE_N, SH_F, SH_N, EL_F, EL_N, LIFT = range(10)
N_POSE = 10

# Joints produced by forward kinematics (F = far side, N = near side of the figure).
PELVIS, NECK, HEAD, SHOULDER, KNEE_F_J, FOOT_F, KNEE_N_J, FOOT_N, ELBOW_F, HAND_F, ELBOW_N, HAND_N = range(12)
N_JOINTS = 12
# Polylines drawn in painter's order within one figure: far arm, far leg, (torso, head), near leg, near arm.
FAR_CHAINS = ((SHOULDER, ELBOW_F, HAND_F), (PELVIS, KNEE_F_J, FOOT_F))
NEAR_CHAINS = ((PELVIS, KNEE_N_J, FOOT_N), (SHOULDER, ELBOW_N, HAND_N))

# Proportions in body heights.
THIGH, SHANK, TORSO_LEN, NECK_LEN, HEAD_R = 0.245, 0.245, 0.30, 0.025, 0.075
UPPER_ARM, FOREARM, SHOULDER_AT = 0.16, 0.155, 0.92
LIMB_W, TORSO_W = 0.056, 0.09  # line widths in body heights (rounded to even pixels)

# cv2's anti-aliased thick lines and filled circles reach >= 50 % coverage up to ~0.75 px beyond their
# nominal edge; where strokes meet, their soft edges add up and reach further. Boxes include that.
_AA_PAD = 0.75
_JOINT_PAD = 1.0
_JUNCTIONS = (PELVIS, NECK, SHOULDER, KNEE_F_J, KNEE_N_J, ELBOW_F, ELBOW_N)
_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT


def widths_px(height_px: float) -> tuple[int, int, float]:
    """(limb line width, torso line width, head radius) in pixels for a figure ``height_px`` tall."""
    limb = 2 * max(1, round(LIMB_W * height_px / 2))
    torso = 2 * max(1, round(TORSO_W * height_px / 2))
    return limb, torso, HEAD_R * height_px


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


# --------------------------------------------------------------------------------------------------
# Motion generators: parameters drawn per segment, then a pose for every time t (seconds, may be
# negative or past the segment's end, which the blending between segments uses).


def _gait_params(rng: np.random.Generator, run: bool) -> dict[str, float]:
    """Walk and run share one gait with overlapping limb amplitudes; cadence and speed tell them apart."""
    if run:
        cadence, hip, knee, arm, elbow, lean, bob = (1.3, 1.75), (0.40, 0.65), (0.7, 1.4), (0.35, 0.8), \
            (0.6, 1.4), (0.06, 0.22), (0.01, 0.05)
    else:
        cadence, hip, knee, arm, elbow, lean, bob = (0.8, 1.1), (0.30, 0.55), (0.4, 1.0), (0.25, 0.6), \
            (0.1, 0.9), (0.0, 0.14), (0.0, 0.02)
    return {
        "cadence": rng.uniform(*cadence),  # gait cycles per second
        "hip": rng.uniform(*hip),
        "knee": rng.uniform(*knee),
        "arm": rng.uniform(*arm),
        "elbow": rng.uniform(*elbow),
        "lean": rng.uniform(*lean),
        "bob": rng.uniform(*bob),
        "phase": rng.uniform(0, 2 * np.pi),
    }


def _gait(t: np.ndarray, p: dict[str, float]) -> np.ndarray:
    phi = 2 * np.pi * p["cadence"] * t + p["phase"]
    pose = np.zeros((len(t), N_POSE))
    pose[:, TORSO] = p["lean"] + 0.02 * np.sin(2 * phi)
    for hip, knee, sh, el, ph in ((HIP_N, KNEE_N, SH_N, EL_N, phi), (HIP_F, KNEE_F, SH_F, EL_F, phi + np.pi)):
        pose[:, hip] = p["hip"] * np.sin(ph)
        # The knee bends while the leg swings forward (cos > 0) and stays almost straight in stance.
        pose[:, knee] = 0.08 + p["knee"] * np.maximum(0.0, np.cos(ph)) ** 1.5
        pose[:, sh] = 0.05 - p["arm"] * np.sin(ph)  # arms swing against the leg on their side
        pose[:, el] = p["elbow"] + 0.4 * p["arm"] * np.maximum(0.0, -np.sin(ph))
    pose[:, LIFT] = p["bob"] * np.maximum(0.0, np.sin(2 * phi))
    return pose


def _jump_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "period": rng.uniform(0.6, 0.9),  # seconds per hop
        "air": rng.uniform(0.45, 0.6),  # airborne fraction of the period
        "height": rng.uniform(0.10, 0.22),  # body heights
        "tuck": rng.uniform(0.6, 1.3),  # knee flexion at the apex
        "arms": rng.uniform(1.5, 2.6),  # arm raise at the apex
        "elbow": rng.uniform(0.1, 0.5),
        "phase": rng.uniform(0, 1),
    }


def _jump(t: np.ndarray, p: dict[str, float]) -> np.ndarray:
    u = np.mod(t / p["period"] + p["phase"], 1.0)
    air = u < p["air"]
    fly = np.where(air, np.sin(np.pi * u / p["air"]), 0.0)  # 0 → 1 → 0 over the flight
    crouch = np.where(air, 0.0, np.sin(np.pi * (u - p["air"]) / (1 - p["air"])))  # 0 → 1 → 0 on the ground
    pose = np.zeros((len(t), N_POSE))
    pose[:, TORSO] = 0.04 + 0.3 * crouch
    pose[:, [HIP_F, HIP_N]] = (0.5 * p["tuck"] * fly + 0.45 * crouch)[:, None] + np.array([-0.04, 0.04])
    pose[:, [KNEE_F, KNEE_N]] = (0.05 + p["tuck"] * fly + 0.9 * crouch)[:, None]
    # Arms swing up to their peak at the apex and down behind the body during the crouch.
    lo, hi = -0.4, p["arms"]
    arms = 0.5 * (hi + lo) + 0.5 * (hi - lo) * np.cos(2 * np.pi * (u - 0.5 * p["air"]))
    pose[:, [SH_F, SH_N]] = arms[:, None] + np.array([0.0, 0.1])
    pose[:, [EL_F, EL_N]] = p["elbow"]
    pose[:, LIFT] = p["height"] * fly
    return pose


def _bend_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "period": rng.uniform(1.5, 2.5),  # seconds per bow
        "pitch": rng.uniform(np.radians(40), np.radians(90)),
        "phase": rng.uniform(0.0, 0.6),
        "arm": rng.uniform(0.0, 0.3),
        "elbow": rng.uniform(0.05, 0.4),
    }


def _bend(t: np.ndarray, p: dict[str, float]) -> np.ndarray:
    pitch = p["pitch"] * (0.5 - 0.5 * np.cos(2 * np.pi * t / p["period"] + p["phase"]))
    pose = np.zeros((len(t), N_POSE))
    pose[:, TORSO] = pitch
    pose[:, [HIP_F, HIP_N]] = (-0.12 * pitch)[:, None] + np.array([-0.03, 0.03])  # hips go back
    pose[:, [KNEE_F, KNEE_N]] = (0.05 + 0.12 * pitch)[:, None]
    pose[:, [SH_F, SH_N]] = (p["arm"] + 0.35 * pitch)[:, None] + np.array([-0.05, 0.05])  # arms hang
    pose[:, [EL_F, EL_N]] = p["elbow"]
    return pose


def _wave_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "rate": rng.uniform(2.0, 3.0),  # Hz
        "swing": rng.uniform(0.35, 0.6),  # forearm swing either side of vertical, radians
        "upper": rng.uniform(2.2, 2.8),  # upper arm raised forward-up
        "phase": rng.uniform(0, 2 * np.pi),
    }


def _wave_arm(t: np.ndarray, p: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """(near shoulder angle, near elbow flexion): the forearm swings side to side above the shoulder."""
    forearm = np.pi + p["swing"] * np.sin(2 * np.pi * p["rate"] * t + p["phase"])
    return np.full(len(t), p["upper"]), forearm - p["upper"]


def _stand_params(rng: np.random.Generator) -> dict[str, object]:
    """A static pose borrowed from the other actions, so that one frame of standing says nothing."""
    kind = rng.choice(3, p=[0.5, 0.3, 0.2])
    if kind == 0:  # caught mid-stride, mostly near the widest step
        gait = _gait_params(rng, run=bool(rng.random() < 0.4))
        gait["phase"] = rng.choice([0.5, 1.5]) * np.pi + rng.uniform(-0.9, 0.9)
        pose = _gait(np.zeros(1), gait)[0] * np.r_[1.0, np.full(8, rng.uniform(0.8, 1.0)), 0.0]
    elif kind == 1:  # feet together
        pose = np.zeros(N_POSE)
        pose[[HIP_F, HIP_N]] = rng.uniform(-0.08, 0.08, 2)
        pose[[KNEE_F, KNEE_N]] = rng.uniform(0.0, 0.15, 2)
        pose[[SH_F, SH_N]] = rng.uniform(-0.1, 0.3, 2)
        pose[[EL_F, EL_N]] = rng.uniform(0.1, 0.6, 2)
        pose[TORSO] = rng.uniform(0.0, 0.1)
    else:  # a crouch as before a hop
        crouch = rng.uniform(0.3, 1.0)
        pose = _jump(np.zeros(1), {**_jump_params(rng), "phase": 0.0})[0]
        pose[TORSO] = 0.04 + 0.3 * crouch
        pose[[HIP_F, HIP_N]] = 0.45 * crouch + np.array([-0.04, 0.04])
        pose[[KNEE_F, KNEE_N]] = 0.05 + 0.9 * crouch
        pose[[SH_F, SH_N]] = rng.uniform(-0.4, 0.3) * crouch
        pose[LIFT] = 0.0
    if rng.random() < 0.25:  # leaning as in the early part of a bow
        pitch = rng.uniform(0.2, 1.1)
        pose[TORSO] = pitch
        pose[[SH_F, SH_N]] = rng.uniform(0.0, 0.3) + 0.35 * pitch
    arms = rng.random()
    if arms < 0.3:  # one frame of a wave
        sh, el = _wave_arm(np.zeros(1), _wave_params(rng))
        pose[SH_N], pose[EL_N] = sh[0], el[0]
    elif arms < 0.4:  # arms up as at the top of a hop
        pose[[SH_F, SH_N]] = rng.uniform(1.8, 2.8) + np.array([0.0, 0.1])
        pose[[EL_F, EL_N]] = rng.uniform(0.1, 0.5)
    return {"pose": pose, "sway_phase": rng.uniform(0, 2 * np.pi), "sway_rate": rng.uniform(0.2, 0.4)}


def _stand(t: np.ndarray, p: dict[str, object]) -> np.ndarray:
    pose = np.repeat(np.asarray(p["pose"])[None, :], len(t), axis=0)
    sway = np.sin(2 * np.pi * float(p["sway_rate"]) * t + float(p["sway_phase"]))
    pose[:, TORSO] += 0.015 * sway
    pose[:, [SH_F, SH_N]] += 0.02 * sway[:, None]
    return pose


def sample_motion(rng: np.random.Generator, action: int, wave: bool) -> dict[str, object]:
    """Random parameters of one segment of ``action`` (an AVA movement id), with a wave if ``wave``."""
    if action == STAND:
        params: dict[str, object] = _stand_params(rng)
    elif action in (WALK, RUN):
        params = _gait_params(rng, run=action == RUN)
    elif action == JUMP:
        params = _jump_params(rng)
    elif action == BEND:
        params = _bend_params(rng)
    else:
        raise ValueError(f"no motion for action id {action}")
    if wave:
        params["wave"] = _wave_params(rng)
    return params


def motion_pose(action: int, params: dict[str, object], t: np.ndarray) -> np.ndarray:
    """Poses (len(t), N_POSE) of a segment at times ``t`` (seconds from the segment's start)."""
    t = np.asarray(t, dtype=np.float64)
    generator = {STAND: _stand, WALK: _gait, RUN: _gait, JUMP: _jump, BEND: _bend}[action]
    pose = generator(t, params)
    if "wave" in params:
        pose[:, SH_N], pose[:, EL_N] = _wave_arm(t, params["wave"])
    return pose


# --------------------------------------------------------------------------------------------------
# Geometry


def _limb(origin: np.ndarray, angle: np.ndarray, flex: np.ndarray, l1: float, l2: float,
          sign: float) -> tuple[np.ndarray, np.ndarray]:
    mid = origin + l1 * np.stack([np.sin(angle), -np.cos(angle)], axis=-1)
    a2 = angle + sign * flex
    end = mid + l2 * np.stack([np.sin(a2), -np.cos(a2)], axis=-1)
    return mid, end


def forward_kinematics(pose: np.ndarray, facing: np.ndarray, height_px: float, root: np.ndarray) -> np.ndarray:
    """Joint positions (n, N_JOINTS, 2) in pixels (OpenCV convention, y down).

    pose: (n, N_POSE); facing: (n,) in [-1, 1]; height_px: pixels per body height; root: (n, 2) pixel
    x of the pelvis and pixel y of the ground under the figure. The lowest leg joint rests on the
    ground (its line's edge touches it) and ``pose[:, LIFT]`` raises the figure above it.
    """
    n = len(pose)
    tor = pose[:, TORSO]
    up = np.stack([np.sin(tor), np.cos(tor)], axis=-1)
    head_dir = np.stack([np.sin(0.7 * tor), np.cos(0.7 * tor)], axis=-1)
    joints = np.zeros((n, N_JOINTS, 2))
    joints[:, NECK] = TORSO_LEN * up
    joints[:, HEAD] = joints[:, NECK] + (NECK_LEN + HEAD_R) * head_dir
    joints[:, SHOULDER] = SHOULDER_AT * TORSO_LEN * up
    pelvis = joints[:, PELVIS]
    joints[:, KNEE_F_J], joints[:, FOOT_F] = _limb(pelvis, pose[:, HIP_F], pose[:, KNEE_F], THIGH, SHANK, -1)
    joints[:, KNEE_N_J], joints[:, FOOT_N] = _limb(pelvis, pose[:, HIP_N], pose[:, KNEE_N], THIGH, SHANK, -1)
    shoulder = joints[:, SHOULDER]
    joints[:, ELBOW_F], joints[:, HAND_F] = _limb(shoulder, pose[:, SH_F], pose[:, EL_F], UPPER_ARM, FOREARM, 1)
    joints[:, ELBOW_N], joints[:, HAND_N] = _limb(shoulder, pose[:, SH_N], pose[:, EL_N], UPPER_ARM, FOREARM, 1)
    limb_px = widths_px(height_px)[0]
    lowest = joints[:, [KNEE_F_J, FOOT_F, KNEE_N_J, FOOT_N], 1].min(axis=1)
    joints[:, :, 1] += (limb_px / 2 / height_px - lowest + pose[:, LIFT])[:, None]
    out = np.empty_like(joints)
    out[:, :, 0] = root[:, None, 0] + np.asarray(facing)[:, None] * joints[:, :, 0] * height_px
    out[:, :, 1] = root[:, None, 1] - joints[:, :, 1] * height_px
    return out


def joint_radii(height_px: float) -> np.ndarray:
    """Per-joint extent (N_JOINTS,) in pixels of the drawn strokes around each joint."""
    limb, torso, head = widths_px(height_px)
    radii = np.full(N_JOINTS, limb / 2 + _AA_PAD)
    radii[list(_JUNCTIONS)] = limb / 2 + _JOINT_PAD
    radii[[PELVIS, NECK]] = torso / 2 + _JOINT_PAD
    radii[HEAD] = head + _AA_PAD
    return radii


def figure_boxes(joints: np.ndarray, height_px: float) -> np.ndarray:
    """Tight pixel boxes (n, 4) xyxy of the drawn figures, continuous convention (not clipped)."""
    radii = joint_radii(height_px)
    lo = joints - radii[None, :, None]
    hi = joints + radii[None, :, None]
    # +0.5: OpenCV centres pixel i on i; in the continuous convention it spans [i, i + 1).
    return np.concatenate([lo.min(axis=1), hi.max(axis=1)], axis=1) + 0.5


_STROKES = ((SHOULDER, ELBOW_F), (ELBOW_F, HAND_F), (PELVIS, KNEE_F_J), (KNEE_F_J, FOOT_F), (PELVIS, NECK),
            (PELVIS, KNEE_N_J), (KNEE_N_J, FOOT_N), (SHOULDER, ELBOW_N), (ELBOW_N, HAND_N))


def visible_boxes(joints: np.ndarray, height_px: float, width: int, height: int) -> np.ndarray:
    """Tight boxes (n, 4) of the figures' pixels inside a ``width`` x ``height`` frame (continuous pixels).

    A figure partly outside the frame gets the box of its part inside, not its box clipped. NaN rows
    where no pixel centre is inside. Each stroke is covered by discs at most ~1.5 px apart (their union differs
    from the stroke by < 0.2 px) and each disc is intersected with the frame exactly.
    """
    limb, torso, head = widths_px(height_px)
    steps = int(np.ceil(max(THIGH, UPPER_ARM, TORSO_LEN) * height_px / 1.5)) + 1
    s = np.linspace(0.0, 1.0, steps)[None, None, :, None]
    a = joints[:, [i for i, _ in _STROKES]][:, :, None, :]
    b = joints[:, [j for _, j in _STROKES]][:, :, None, :]
    centers = (a + (b - a) * s).reshape(len(joints), -1, 2)  # (n, strokes * steps, 2)
    radii = np.full((len(_STROKES), steps), limb / 2 + _AA_PAD)
    radii[_STROKES.index((PELVIS, NECK))] = torso / 2 + _AA_PAD
    at_joint = joint_radii(height_px)  # the discs on the stroke ends are the joints'
    radii[:, 0] = np.maximum(radii[:, 0], at_joint[[i for i, _ in _STROKES]])
    radii[:, -1] = np.maximum(radii[:, -1], at_joint[[j for _, j in _STROKES]])
    centers = np.concatenate([centers, joints[:, HEAD:HEAD + 1]], axis=1) + 0.5
    radii = np.concatenate([radii.ravel(), [at_joint[HEAD]]])[None, :]
    frame = np.array([width, height], np.float64)
    # A pixel shows the figure when its centre is inside a disc, so discs are cut by the rectangle of
    # pixel centres [0.5, W - 0.5] x [0.5, H - 0.5]: gap runs from a disc's centre to its nearest point.
    gap = centers - np.clip(centers, 0.5, frame - 0.5)
    hits = (gap**2).sum(axis=-1) < radii**2
    # A disc cut by the strip of rows spans x within its half chord at the strip's row nearest its
    # centre; intersecting that with the columns gives the x range of disc ∩ frame (and vice versa).
    half = np.sqrt(np.clip(radii[..., None] ** 2 - gap[..., ::-1] ** 2, 0.0, None))
    lo = np.where(hits[..., None], np.clip(centers - half, 0.0, frame), np.inf).min(axis=1)
    hi = np.where(hits[..., None], np.clip(centers + half, 0.0, frame), -np.inf).max(axis=1)
    boxes = np.concatenate([lo, hi], axis=1)
    boxes[~hits.any(axis=1)] = np.nan
    return boxes


# --------------------------------------------------------------------------------------------------
# Drawing


def figure_colors(rng: np.random.Generator) -> dict[str, tuple[float, ...]]:
    """Saturated clothing colours (RGB 0-255): unlike the washed-out backgrounds, whatever the action."""
    def hsv(h: float, s: float, v: float) -> tuple[float, ...]:
        return tuple(255.0 * c for c in colorsys.hsv_to_rgb(h % 1.0, s, v))

    shirt_hue = rng.random()
    return {
        "shirt": hsv(shirt_hue, rng.uniform(0.65, 1.0), rng.uniform(0.75, 1.0)),
        "pants": hsv(shirt_hue + rng.uniform(0.25, 0.75), rng.uniform(0.6, 1.0), rng.uniform(0.55, 0.9)),
        "head": hsv(rng.uniform(0.03, 0.1), rng.uniform(0.45, 0.7), rng.uniform(0.7, 1.0)),
    }


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def draw_figure(image: np.ndarray, joints: np.ndarray, height_px: float,
                colors: dict[str, tuple[float, ...]] | None = None) -> None:
    """Draw one figure (joints (N_JOINTS, 2) pixels) onto ``image`` in place, anti-aliased.

    ``colors`` None draws every part in full white (255), which :func:`coverage_mask` uses.
    """
    limb, torso, head = widths_px(height_px)
    if colors is None:
        white = (255.0,) * (image.shape[2] if image.ndim == 3 else 1)
        shirt = pants = skin = far_shirt = far_pants = white
    else:
        shirt, pants, skin = colors["shirt"], colors["pants"], colors["head"]
        far_shirt = tuple(0.7 * c for c in shirt)  # the far side is in shadow: a depth cue
        far_pants = tuple(0.7 * c for c in pants)
    pts = _fixed(joints)
    aa = cv2.LINE_AA
    cv2.polylines(image, [pts[list(FAR_CHAINS[0])]], False, far_shirt, limb, aa, _SHIFT)
    cv2.polylines(image, [pts[list(FAR_CHAINS[1])]], False, far_pants, limb, aa, _SHIFT)
    cv2.line(image, tuple(pts[PELVIS].tolist()), tuple(pts[NECK].tolist()), shirt, torso, aa, _SHIFT)
    cv2.circle(image, tuple(pts[HEAD].tolist()), int(round(head * _ONE)), skin, -1, aa, _SHIFT)
    cv2.polylines(image, [pts[list(NEAR_CHAINS[0])]], False, pants, limb, aa, _SHIFT)
    cv2.polylines(image, [pts[list(NEAR_CHAINS[1])]], False, shirt, limb, aa, _SHIFT)


def canvas_pad(height: int) -> int:
    """Border (pixels) around a frame of ``height`` rows to draw on.

    cv2 clips a thick line by its centre line, so a stroke whose centre lies just outside the image
    loses pixels inside it; drawing on a canvas this much larger than the widest stroke avoids that.
    """
    return int(np.ceil(0.08 * height)) + 4


def coverage_mask(joints: np.ndarray, height_px: float, width: int, height: int) -> np.ndarray:
    """Coverage in [0, 1] (height, width) float32 of one figure rasterised alone."""
    pad = canvas_pad(height)
    canvas = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    draw_figure(canvas, joints + pad, height_px, None)
    return canvas[pad:-pad, pad:-pad].astype(np.float32) / 255.0


# --------------------------------------------------------------------------------------------------
# Background and camera


def _noise(rng: np.random.Generator, width: int, height: int, cell: float) -> np.ndarray:
    """Smooth noise (height, width) with features about ``cell`` pixels across, unit variance-ish."""
    gw, gh = int(np.ceil(width / cell)) + 3, int(np.ceil(height / cell)) + 3
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (int(gw * cell), int(gh * cell)), interpolation=cv2.INTER_CUBIC)
    return big[:height, :width]


def make_texture(rng: np.random.Generator, width: int, height: int, horizon: float) -> np.ndarray:
    """A procedural backdrop (height, width, 3) uint8 RGB: wall above pixel row ``horizon``, floor below.

    Multi-scale smoothed noise, panels and lines on the wall, floor boards receding to the horizon and
    a few blobs, all in low-saturation colours so that the saturated figures stay distinct.
    """
    def muted() -> np.ndarray:
        rgb = colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.04, 0.22), rng.uniform(0.35, 0.7))
        return np.array(rgb, np.float32) * 255

    scale = min(width, height)
    octaves = ((0.5, 0.3), (0.3, 0.1), (0.2, 0.035), (0.1, 0.012))  # (weight, feature size / frame size)
    lum = sum(a * _noise(rng, width, height, c * scale) for a, c in octaves)
    ys = np.arange(height, dtype=np.float32)[:, None]
    floor = (ys >= horizon).astype(np.float32)
    img = (1 - floor)[..., None] * muted() + floor[..., None] * muted()
    img = img * (1.0 + 0.25 * lum[..., None])

    detail = np.zeros((height, width, 3), np.float32)
    for _ in range(int(rng.integers(4, 9))):  # wall panels / windows
        x0 = rng.uniform(0, width)
        w = rng.uniform(0.05, 0.25) * scale
        y0 = rng.uniform(0, max(1.0, horizon - 0.1 * scale))
        y1 = min(horizon, y0 + rng.uniform(0.1, 0.4) * scale)
        cv2.rectangle(detail, (int(x0), int(y0)), (int(x0 + w), int(y1)), tuple(float(v) for v in
                      rng.uniform(-40, 40, 3)), -1 if rng.random() < 0.5 else 2, cv2.LINE_AA)
    shade = float(rng.choice([-1, 1]) * rng.uniform(20, 45))
    gap = rng.uniform(0.02, 0.05) * scale
    y = horizon + gap
    while y < height:  # boards: spacing grows towards the viewer
        cv2.line(detail, (0, int(y)), (width, int(y)), (shade,) * 3, 1, cv2.LINE_AA)
        gap *= 1.25
        y += gap
    for _ in range(int(rng.integers(6, 14))):  # receding lines on the floor
        x_far = rng.uniform(0, width)
        x_near = x_far + (x_far - width / 2) * rng.uniform(1.5, 3.0)
        cv2.line(detail, (int(x_far), int(horizon)), (int(x_near), height), (shade,) * 3, 1, cv2.LINE_AA)
    for _ in range(int(rng.integers(5, 12))):  # blobs: bushes, stains, posters
        center = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
        axes = (int(rng.uniform(0.02, 0.08) * scale) + 1, int(rng.uniform(0.02, 0.06) * scale) + 1)
        cv2.ellipse(detail, center, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(float(v) for v in rng.uniform(-45, 45, 3)), -1, cv2.LINE_AA)
    img += cv2.GaussianBlur(detail, (0, 0), 0.8)
    # Cap the saturation so that no part of the backdrop looks like clothing.
    gray = img.mean(axis=2, keepdims=True)
    img = gray + np.clip(img - gray, -30, 30)
    return np.clip(img, 0, 255).astype(np.uint8)


def camera_path(rng: np.random.Generator, n_frames: int, fps: float, width: int, height: int) -> np.ndarray:
    """Camera offsets (n_frames, 2) in pixels, starting at (0, 0): a slow, smooth random pan.

    Sums of three slow sinusoids horizontally (a few % of the width per second at most) and one
    smaller vertical drift.
    """
    t = np.arange(n_frames) / fps
    out = np.zeros((n_frames, 2))
    terms = [(0, 0.02 * width, 0.06 * width)] * 3 + [(1, 0.0, 0.012 * height)]
    for axis, lo, hi in terms:
        amp, freq, phase = rng.uniform(lo, hi), rng.uniform(0.01, 0.05), rng.uniform(0, 2 * np.pi)
        out[:, axis] += amp * (np.sin(2 * np.pi * freq * t + phase) - np.sin(phase))
    return out
