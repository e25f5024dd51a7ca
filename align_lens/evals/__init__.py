"""Metrics of an aligned SAE: binding, fragmentation, silence, fidelity, spliced task accuracy; greedy decoding."""

from align_lens.evals.binding import binding_metrics, encode_in_chunks, fragmentation, hungarian, off_ontology_silence
from align_lens.evals.decoding import greedy_decode, lenient_match, score_generation
from align_lens.evals.fidelity import ce_kl, fidelity, spliced, task_accuracy

__all__ = [
    "binding_metrics",
    "ce_kl",
    "encode_in_chunks",
    "fidelity",
    "fragmentation",
    "greedy_decode",
    "hungarian",
    "lenient_match",
    "off_ontology_silence",
    "score_generation",
    "spliced",
    "task_accuracy",
]
