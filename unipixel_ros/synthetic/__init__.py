"""Synthetic scenes and requests with exact ground truth, generated from a seed (no data files)."""
