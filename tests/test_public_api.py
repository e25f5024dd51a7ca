"""The top level holds the pipeline verbs and the objects a user holds; internals live in their subpackages."""

import importlib

import align_lens

INTERNALS = {  # name → the subpackage it is imported from
    "binding_metrics": "align_lens.evals",
    "fidelity": "align_lens.evals",
    "fragmentation": "align_lens.evals",
    "off_ontology_silence": "align_lens.evals",
    "task_accuracy": "align_lens.evals",
    "SwapTrial": "align_lens.interventions",
    "sample_swap_trials": "align_lens.interventions",
    "patch_slots": "align_lens.interventions",
    "ravel_scores": "align_lens.interventions",
    "AlignedSAEConfig": "align_lens.saes",
    "AlignedTrainingSAE": "align_lens.saes",
    "AlignedTrainingSAEConfig": "align_lens.saes",
    "register": "align_lens.saes",
}


def test_top_level_is_the_pipeline_and_what_a_user_holds():
    verbs = {"gather_activations", "gather_token_activations", "pretrain_sae", "align", "evaluate", "swap_hooks"}
    verbs |= {"evaluate_swaps", "push_to_hub", "load_aligned", "export_plain", "save_transformer", "load_transformer"}
    held = {"Ontology", "Concept", "Example", "OntologyError", "AlignConfig", "AlignHistory", "EvalConfig"}
    held |= {"Stage1Config", "LossWeights", "OptimiserConfig", "Runtime"}
    held |= {"AlignedSAE", "SlotEditor", "PaperSlotEditor", "SteerSlotEditor", "DirectionEditor", "LatentEditor"}
    assert set(align_lens.__all__) == verbs | held | {"slot_editor"}
    assert all(hasattr(align_lens, name) for name in align_lens.__all__)


def test_internals_are_imported_from_their_subpackages():
    for name, package in INTERNALS.items():
        assert not hasattr(align_lens, name), f"{name} should not be at the top level"
        assert hasattr(importlib.import_module(package), name), f"{package} lost {name}"


def test_the_model_pair_is_named_apart_from_the_saes_save_model():
    assert not hasattr(align_lens, "save_model") and not hasattr(align_lens, "load_model")
    assert align_lens.save_transformer.__module__ == "align_lens.adapter.models"
    assert align_lens.load_transformer.__module__ == "align_lens.adapter.models"
    assert hasattr(align_lens.AlignedSAE, "save_model")  # the SAE keeps SAELens' name
