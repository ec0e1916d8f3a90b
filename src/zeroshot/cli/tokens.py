"""`zeroshot export-tokenizer`: the model's tokenizer as a Hugging Face folder (for lm-eval and friends)."""

from __future__ import annotations

from pathlib import Path

from zeroshot.cli import app, options


@app.command("export-tokenizer")
def export_tokenizer_command(
    model: str = options.lm_model(),
    output_dir: Path = options.output_dir(),
) -> None:
    """Write the tokenizer of MODEL as a folder `AutoTokenizer.from_pretrained` loads (into --output-dir,
    default: zeroshot's cache), and print its path."""
    from zeroshot.models.tokenizer_export import export_tokenizer

    print(export_tokenizer(model, output_dir))
