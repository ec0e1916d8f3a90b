"""The training runtime (`zeroshot.train.checkpoint`): a run saved and restored continues bit for bit, a
kill between the swap's two renames is found and resumed, every breach of the resume rule is one
`UserError`, and the loss plot is a PNG."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroshot.errors import UserError
from zeroshot.train.checkpoint import Checkpoint, plot_losses, run_fingerprint

STEPS, CUT = 8, 3


def _fresh(seed: int):
    """A model with dropout (torch's random state matters), AdamW over two parameter groups, a warm-up
    + decay LambdaLR (the learning rate differs at every step)."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.3), torch.nn.Linear(8, 1))
    groups = [{"params": model[0].parameters(), "weight_decay": 0.01},
              {"params": model[2].parameters(), "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=0.05)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 3) / (1 + 0.1 * s))
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler, step: int) -> float:
    # Every global random source a trainer might draw from: torch (dropout), Python and NumPy.
    x = torch.from_numpy(np.random.default_rng(step).normal(size=(16, 4)).astype(np.float32))
    x = x + float(np.random.rand()) + random.random()
    model.train()
    loss = (model(x) ** 2).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def test_save_and_restore_continue_bit_for_bit(tmp_path):
    _seed_all(0)
    model, optimizer, scheduler = _fresh(0)
    whole = [_step(model, optimizer, scheduler, s) for s in range(STEPS)]
    expected = {k: v.clone() for k, v in model.state_dict().items()}

    _seed_all(0)
    model, optimizer, scheduler = _fresh(0)
    first = [_step(model, optimizer, scheduler, s) for s in range(CUT)]
    checkpoint = Checkpoint(tmp_path, "run-a")
    checkpoint.save({"step": CUT, "losses": first}, {"weights": dict(model.named_parameters())},
                    optimizer, scheduler)

    # Another process: every random state elsewhere, another initialisation, a fresh optimizer whose
    # parameter groups hold the rate of step 0.
    _seed_all(99)
    model, optimizer, scheduler = _fresh(1)
    resumed = Checkpoint(tmp_path, "run-a")
    state = resumed.check_start(resume=True)
    assert state == {"step": CUT, "losses": first}
    saved = resumed.restore(optimizer, scheduler)
    resumed.load_into(dict(model.named_parameters()), saved["weights"])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * min(1.0, (CUT + 1) / 3) / (1 + 0.1 * CUT))
    rest = [_step(model, optimizer, scheduler, s) for s in range(state["step"], STEPS)]

    assert first + rest == whole  # exact floats, not approximately
    for name, value in model.state_dict().items():
        assert torch.equal(value, expected[name]), name
    resumed.remove()
    assert not any(tmp_path.iterdir())


def test_a_kill_between_the_two_renames_is_found_and_resumed(tmp_path, monkeypatch):
    model, optimizer, scheduler = _fresh(0)
    checkpoint = Checkpoint(tmp_path, "run-a")
    checkpoint.save({"step": 1}, {"weights": dict(model.named_parameters())}, optimizer, scheduler)
    _step(model, optimizer, scheduler, 1)

    real_rename = Path.rename
    calls = {"n": 0}

    def killed_at_the_second_rename(self, target):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # after `checkpoint` -> `checkpoint.old`, before `.new` -> `checkpoint`
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save({"step": 2}, {"weights": dict(model.named_parameters())}, optimizer, scheduler)
    monkeypatch.setattr(Path, "rename", real_rename)
    assert not (tmp_path / "checkpoint").exists() and (tmp_path / "checkpoint.old" / "state.json").is_file()

    again = Checkpoint(tmp_path, "run-a")
    assert again.find() == tmp_path / "checkpoint.old"
    with pytest.raises(UserError, match="unfinished run"):
        again.check_start(resume=False)
    assert again.check_start(resume=True) == {"step": 1}
    fresh_model, fresh_optimizer, fresh_scheduler = _fresh(1)
    saved = again.restore(fresh_optimizer, fresh_scheduler)
    again.load_into(dict(fresh_model.named_parameters()), saved["weights"])
    assert fresh_scheduler.last_epoch == 0
    again.save({"step": 2}, {"weights": dict(fresh_model.named_parameters())}, fresh_optimizer,
               fresh_scheduler)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # .old and .new cleared


def _saved_run(folder: Path, fingerprint: str = "run-a") -> Checkpoint:
    checkpoint = Checkpoint(folder, fingerprint, what="data or settings", product="model")
    checkpoint.save({"step": 1})
    return checkpoint


def test_an_unfinished_run_needs_resume(tmp_path):
    _saved_run(tmp_path)
    with pytest.raises(UserError, match=r"holds an unfinished run: pass --resume .* another --output-dir"):
        Checkpoint(tmp_path, "run-a").check_start(resume=False)


def test_resume_with_nothing_saved(tmp_path):
    with pytest.raises(UserError, match="nothing to resume"):
        Checkpoint(tmp_path, "run-a").check_start(resume=True)


def test_resume_of_a_finished_run(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    checkpoint = Checkpoint(tmp_path, "run-a", product="model")
    with pytest.raises(UserError, match="has already finished"):
        checkpoint.check_start(resume=True, finished="config.json")
    with pytest.raises(UserError, match="already holds a model: choose another --output-dir or pass --ov"):
        checkpoint.check_start(resume=False, finished="config.json", overwrite=False)
    with pytest.raises(UserError, match=r"already holds a model: choose another --output-dir$"):
        checkpoint.check_start(resume=False, finished="config.json", overwrite=False, overwrite_option=None)
    assert checkpoint.check_start(resume=False, finished="config.json", overwrite=True) is None


def test_resume_of_another_run(tmp_path):
    _saved_run(tmp_path, "run-a")
    with pytest.raises(UserError, match=r"from another run \(another data or settings\)"):
        Checkpoint(tmp_path, "run-b").check_start(resume=True)
    assert (tmp_path / "checkpoint" / "state.json").is_file()  # the other run's checkpoint is left alone


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "cannot be read"),
    ("[1, 2]", "not one this version writes"),
    (json.dumps({"run_key": "run-a", "step": 2}), "not one this version writes"),  # an older version's
])
def test_an_unreadable_or_foreign_state_json(tmp_path, content, message):
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text(content)
    with pytest.raises(UserError, match=f"{message}.*remove it to start over"):
        Checkpoint(tmp_path, "run-a").check_start(resume=True)


