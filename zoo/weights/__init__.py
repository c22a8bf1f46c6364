"""Weights on disk: verified downloads, pulls through huggingface_hub and URLs, the
local cache and its records, checkpoint formats read safely, imported checkpoints.
"""
