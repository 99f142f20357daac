"""The small synthetic AVA-format datasets the tests share (see ``conftest.py``).

Three 5 s videos at 10 fps, 96 x 64 pixels, the last one the val split: two keyframes a video (902, 903), frame
folders, frame lists, ground truth and detector-like proposals. Tests take their numbers from ``SPEC``
(``SPEC.num_frames``, ``SPEC.fps``, ...) and the files, never from a particular seed's drawing.
"""

from data_prep.synthetic import SyntheticSpec

SPEC = SyntheticSpec(videos=3, seconds=5, fps=10, width=96, height=64, val_videos=1, seed=7)
TRAIN, VAL = SPEC.video_ids()

# The training and evaluation tests' dataset: three 6 s videos at 30 fps, 128 x 96, up to three people.
TRAINING_SPEC = SyntheticSpec(videos=3, seconds=6, width=128, height=96, seed=1, keyframe_margin_s=1, max_people=3)


def training_overrides(root) -> list[str]:
    """Config overrides that point ``synthetic/tiny`` at the dataset of ``TRAINING_SPEC`` in ``root``."""
    fields = ("videos", "seconds", "width", "height", "seed", "keyframe_margin_s", "max_people")
    return [f"data.root={root}", *(f"data.synthetic.{k}={getattr(TRAINING_SPEC, k)}" for k in fields)]
