"""The one adapter to TransformerLens: hook names, tokens, SAE splicing and model files.

Every TransformerLens call of align_lens goes through this package, so a move to TransformerLens 4's
TransformerBridge touches it only. `hook_points`: hook lookup, edit sites, running with hooks; `tokens`:
tokenising, padding, answer tokens; `splice`: putting an SAE into a model; `models`: save / load / download;
`compact_vocab`: storing a model as the vocabulary rows it uses.
"""

from align_lens.adapter.compact_vocab import COMPACT_WEIGHTS, UNUSED_LOGIT_BIAS
from align_lens.adapter.hook_points import (
    EditSite,
    HookName,
    hook_width,
    hooks,
    logits_at,
    read_site,
    residual_hooks,
    resolve_hook,
    run_with_cache,
    run_with_hooks,
    sae_hook_name,
    stop_layer,
)
from align_lens.adapter.models import (
    MODEL_CONFIG,
    MODEL_WEIGHTS,
    TOKENIZER_DIR,
    build_model,
    expand_vocab,
    load_pretrained,
    load_transformer,
    save_transformer,
)
from align_lens.adapter.quiet import HookedSAETransformer, HookedTransformer, HookedTransformerConfig, quiet
from align_lens.adapter.splice import attach_sae, check_sae_fits, spliced
from align_lens.adapter.tokens import (
    Position,
    answer_str_tokens,
    answer_tokens,
    check_context,
    decode_text,
    pad_id,
    pad_right,
    stop_ids,
    tokenize,
)

__all__ = [
    "COMPACT_WEIGHTS",
    "UNUSED_LOGIT_BIAS",
    "MODEL_CONFIG",
    "MODEL_WEIGHTS",
    "TOKENIZER_DIR",
    "EditSite",
    "HookName",
    "HookedSAETransformer",
    "HookedTransformer",
    "HookedTransformerConfig",
    "Position",
    "answer_str_tokens",
    "answer_tokens",
    "attach_sae",
    "build_model",
    "check_context",
    "check_sae_fits",
    "decode_text",
    "expand_vocab",
    "hook_width",
    "hooks",
    "logits_at",
    "load_pretrained",
    "load_transformer",
    "pad_id",
    "pad_right",
    "quiet",
    "read_site",
    "residual_hooks",
    "resolve_hook",
    "run_with_cache",
    "run_with_hooks",
    "sae_hook_name",
    "save_transformer",
    "spliced",
    "stop_ids",
    "stop_layer",
    "tokenize",
]
