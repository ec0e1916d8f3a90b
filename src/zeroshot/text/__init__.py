"""Text tasks with a frozen causal LM: GPT-3-style prompts, likelihood scoring (normalisation,
calibration, shared-prefix reuse), classification and multiple choice, chat templates, completions with
log-probabilities, embeddings; and attaching a trained soft prompt for inference."""
