"""The evaluation stage: one `evaluate(model, aligned, ontology, EvalConfig)` (binding, fidelity, fragmentation,
spliced task accuracy, swaps; (mode, α) chosen on validation entities when asked: `choose_swap`), the metrics it
reads, and the one greedy decoder."""

from align_lens.evals.binding import binding_metrics, encode_in_chunks, fragmentation, hungarian, off_ontology_silence
from align_lens.evals.decoding import greedy_decode, lenient_match, score_generation
from align_lens.evals.evaluate import EvalConfig, evaluate, headline
from align_lens.evals.fidelity import ce_kl, fidelity, spliced, task_accuracy
from align_lens.evals.selection import Candidate, choose_swap, people_split

__all__ = [
    "Candidate",
    "EvalConfig",
    "binding_metrics",
    "ce_kl",
    "choose_swap",
    "encode_in_chunks",
    "evaluate",
    "fidelity",
    "fragmentation",
    "greedy_decode",
    "headline",
    "hungarian",
    "lenient_match",
    "off_ontology_silence",
    "people_split",
    "score_generation",
    "spliced",
    "task_accuracy",
]
