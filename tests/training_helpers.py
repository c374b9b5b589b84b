"""Shared pieces of the trainer tests: tiny models, a small synthetic training set, one thread.

One torch thread: on this 2-core box shared with other jobs, two OpenMP threads run the tiny models
~20x slower than one (spinning threads fight for the cores)."""

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE, CLIP_FRAMES = 64, 6


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    from aa2_core.check import write_tiny_models_dir

    path = tmp_path_factory.mktemp("models")
    write_tiny_models_dir(str(path))
    return str(path)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Two synthetic clips of 6 frames at 64x64, with depth and an object mask (aa2_core.training.synthetic)."""
    from aa2_core.training.synthetic import write_synthetic_set

    path = tmp_path_factory.mktemp("data")
    write_synthetic_set(str(path), clips=2, frames=CLIP_FRAMES, height=SIZE, width=SIZE, seed=0)
    return str(path)


def train_args(data_dir, models_dir, out, *extra):
    return ["train", "--data", data_dir, "--models", models_dir, "--out", str(out), "--cpu", "--no-tensorboard",
            "--checkpoint-every", "0", "--log-every", "1", "--workers", "0", *map(str, extra)]


def subprocess_env():
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=ROOT)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


PYTHON = sys.executable