def test_restore_refuses_what_does_not_fit(tmp_path):
    model, optimizer, scheduler = _fresh(0)
    checkpoint = Checkpoint(tmp_path, "run-a")
    checkpoint.save({"step": 0}, {"weights": {"w": torch.zeros(3)}})
    with pytest.raises(UserError, match="lacks the optimizer state"):
        checkpoint.restore(optimizer)
    saved = checkpoint.restore()
    with pytest.raises(UserError, match="has shape"):
        checkpoint.load_into({"w": torch.zeros(4)}, saved["weights"])
    with pytest.raises(UserError, match="v is missing"):
        checkpoint.load_into({"v": torch.zeros(3)}, saved["weights"])


def test_the_fingerprint_is_stable_and_sensitive():
    assert run_fingerprint({"lr": 0.1, "seed": 0}, "data") == run_fingerprint({"seed": 0, "lr": 0.1}, "data")
    assert run_fingerprint({"lr": 0.1}, "data") != run_fingerprint({"lr": 0.2}, "data")
    assert len(run_fingerprint("x")) == 16


def test_plot_losses_writes_a_png(tmp_path):
    curves = {"train": ([1, 2, 3], [2.0, 1.5, 1.2]), "dev": ([1, 2, 3], [2.1, 1.7, 1.6])}
    path = plot_losses(tmp_path / "loss.png", curves, "epoch", "loss", title="a run", kept_at=3,
                       second=("top-1 (%)", [1, 2, 3], [40, 60, 70]))
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]  # written through a temporary file
