"""Zero-shot image classification with a frozen CLIP-family model: safe image loading, pixel transforms,
prompt templates, class embeddings and scores, batched image embedding, and result files."""
