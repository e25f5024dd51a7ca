"""How far the plain SAELens export of a demo-like (TopK-based) aligned SAE is from the aligned SAE.

Follows the demo's pipeline on the shipped model at `--hook` (default: the demo's; fewer people and Stage-1 steps so
it runs in minutes on a CPU), exports the plain form and measures it on the held-out prompts and on every token
of the biographies and questions (where concept slots sit near 0, the hard case for TopK). Prints JSON.

    .venv/bin/python benchmarks/plain_export_fidelity.py [--n-people 300] [--steps 600] [--hook HOOK]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import warnings

import torch
from sae_lens import SAE

from align_lens import AlignConfig, Runtime, Stage1Config, align, gather_token_activations, pretrain_sae
from align_lens.evals.binding import binding_metrics
from align_lens.evals.evaluate import split_activations
from align_lens.saes.plain import export_plain, plain_fidelity, plain_sae
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DEFAULT_HOOK, corpus_texts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n-people", type=int, default=300)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hook", default=DEFAULT_HOOK, help="default: the demo's hook")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model, world = load_base_model(), load_base_world()
    onto = world.ontology(a.n_people)
    bios, questions = corpus_texts(world, a.n_people, 0)
    bio_acts = gather_token_activations(model, bios, a.hook)
    tokens = torch.cat([bio_acts, gather_token_activations(model, questions, a.hook)])
    acts = split_activations(model, onto, a.hook, 256)
    stage1 = pretrain_sae(tokens, Stage1Config(d_sae=1024, k=16, steps=a.steps, batch_size=1024, hook_name=a.hook))
    cfg = AlignConfig(epochs=4, batch_size=256, runtime=Runtime(progress=False))
    aligned = align(stage1, onto, activations=acts["train"], unlabelled=bio_acts, config=cfg)
    names = aligned.concept_names
    out = {"n_people": a.n_people, "stage1_steps": a.steps, "hook": a.hook}
    for gain in (2.0**10, 2.0**14, 2.0**20):
        plain = plain_sae(aligned, gain)
        for what, x in (("heldout_prompts", acts["heldout"]), ("all_tokens", tokens)):
            out[f"gain_2^{int(math.log2(gain))}_{what}"] = plain_fidelity(aligned, plain, x)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_plain(aligned, tmp, activations=acts["heldout"])
        loaded = SAE.load_from_disk(tmp)  # the plain SAE as any SAELens user reads it
    labels, x = onto.labels("heldout", order=names), acts["heldout"]
    with torch.no_grad():
        plain_slots = loaded.encode(x)[:, aligned.cfg.concept_slots]
        out["binding_heldout_aligned"] = binding_metrics(aligned.concept_acts(x), labels, names)["accuracy"]
    out["binding_heldout_plain"] = binding_metrics(plain_slots, labels, names)["accuracy"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
