"""Fixtures of the unit tests (environment set-up is in the root conftest.py)."""
import pytest
import torch

import labkit as lk


@pytest.fixture
def tmp_env(tmp_path, monkeypatch):
    """Fresh cache and reports folders for one test."""
    monkeypatch.setenv("LABKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LABKIT_REPORTS", str(tmp_path / "reports"))
    return tmp_path


@pytest.fixture
def tiny_data():
    """A small synthetic-mnist Data on the CPU (train 3,500 / val 500 / test 1,000)."""
    return lk.data.load("synthetic-mnist")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
