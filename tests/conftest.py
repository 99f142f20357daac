"""Shared test helpers: the repository root, the label map shipped with the project, the small synthetic dataset."""

import shutil
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


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    """The root of the dataset of ``synthetic_data.SPEC``, generated once per session; tests must not change it."""
    from synthetic_data import SPEC

    from data_prep.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, SPEC)
    return root


@pytest.fixture(scope="session")
def training_dataset(tmp_path_factory) -> Path:
    """The root of the dataset of ``synthetic_data.TRAINING_SPEC`` (training and evaluation tests), read-only."""
    from synthetic_data import TRAINING_SPEC

    from data_prep.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("synthetic_training")
    generate_dataset(root, TRAINING_SPEC)
    return root


@pytest.fixture
def synthetic_root(synthetic_dataset, tmp_path) -> Path:
    """A copy of :func:`synthetic_dataset` at ``tmp_path / "ava"``, for a test to change."""
    out = tmp_path / "ava"
    shutil.copytree(synthetic_dataset, out)
    return out
