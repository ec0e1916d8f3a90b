"""Rebuild recycled models from a recycling checkpoint (and the mean initialisation alone) as HF folders.

Used when a `bench.recycle_it` run had to be stopped before its last step: the BPE is retrained (it is
deterministic for the same text and settings), the embeddings are taken from the checkpoint.

    python -m bench.recycle_from_checkpoint CHECKPOINT_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from zeroshot.train.recycle import init_embeddings, read_corpus, split_corpus, token_pieces, train_tokenizer
from zeroshot.train.soft_prompt import trainable_model


def main() -> None:
    checkpoint, out = Path(sys.argv[1]), Path(sys.argv[2])
    corpus = sys.argv[3] if len(sys.argv) > 3 else ".cache/recycle/it"
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
                rows = load_file(str(checkpoint / "state.safetensors"))["model.embed_in"]
            model.get_input_embeddings().weight.copy_(rows)
        for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(model.config, attr, getattr(tokenizer, attr))
            setattr(model.generation_config, attr, getattr(tokenizer, attr))
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
        print("wrote", out / name, flush=True)


if __name__ == "__main__":
    main()
