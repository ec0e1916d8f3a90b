"""Bias and robustness audits of frozen models; each writes JSON with every number and an HTML report.

- `gender`: occupation-gender bias of a language model (GPT-3 §6.2.1);
- `sentiment`: sentiment of a language model's continuations per group (GPT-3 §6.2.2);
- `typographic`: text written on images against CLIP's zero-shot predictions (Goh et al. 2021);
- `denigration`: denigration and crime-related classes added to a CLIP label set (CLIP §7.1).
- `neurons`: what units of a CLIP image tower respond to (Goh et al. 2021): dataset examples, feature
  visualisations, words, the multimodal test (`zeroshot neurons`).

`report` writes the files; `stats` holds the intervals and the word log-odds.
"""
