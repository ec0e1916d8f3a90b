"""Helpers for testing code that uses zeroshot: random-weight models in real formats, and more.

Public, as `transformers.testing_utils` and `sklearn.utils._testing` are; the library itself never
imports this module (`lint-imports` checks it).
"""
