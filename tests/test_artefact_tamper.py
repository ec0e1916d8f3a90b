"""Issue 33: every trained artefact is validated once on load, and a damaged or tampered one gets one line.

The tamper matrix: for a `train-clip` checkpoint (resume), a finished `train-clip` model folder
(`load_clip`), a soft-prompt folder, a recycling checkpoint's tensors (the same runtime, `load_into`), a
captioner folder and a few-shot file, each damage below must raise `UserError` with a one-line message
(exit 2 on the command line), never a traceback, a NaN model or a silently accepted file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zeroshot.errors import UserError

TINY = dict(image_width=32, image_layers=1, image_heads=2, batch_size=8, lr=3e-3, warmup_steps=1,
            dev_fraction=0.2, eval_every=2, checkpoint_every=2, patience=50, epochs=100, max_steps=4)


# ------------------------------------------------------------------------------------------ helpers

def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def _edit_tensors(name: str, change: Callable[[dict[str, torch.Tensor]], None]):
    def apply(folder: Path) -> None:
        tensors = _tensors(folder / name)
        change(tensors)
        _save(folder / name, tensors)
    return apply


def _edit_json(name: str, change: Callable[[dict], None]):
    def apply(folder: Path) -> None:
        record = json.loads((folder / name).read_text())
        change(record)
        (folder / name).write_text(json.dumps(record))
    return apply


def _truncate(name: str, keep: float = 0.5):
    def apply(folder: Path) -> None:
        data = (folder / name).read_bytes()
        (folder / name).write_bytes(data[: int(len(data) * keep)])
    return apply


def _replace(name: str, data: bytes):
    def apply(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return apply


def _first_key(tensors: dict, prefix: str = "", floating: bool = True) -> str:
    return next(k for k in sorted(tensors) if k.startswith(prefix) and (tensors[k].is_floating_point()
                                                                         or not floating)
                and tensors[k].dim() >= 1)


def _nan(prefix: str = "", value: float = float("nan")):
    def change(t: dict) -> None:
        key = _first_key(t, prefix)
        t[key] = t[key].clone()
        t[key].view(-1)[0] = value
    return change


def _reshape(prefix: str = ""):
    def change(t: dict) -> None:
        key = _first_key(t, prefix)
        t[key] = torch.zeros(t[key].numel() + 1, dtype=t[key].dtype)
    return change


def _retype(prefix: str = "", dtype: torch.dtype = torch.int32):
    def change(t: dict) -> None:
        key = _first_key(t, prefix)
        t[key] = t[key].to(dtype)
    return change


def _drop(prefix: str = ""):
    def change(t: dict) -> None:
        del t[_first_key(t, prefix)]
    return change


def _extra(name: str):
    def change(t: dict) -> None:
        t[name] = torch.zeros(3)
    return change


NOT_A_ZIP = b"PK\x03\x04 this is not a zip archive, nor a safetensors file" * 3


def _assert_one_line(exc: pytest.ExceptionInfo) -> None:
    message = str(exc.value)
    assert message and "\n" not in message and "Traceback" not in message, message


# ------------------------------------------------------------------------------ train-clip checkpoint

@pytest.fixture(scope="module")
def clip_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "green", "blue")):
        (root / name).mkdir()
        for k in range(5):
            pixels = np.zeros((28, 28, 3), np.uint8)
            pixels[..., c] = 150 + rng.integers(0, 100)
            Image.fromarray(pixels).save(root / name / f"{k}.png")
    return root


@pytest.fixture(scope="module")
def text_tower(tmp_path_factory) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    from zeroshot.models.sentence import bundled_minilm_dir

    folder = tmp_path_factory.mktemp("bert")
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_minilm_dir()))
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _clip_config(text_tower: Path):
    from zeroshot.train.clip import TrainConfig

    return TrainConfig(text_model=str(text_tower), **TINY)


@pytest.fixture(scope="module")
def killed_run(clip_data, text_tower, tmp_path_factory) -> Path:
    """A run killed after step 2, its checkpoint on disk (with weights, best, optimizer and rng)."""
    from zeroshot.train import clip as train_module
    from zeroshot.train.clip import train_clip

    out = tmp_path_factory.mktemp("killed") / "run"
    real = train_module._Trainer.batch_loss
    calls = {"n": 0}

    def dies_at_step_three(self, indices, draws, grad):
        if grad:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("killed")
        return real(self, indices, draws, grad)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(train_module._Trainer, "batch_loss", dies_at_step_three)
        with pytest.raises(RuntimeError):
            train_clip(clip_data, out, _clip_config(text_tower), progress=False)
    assert (out / "checkpoint" / "tensors.safetensors").is_file()
    return out


@pytest.fixture(scope="module")
def finished_model(clip_data, text_tower, tmp_path_factory) -> Path:
    from zeroshot.train.clip import train_clip

    out = tmp_path_factory.mktemp("finished") / "model"
    config = _clip_config(text_tower)
    config.max_steps = 2
    train_clip(clip_data, out, config, progress=False)
    return out


CKPT = "checkpoint/tensors.safetensors"
STATE = "checkpoint/state.json"

CHECKPOINT_TAMPERS = {
    "truncated tensors": _truncate(CKPT),
    "empty tensors file": _replace(CKPT, b""),
    "not a safetensors file (a zip header)": _replace(CKPT, NOT_A_ZIP),
    "NaN in a weight": _edit_tensors(CKPT, _nan("weights/")),
    "Inf in the kept best weights": _edit_tensors(CKPT, _nan("best/", float("inf"))),
    "NaN in the optimizer's moments": _edit_tensors(CKPT, _nan("optimizer/")),
    "a weight of the wrong shape": _edit_tensors(CKPT, _reshape("weights/")),
    "a weight of the wrong dtype (int32)": _edit_tensors(CKPT, _retype("weights/")),
    "a best weight of the wrong shape": _edit_tensors(CKPT, _reshape("best/")),
    "an optimizer moment of the wrong shape": _edit_tensors(CKPT, _reshape("optimizer/")),
    "a missing weight": _edit_tensors(CKPT, _drop("weights/")),
    "an extra weight": _edit_tensors(CKPT, _extra("weights/not.a.parameter")),
    "a damaged random state": _edit_tensors(CKPT, lambda t: t.update({"rng/torch": torch.zeros(7)})),
    "another run's fingerprint": _edit_json(STATE, lambda m: m.update(fingerprint="0123456789abcdef")),
    "a step that is not a number": _edit_json(STATE, lambda m: m["state"].update(step="three")),
    "a negative step": _edit_json(STATE, lambda m: m["state"].update(step=-5)),
    "NaN learning rate": _edit_json(STATE, lambda m: m["optimizer"]["param_groups"][0].update(
        lr=float("nan"))),
    "truncated state.json": _truncate(STATE),
    "empty state.json": _replace(STATE, b""),
    "optimizer state missing": _edit_json(STATE, lambda m: m.pop("optimizer")),
}


@pytest.mark.parametrize("case", list(CHECKPOINT_TAMPERS))
def test_a_tampered_train_clip_checkpoint_is_refused_on_resume(case, killed_run, clip_data, text_tower,
                                                               tmp_path):
    from zeroshot.train.clip import train_clip

    out = tmp_path / "run"
    shutil.copytree(killed_run, out)
    CHECKPOINT_TAMPERS[case](out)
    with pytest.raises(UserError) as caught:
        train_clip(clip_data, out, _clip_config(text_tower), resume=True, progress=False)
    _assert_one_line(caught)
    assert not (out / "model.safetensors").exists()  # nothing trained on the damaged state


def test_an_untampered_checkpoint_still_resumes(killed_run, clip_data, text_tower, tmp_path):
    from zeroshot.train.clip import train_clip

    out = tmp_path / "run"
    shutil.copytree(killed_run, out)
    result = train_clip(clip_data, out, _clip_config(text_tower), resume=True, progress=False)
    assert result.steps == 4


MODEL_TAMPERS = {
    "NaN in a weight": _edit_tensors("model.safetensors", _nan("vision_model.")),
    "Inf in the projection": _edit_tensors("model.safetensors", _nan("visual_projection.", float("inf"))),
    "truncated weights": _truncate("model.safetensors"),
    "empty weights file": _replace("model.safetensors", b""),
    "not a safetensors file (a zip header)": _replace("model.safetensors", NOT_A_ZIP),
    "a missing tensor": _edit_tensors("model.safetensors", _drop("vision_model.")),
    "an extra tensor": _edit_tensors("model.safetensors", _extra("vision_model.not_a_weight")),
    "a tensor of the wrong shape": _edit_tensors("model.safetensors", _reshape("vision_model.")),
    "config whose sizes do not fit the weights": _edit_json(
        "config.json", lambda c: c["vision_config"].update(hidden_size=64)),
    "config with a bad value": _edit_json("config.json", lambda c: c["vision_config"].update(patch_size=0)),
    "empty config.json": _replace("config.json", b""),
}


@pytest.mark.parametrize("case", list(MODEL_TAMPERS))
def test_a_tampered_train_clip_model_is_refused_by_load_clip(case, finished_model, tmp_path):
    from zeroshot.models.clip import load_clip

    folder = tmp_path / "model"
    shutil.copytree(finished_model, folder)
    MODEL_TAMPERS[case](folder)
    with pytest.raises(UserError) as caught:
        load_clip(folder, device="cpu", dtype="fp32")
    _assert_one_line(caught)


def test_a_nan_model_exits_2_on_the_command_line(finished_model, tmp_path, capsys):
    from zeroshot.cli import main
    from zeroshot.testing import save_random_images

    folder = tmp_path / "model"
    shutil.copytree(finished_model, folder)
    MODEL_TAMPERS["NaN in a weight"](folder)
    images = save_random_images(tmp_path / "images", 1)
    code = main(["classify-images", str(images[0]), "--labels", "red,blue", "--clip-model", str(folder),
                 "--device", "cpu", "--no-cache", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "NaN" in err and "Traceback" not in err, err


# ------------------------------------------------------------------------------------- soft prompts

@pytest.fixture(scope="module")
def soft_prompt_folder(tmp_path_factory) -> tuple[Path, Path]:
    pytest.importorskip("peft")
    from zeroshot.testing import save_random_lm
    from zeroshot.train.soft_prompt import SoftPromptConfig, train_soft_prompt

    root = tmp_path_factory.mktemp("soft")
    lm_dir = save_random_lm(root / "lm", arch="llama")
    texts = ["good film", "bad film", "great plot", "awful plot"] * 2
    labels = ["positive", "negative"] * 4
    train_soft_prompt(str(lm_dir), texts, labels, root / "prompt",
                      config=SoftPromptConfig(n_virtual_tokens=2, epochs=1, dev_fraction=0.0, init="random"),
                      progress=False)
    return root / "prompt", lm_dir


SOFT = "adapter_model.safetensors"
META = "soft_prompt.json"
SOFT_PROMPT_TAMPERS = {
    "NaN in the prompt": _edit_tensors(SOFT, _nan()),
    "Inf in the prompt": _edit_tensors(SOFT, _nan("", float("inf"))),
    "prompt of the wrong shape (1-D)": _edit_tensors(SOFT, lambda t: t.update(
        prompt_embeddings=t["prompt_embeddings"].reshape(-1))),
    "prompt narrower than the model": _edit_tensors(SOFT, lambda t: t.update(
        prompt_embeddings=t["prompt_embeddings"][:, :3].contiguous())),
    "prompt of the wrong dtype (int32)": _edit_tensors(SOFT, _retype()),
    "prompt tensor missing": _edit_tensors(SOFT, lambda t: t.update(other=t.pop("prompt_embeddings"))),
    "an extra tensor": _edit_tensors(SOFT, _extra("extra")),
    "truncated weights": _truncate(SOFT),
    "empty weights file": _replace(SOFT, b""),
    "not a safetensors file (a zip header)": _replace(SOFT, NOT_A_ZIP),
    "another base model's fingerprint": _edit_json(META, lambda m: m.update(base_fingerprint="0" * 16)),
    "a template without {text}": _edit_json(META, lambda m: m["template"].update(query="no slot")),
    "a template that is not an object": _edit_json(META, lambda m: m.update(template="x")),
    "a template with an unknown field": _edit_json(META, lambda m: m["template"].update(evil=1)),
    "labels that are not strings": _edit_json(META, lambda m: m.update(labels=[1, 2])),
    "n_virtual_tokens that disagrees with the weights": _edit_json(
        META, lambda m: m.update(n_virtual_tokens=9)),
    "empty soft_prompt.json": _replace(META, b""),
}


@pytest.mark.parametrize("case", list(SOFT_PROMPT_TAMPERS))
def test_a_tampered_soft_prompt_is_refused(case, soft_prompt_folder, tmp_path):
    from zeroshot.models.lm_transformers import TransformersLM
    from zeroshot.text.soft_prompt import attach_soft_prompt

    prompt, lm_dir = soft_prompt_folder
    folder = tmp_path / "prompt"
    shutil.copytree(prompt, folder)
    SOFT_PROMPT_TAMPERS[case](folder)
    with pytest.raises(UserError) as caught:
        attach_soft_prompt(TransformersLM.load(str(lm_dir), "folder", device="cpu"), folder)
    _assert_one_line(caught)


def test_an_untampered_soft_prompt_still_attaches(soft_prompt_folder):
    from zeroshot.models.lm_transformers import TransformersLM
    from zeroshot.text.soft_prompt import attach_soft_prompt

    prompt, lm_dir = soft_prompt_folder
    lm = attach_soft_prompt(TransformersLM.load(str(lm_dir), "folder", device="cpu"), prompt)
    scores = lm.continuation_logprobs(lm.tokenize("good film"), [lm.tokenize(" positive")])
    assert np.isfinite(scores[0]).all()


# ----------------------------------------------------- recycled embeddings and other trainers' state

@pytest.mark.parametrize("case", ["nan", "inf", "shape", "dtype", "missing", "extra"])
def test_the_runtime_refuses_bad_saved_tensors_for_every_trainer(case, tmp_path):
    """`Checkpoint.load_into` is what recycling (`model` group: the new embeddings), soft prompts,
    the captioner and train-clip all read their tensors back through."""
    from zeroshot.train.checkpoint import Checkpoint

    live = {"model.embed_in": torch.zeros(6, 4), "model.embed_out": torch.zeros(6, 4)}
    saved = {name: torch.ones_like(value) for name, value in live.items()}
    if case == "nan":
        saved["model.embed_in"][2, 1] = float("nan")
    elif case == "inf":
        saved["model.embed_out"][0, 0] = float("-inf")
    elif case == "shape":
        saved["model.embed_in"] = torch.ones(7, 4)
    elif case == "dtype":
        saved["model.embed_in"] = torch.ones(6, 4, dtype=torch.int64)
    elif case == "missing":
        del saved["model.embed_out"]
    else:
        saved["model.extra"] = torch.ones(1)
    with pytest.raises(UserError) as caught:
        Checkpoint(tmp_path, None).load_into(live, saved)
    _assert_one_line(caught)
    assert not live["model.embed_in"].any()  # refused before anything was copied


# --------------------------------------------------------------------------------------- captioner

@pytest.fixture(scope="module")
def captioner_folder(tmp_path_factory) -> tuple[Path, object]:
    from zeroshot.caption.captioner import CaptionerConfig, PrefixCaptioner
    from zeroshot.models.lm_transformers import TransformersLM
    from zeroshot.testing import save_random_lm

    root = tmp_path_factory.mktemp("captioner")
    lm = TransformersLM.load(str(save_random_lm(root / "lm", arch="llama")), "folder", device="cpu")
    captioner = PrefixCaptioner(CaptionerConfig(embedding_dim=8, prefix_length=2), lm)
    captioner.save(root / "cap")
    return root / "cap", lm


CAP = "mapper.safetensors"
CAPTIONER_TAMPERS = {
    "NaN in the mapper": _edit_tensors(CAP, _nan()),
    "a mapper weight of the wrong shape": _edit_tensors(CAP, _reshape()),
    "a mapper weight of the wrong dtype": _edit_tensors(CAP, _retype("", torch.float64)),
    "a missing mapper weight": _edit_tensors(CAP, _drop()),
    "an extra mapper weight": _edit_tensors(CAP, _extra("extra")),
    "truncated weights": _truncate(CAP),
    "empty weights file": _replace(CAP, b""),
    "not a safetensors file": _replace(CAP, NOT_A_ZIP),
    "another LM's fingerprint": _edit_json("captioner.json", lambda r: r["lm"].update(fingerprint="0" * 16)),
    "config with a bad value": _edit_json("captioner.json", lambda r: r["config"].update(prefix_length=-1)),
    "config with a huge value": _edit_json("captioner.json",
                                           lambda r: r["config"].update(prefix_length=10 ** 9)),
    "config with an unknown key": _edit_json("captioner.json", lambda r: r["config"].update(evil=1)),
    "lm record missing": _edit_json("captioner.json", lambda r: r.pop("lm")),
    "empty captioner.json": _replace("captioner.json", b""),
}


@pytest.mark.parametrize("case", list(CAPTIONER_TAMPERS))
def test_a_tampered_captioner_is_refused(case, captioner_folder, tmp_path):
    from zeroshot.caption.captioner import load_captioner

    saved, lm = captioner_folder
    folder = tmp_path / "cap"
    shutil.copytree(saved, folder)
    CAPTIONER_TAMPERS[case](folder)
    with pytest.raises(UserError) as caught:
        load_captioner(folder, lm=lm)
    _assert_one_line(caught)


# ------------------------------------------------------------------------------------------ few-shot

@pytest.mark.parametrize("field,value", [("kernel", "sigmoid"), ("early_stopping", "never"),
                                         ("beta", -1.0), ("learning_rate", 0.0)])
def test_a_fewshot_file_with_a_bad_kernel_adapter_parameter_is_refused_on_load(field, value, tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from zeroshot.fewshot import KernelAdapter, ZeroShotHead
    from zeroshot.fewshot.persistence import load_estimator, save_estimator

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)), np.repeat([0, 1, 2], 4)
    adapter = KernelAdapter(prior=ZeroShotHead(rng.normal(size=(3, 5))), max_steps=3, early_stopping=None)
    path = save_estimator(adapter.fit(X, y), tmp_path / "a.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    header = json.loads(metadata["estimator"])
    header["params"][field] = value
    save_file(load_file(str(path)), str(path), metadata={**metadata, "estimator": json.dumps(header)})
    with pytest.raises(UserError, match=field) as caught:
        load_estimator(path)
    _assert_one_line(caught)


def test_a_fewshot_file_with_a_bad_tip_adapter_beta_is_refused_on_load(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    from zeroshot.fewshot import TipAdapter, ZeroShotHead
    from zeroshot.fewshot.persistence import load_estimator, save_estimator

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 5)), np.repeat([0, 1, 2], 4)
    path = save_estimator(TipAdapter(prior=ZeroShotHead(rng.normal(size=(3, 5)))).fit(X, y),
                          tmp_path / "t.safetensors")
    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
    header = json.loads(metadata["estimator"])
    header["params"]["beta"] = -3.0
    save_file(load_file(str(path)), str(path), metadata={**metadata, "estimator": json.dumps(header)})
    with pytest.raises(UserError, match="beta"):
        load_estimator(path)
