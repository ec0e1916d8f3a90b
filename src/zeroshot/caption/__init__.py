"""Prefix captioning (ClipCap): a mapper from a frozen encoder's embedding into a frozen causal LM's
input, its frozen encoders and training files, and one-call training and captioning."""
