"""Shared library of the BERT text-classification pipeline (params, artifacts, batching, models, tracking)."""
