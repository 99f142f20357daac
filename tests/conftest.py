"""Shared test helpers: the repository root and the label map shipped with the project."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ava_label_map_path() -> Path:
    return ROOT / "configs" / "ava" / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"
