"""Analyses built on the evaluation stage (`align_lens.evals`): baselines (Stage-1 latents, DiffMean, probe,
DAS), studies (layers, ablations), the swap ceiling and the two-hop and grokking studies."""
