"""Triton runs through its CPU interpreter where no GPU exists; the variable must be set
before anything imports triton."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from _support import load_golden  # noqa: E402


@pytest.fixture(scope="session")
def golden():
    return load_golden()
