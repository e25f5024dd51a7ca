"""Analyses built on the metrics: baselines (Stage-1 latents, DiffMean, probe) and studies (layers, ablations)."""
