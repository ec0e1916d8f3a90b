"""Rebuild recycled models from a recycling checkpoint (and the mean initialisation alone) as HF folders.

Used when a `bench.recycle_it` run had to be stopped before its last step: the BPE is retrained (it is
deterministic for the same text and settings), the embeddings are taken from the checkpoint.

    python -m bench.recycle_from_checkpoint CHECKPOINT_DIR OUT_DIR [CORPUS]

CHECKPOINT_DIR is the training runtime's checkpoint folder (`<output-dir>/checkpoint`, holding
`tensors.safetensors` and `state.json`); its tensors are read through `Checkpoint`'s checks.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the stopped run's checkpoint folder")
    parser.add_argument("out", type=Path, help="where the init/ and checkpoint/ model folders go")
    parser.add_argument("corpus", nargs="?", default=".cache/recycle/it", help="the corpus folder")
    args = parser.parse_args()
    checkpoint, out, corpus = args.checkpoint, args.out, args.corpus

    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zeroshot.train.recycle import (
        init_embeddings,
        read_corpus,
        split_corpus,
        token_pieces,
        train_tokenizer,
    )
    from zeroshot.train.soft_prompt import trainable_model

    torch.set_num_threads(1)
    base = trainable_model(None)
    train, _ = split_corpus(read_corpus(corpus))
    base_tok = AutoTokenizer.from_pretrained(base)
    tokenizer = train_tokenizer(train, AutoTokenizer.from_pretrained(base).vocab_size, base_tok)
    for name in ("init", "checkpoint"):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        weight = model.get_input_embeddings().weight.detach().clone()
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
        with torch.no_grad():
            if name == "init":
                rows = init_embeddings(weight, token_pieces(tokenizer, base_tok), "mean")
            else:
                # the runtime's format: group "model", the trained input embeddings as "embed_in"
                saved = load_file(str(checkpoint / "tensors.safetensors"))
                rows = saved["model/embed_in"]
                if rows.shape != model.get_input_embeddings().weight.shape or not rows.isfinite().all():
                    raise SystemExit(f"{checkpoint}: model/embed_in is {tuple(rows.shape)} or not finite; "
                                     "not this run's checkpoint")
            model.get_input_embeddings().weight.copy_(rows)
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(model.config, attr, getattr(tokenizer, attr))
            setattr(model.generation_config, attr, getattr(tokenizer, attr))
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        print("wrote", out / name, flush=True)


if __name__ == "__main__":
    main()
