"""Training wing: every trainer here is about its model and its loss; its files are one runtime's.

Trainers: `clip` (CLIP/LiT on image-text pairs, data in `pairs`), `soft_prompt` (soft prompt tuning of a
frozen LM), `recycle` (new-language embeddings for a frozen LM), and the prefix captioner's `fit` in
`zeroshot.caption`. Losses that are pure functions of tensors are in `losses`.

The runtime is `checkpoint`: one checkpoint format, one resume rule, one swap into place, one loss plot.
A trainer uses it in five moves (a later one, LoRA or fine-tuning, the same way):

    checkpoint = Checkpoint(out, run_fingerprint(settings, base_model_identity, data_digest),
                            what="data or settings", product="model")
    state = checkpoint.check_start(resume, finished="config.json")  # the resume rule, before any
                                                                     # model loads; None: fresh start
    ...build the model, the optimizer and the scheduler exactly as a fresh run would...
    if state is not None:                                            # optimizer, scheduler, RNG
        saved = checkpoint.restore(optimizer, scheduler)
        checkpoint.load_into(trained_tensors, saved["weights"])     # the trainer's tensors, in place
        step = state["step"]
    ...each step or epoch: checkpoint.save({"step": step, ...}, {"weights": trained_tensors},
                                           optimizer, scheduler)
    ...at the end: write the finished model (`zeroshot.files.write_atomic` for single files),
       plot_losses(out / "loss.png", {"train": (steps, losses)}, "step", "loss"), checkpoint.remove()

The fingerprint holds what determines the run (not the knobs a resume may change, such as patience or
a larger epoch count); a trainer's data order and random draws should be functions of (seed, step) or
replayed on resume, so that a resumed run ends bit-identical to an uninterrupted one (the runtime saves
and restores torch's, Python's and NumPy's global random states, and the optimizer's parameter groups).
"""
