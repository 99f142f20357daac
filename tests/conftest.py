"""Shared test helpers: the repository root and the label map shipped with the project."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ava_label_map_path() -> Path:
    return ROOT / "configs" / "ava" / "ava_action_list_v2.1_for_activitynet_2018.pbtxt"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module: on 2 shared cores, OpenMP threads wait on each other longer than they save."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
