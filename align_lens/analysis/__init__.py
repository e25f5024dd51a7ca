"""Analyses built on the metrics: one evaluation recipe (`evaluate` + `EvalConfig`), baselines (Stage-1 latents,
DiffMean, probe) and studies (layers, ablations)."""

from align_lens.analysis.evaluate import EvalConfig, evaluate, headline

__all__ = ["EvalConfig", "evaluate", "headline"]
