"""llama.cpp's thread defaults follow the cores other processes leave idle."""

from __future__ import annotations

import os

import pytest

from zeroshot.models import lm_llamacpp


@pytest.mark.parametrize("cores, load, expected", [
    (2, 0.1, (1, 2)),    # quiet: llama-cpp-python's own defaults (half the cores, all of them)
    (2, 10.0, (1, 1)),   # busy: more threads would only wait for each other at every barrier
    (16, 4.2, (8, 12)),
    (1, 0.0, (1, 1)),
])
def test_default_threads_leave_busy_cores_alone(monkeypatch, cores, load, expected):
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    assert lm_llamacpp.default_threads() == expected
