"""The small synthetic AVA-format dataset the preparation and detection tests share (see ``conftest.py``).

Three 5 s videos at 10 fps, 96 x 64 pixels, the last one the val split: two keyframes a video (902, 903), frame
folders, frame lists, ground truth and detector-like proposals. Tests take their numbers from ``SPEC``
(``SPEC.num_frames``, ``SPEC.fps``, ...) and the files, never from a particular seed's drawing.
"""

from data_prep.synthetic import SyntheticSpec

SPEC = SyntheticSpec(videos=3, seconds=5, fps=10, width=96, height=64, val_videos=1, seed=7)
TRAIN, VAL = SPEC.video_ids()
