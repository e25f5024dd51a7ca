"""AlignedSAE: a SAELens SAE whose last `n_concepts` latents are concept slots.

Layout of the dictionary (d_sae = n_free + n_concepts):
    latents [0, n_free)            free latents, the base architecture's own activation
                                   (ReLU for standard, JumpReLU for jumprelu, TopK for topk)
    latents [n_free, d_sae)        concept slots, in ontology order, activation ReLU

Concept slots bypass the base sparsity on purpose: TopK must never evict a concept and a
JumpReLU threshold must not hide a weakly active one. ReLU keeps them nonnegative, so a slot
reads as "how much of this concept is present" and decoding a slot writes along one direction.
"""

from __future__ import annotations

import copy
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from sae_lens import SAE, SAEConfig, TrainingSAE, register_sae_class, register_sae_training_class
from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.jumprelu_sae import JumpReLU, Step
from sae_lens.saes.sae import TrainCoefficientConfig, TrainingSAEConfig, TrainStepInput
from sae_lens.saes.topk_sae import TopK
from torch import Tensor, nn

from align_lens.files import OUTPUT_MARKER, replaced_folder

ARCHITECTURE = "aligned"
ONTOLOGY_FILENAME = "ontology.json"
SAVED_FILES = (SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME, ONTOLOGY_FILENAME, OUTPUT_MARKER)
BASE_ARCHITECTURES = ("standard", "topk", "jumprelu")


def _check_concepts(base_architecture: str, concept_names: list[str], concept_slots: list[int], d_sae: int, k):
    if base_architecture not in BASE_ARCHITECTURES:
        raise ValueError(f"base_architecture {base_architecture!r} is not supported; use one of {BASE_ARCHITECTURES}")
    if any(not isinstance(n, str) or not n or n != n.strip() for n in concept_names):
        raise ValueError(f"concept names must be non-empty text without surrounding whitespace, got {concept_names}")
    if len(set(concept_names)) != len(concept_names):
        raise ValueError(f"concept names must be unique, got {concept_names}")
    n_free = d_sae - len(concept_names)
    if n_free < 1:
        raise ValueError(f"d_sae={d_sae} leaves no free latents for {len(concept_names)} concepts")
    if concept_slots and concept_slots != list(range(n_free, d_sae)):
        raise ValueError(f"concept_slots must be the last {len(concept_names)} latents {n_free}..{d_sae - 1}")
    if base_architecture == "topk" and not k:
        raise ValueError("a topk base needs k (the number of active free latents)")


TABLE_LISTS = ("concept_names", "concept_slots", "concept_scales", "concept_counts")  # one entry per concept


def table_hash(values: list) -> str:
    """sha256 (16 hex digits) of one concept-table list as cfg.json stores it."""
    return hashlib.sha256(json.dumps(values).encode()).hexdigest()[:16]


class _ConceptTable:
    """Derived concept-table fields and checks shared by the inference and training configs."""

    d_sae: int
    base_architecture: str
    concept_names: list[str]
    concept_slots: list[int]
    concept_scales: list[float]
    concept_counts: list[int]
    concept_table_hashes: dict[str, str]
    k: int | None

    def _complete_concept_table(self) -> None:
        for key in TABLE_LISTS[1:]:
            values = getattr(self, key)
            if values and len(values) != len(self.concept_names):
                raise ValueError(
                    f"the concept table has {len(self.concept_names)} concept_names but {len(values)} {key}; "
                    "the config does not describe these concepts (is the name list short?)."
                )
        if not self.concept_slots:
            self.concept_slots = list(range(self.d_sae - len(self.concept_names), self.d_sae))
        if not self.concept_scales:
            self.concept_scales = [1.0] * len(self.concept_names)
        _check_concepts(self.base_architecture, self.concept_names, self.concept_slots, self.d_sae, self.k)
        bad = [s for s in self.concept_scales if not isinstance(s, (int, float)) or not 0 <= s < float("inf")]
        if bad:  # 0 is a slot that never fired in training; a negative or non-finite scale is an edited file
            raise ValueError(
                f"concept_scales must be finite numbers ≥ 0 (a slot's typical on-value), got {bad} in "
                f"{self.concept_scales}"
            )

    def check_table_hashes(self) -> None:
        """Refuse a concept table edited after it was saved (e.g. two names swapped in cfg.json), naming the list."""
        for key, digest in self.concept_table_hashes.items():
            if key in TABLE_LISTS and table_hash(getattr(self, key)) != digest:
                raise ValueError(
                    f"cfg.json's {key} {getattr(self, key)} is not what was saved with these weights (its hash "
                    "differs): the file was edited. Restore it, or re-save the SAE from Python after changing it."
                )

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE

    @property
    def n_concepts(self) -> int:
        return len(self.concept_names)

    @property
    def n_free(self) -> int:
        return self.d_sae - self.n_concepts


@dataclass
class AlignedSAEConfig(_ConceptTable, SAEConfig):
    """SAEConfig plus the concept table. Everything here lands in cfg.json."""

    base_architecture: str = "standard"
    concept_names: list[str] = field(default_factory=list)
    concept_slots: list[int] = field(default_factory=list)
    concept_scales: list[float] = field(default_factory=list)  # typical on-value of each slot
    concept_counts: list[int] = field(default_factory=list)  # training examples per concept
    concept_table_hashes: dict[str, str] = field(default_factory=dict)  # table_hash of each list, set by save_model
    ontology_hash: str | None = None  # Ontology.fingerprint() of the ontology it was aligned with
    k: int | None = None  # topk base: active free latents
    align_config: dict[str, Any] = field(default_factory=dict)  # how Stage 2 was run
    metrics: dict[str, Any] = field(default_factory=dict)  # headline evaluation numbers

    def __post_init__(self) -> None:
        super().__post_init__()
        self._complete_concept_table()


@dataclass(kw_only=True)
class AlignedTrainingSAEConfig(_ConceptTable, TrainingSAEConfig):
    """Training twin of AlignedSAEConfig (for `TrainingSAE.load_from_disk` and SAELens' trainer)."""

    base_architecture: str = "standard"
    concept_names: list[str] = field(default_factory=list)
    concept_slots: list[int] = field(default_factory=list)
    concept_scales: list[float] = field(default_factory=list)
    concept_counts: list[int] = field(default_factory=list)
    concept_table_hashes: dict[str, str] = field(default_factory=dict)
    ontology_hash: str | None = None
    k: int | None = None
    align_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    sparsity_coefficient: float = 1.0
    jumprelu_bandwidth: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        self._complete_concept_table()


# The mixin reads SAELens SAE attributes (W_enc, hooks, ...); the type checker sees it as an SAE subclass.
_MixinBase = SAE if TYPE_CHECKING else object


class _ConceptCoding(_MixinBase):
    """Encode/decode shared by the inference and training classes."""

    cfg: AlignedSAEConfig | AlignedTrainingSAEConfig
    jumprelu_bandwidth: float = 0.05

    def _init_concept_weights(self) -> None:
        SAE.initialize_weights(self)  # W_enc, W_dec, b_dec
        self.b_enc = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))
        if self.cfg.base_architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.zeros(self.cfg.d_sae, dtype=self.dtype, device=self.device))

    def _free_act(self, pre: Tensor) -> Tensor:
        arch = self.cfg.base_architecture
        if arch == "standard":
            return pre.relu()
        if arch == "topk":
            if self.cfg.k is None:
                raise ValueError("a topk-based aligned SAE needs cfg.k (the free latents' k)")
            return TopK(self.cfg.k)(pre)
        thr = self.threshold[: self.cfg.n_free]
        if torch.is_grad_enabled() and pre.ndim == 2 and (pre.requires_grad or thr.requires_grad):
            return JumpReLU.apply(pre, thr, self.jumprelu_bandwidth, False)  # straight-through to the threshold
        return pre.relu() * (pre > thr)

    def encode_with_hidden_pre(
        self, x: Float[Tensor, "... d_in"]
    ) -> tuple[Float[Tensor, "... d_sae"], Float[Tensor, "... d_sae"]]:
        sae_in = self.process_sae_in(x)
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)
        nf = self.cfg.n_free
        if self.cfg.base_architecture == "standard":  # free and slot activations are both ReLU: no split
            acts = hidden_pre.relu()
        else:
            acts = torch.cat([self._free_act(hidden_pre[..., :nf]), hidden_pre[..., nf:].relu()], dim=-1)
        return self.hook_sae_acts_post(acts), hidden_pre

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        return self.encode_with_hidden_pre(x)[0]

    def decode(self, feature_acts: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_in"]:
        out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
        out = self.run_time_activation_norm_fn_out(out)
        return self.reshape_fn_out(out, self.d_head)

    # ---- concept helpers -------------------------------------------------------------
    @property
    def concept_names(self) -> list[str]:
        return list(self.cfg.concept_names)

    @property
    def concept_slots(self) -> list[int]:
        return list(self.cfg.concept_slots)

    def concept_index(self, name: str) -> int:
        """Latent index of a concept's slot."""
        if name not in self.cfg.concept_names:
            raise KeyError(f"unknown concept {name!r}; this SAE's concepts are {self.cfg.concept_names}")
        return self.cfg.concept_slots[self.cfg.concept_names.index(name)]

    def concept_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... n_concepts"]:
        """Concept-slot activations, in `concept_names` order."""
        return self.encode(x)[..., self.cfg.n_free :]

    def free_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... n_free"]:
        return self.encode(x)[..., : self.cfg.n_free]

    def concept_directions(self) -> Float[Tensor, "n_concepts d_in"]:
        """Decoder rows of the concept slots: what setting a slot to 1 writes."""
        return self.W_dec[self.cfg.n_free :]

    def free_sparsity_loss(self, feature_acts: Tensor, hidden_pre: Tensor) -> Tensor:
        """The base architecture's own sparsity penalty, over free latents only (unweighted)."""
        nf = self.cfg.n_free
        arch = self.cfg.base_architecture
        if arch == "standard":  # L1 weighted by decoder norm, as SAELens' StandardTrainingSAE
            # full width with the slots' weights zeroed: slicing a [batch, d_sae] tensor would cost a
            # full-size zero-filled gradient buffer in backward
            free = torch.arange(self.cfg.d_sae, device=self.W_dec.device) < nf
            return (feature_acts @ (self.W_dec.norm(dim=-1) * free)).mean()
        if arch == "jumprelu":  # L0 through the step function's straight-through estimator
            thr = self.threshold[:nf]
            return Step.apply(hidden_pre[..., :nf], thr, self.jumprelu_bandwidth, False).sum(-1).mean()
        return hidden_pre.new_zeros(())  # topk: sparsity is structural (k active latents)


class AlignedSAE(_ConceptCoding, SAE[AlignedSAEConfig]):
    """A concept-aligned SAE (AlignSAE). Load with `SAE.load_from_disk` after `import align_lens`."""

    b_enc: nn.Parameter
    history: Any  # the AlignHistory of the `align` run that made it (not saved with the weights)

    def initialize_weights(self) -> None:
        self._init_concept_weights()

    def save_model(self, path: str | Path, ontology=None) -> tuple[Path, Path]:
        """Write cfg.json + weights (+ `ontology.json` when `ontology` is given) into a fresh folder at `path`.

        The folder is built beside `path` and swapped in, so no file of an earlier save survives; a folder
        holding anything but saved-SAE files is refused. The concept table (names, slots, scales, example
        counts, ontology hash) is always in cfg.json; the ontology itself is optional.
        """
        path = Path(path)
        self.cfg.concept_table_hashes = {key: table_hash(getattr(self.cfg, key)) for key in TABLE_LISTS}
        with replaced_folder(path, owned=SAVED_FILES) as tmp:
            super().save_model(tmp)
            if ontology is not None:
                ontology.check_names(self.cfg.concept_names)
                ontology.to_json(tmp / ONTOLOGY_FILENAME)
        return path / SAE_WEIGHTS_FILENAME, path / SAE_CFG_FILENAME

    def process_state_dict_for_loading(self, state_dict: dict[str, Any]) -> None:
        """Refuse weights whose size disagrees with the config's concept table (before the raw size error), and a
        concept table edited after saving."""
        shape = tuple(state_dict["W_enc"].shape) if "W_enc" in state_dict else None
        want = (self.cfg.d_in, self.cfg.d_sae)
        if shape != want:
            raise ValueError(
                f"the weights have W_enc of shape {shape} but the config needs {want} (d_sae = {self.cfg.n_free} "
                f"free latents + {self.cfg.n_concepts} concept slots {self.cfg.concept_names}); cfg.json and "
                "sae_weights.safetensors come from different SAEs."
            )
        self.cfg.check_table_hashes()

    @torch.no_grad()
    def fold_W_dec_norm(self) -> None:
        if self.cfg.base_architecture == "topk":
            raise NotImplementedError("folding decoder norms would change which free latents TopK selects")
        norms = self.W_dec.norm(dim=-1)
        super().fold_W_dec_norm()
        if self.cfg.base_architecture == "jumprelu":
            self.threshold.data *= norms
        self.cfg.concept_scales = [s * float(n) for s, n in zip(self.cfg.concept_scales, norms[self.cfg.n_free :])]


class AlignedTrainingSAE(_ConceptCoding, TrainingSAE[AlignedTrainingSAEConfig]):
    """Training twin: SAELens' trainer sees reconstruction + the base sparsity on free latents."""

    cfg: AlignedTrainingSAEConfig
    b_enc: nn.Parameter

    def initialize_weights(self) -> None:
        self._init_concept_weights()
        self.jumprelu_bandwidth = self.cfg.jumprelu_bandwidth

    def get_coefficients(self) -> dict[str, float | TrainCoefficientConfig]:
        return {"sparsity": self.cfg.sparsity_coefficient}

    def calculate_aux_loss(self, step_input: TrainStepInput, feature_acts, hidden_pre, sae_out):
        return {"sparsity": step_input.coefficients["sparsity"] * self.free_sparsity_loss(feature_acts, hidden_pre)}


def register() -> None:
    """Register the 'aligned' architecture with SAELens (idempotent)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, AlignedSAE, AlignedSAEConfig)
    if ARCHITECTURE not in SAE_TRAINING_CLASS_REGISTRY:
        register_sae_training_class(ARCHITECTURE, AlignedTrainingSAE, AlignedTrainingSAEConfig)


# ---- conversion from an ordinary SAELens SAE ------------------------------------------------
def inference_state(sae: SAE) -> tuple[str, dict[str, Tensor], dict[str, Any]]:
    """(architecture, inference state dict, inference cfg dict) of any standard/topk/jumprelu SAE."""
    state = {k: v.detach().clone() for k, v in sae.state_dict().items()}
    if isinstance(sae, TrainingSAE):
        sae.process_state_dict_for_saving_inference(state)
        cfg = sae.cfg.get_inference_sae_cfg_dict()
    else:
        cfg = sae.cfg.to_dict()
    arch = cfg["architecture"]
    if arch == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
        norms = state["W_dec"].norm(dim=-1)  # fold: TopK on pre*norm with unit rows is the same code
        state["W_enc"] = state["W_enc"] * norms
        state["b_enc"] = state["b_enc"] * norms
        state["W_dec"] = state["W_dec"] / norms[:, None]
    if arch not in BASE_ARCHITECTURES:
        raise ValueError(
            f"cannot align a {arch!r} SAE; supported bases are {BASE_ARCHITECTURES} "
            "(batchtopk saves as jumprelu and works too)"
        )
    return arch, state, cfg


def aligned_from_sae(sae: SAE, concept_names: list[str], device: str | None = None) -> AlignedSAE:
    """An AlignedSAE whose free latents are `sae`'s latents and whose concept slots are zero.

    `sae` itself is left untouched.
    """
    if isinstance(sae, (AlignedSAE, AlignedTrainingSAE)):
        raise ValueError("this SAE is already aligned; pass the Stage-1 SAE it was built from")
    arch, state, base_cfg = inference_state(sae)
    n_free, d_in, nc = state["W_enc"].shape[1], state["W_enc"].shape[0], len(concept_names)
    cfg = AlignedSAEConfig(
        d_in=d_in,
        d_sae=n_free + nc,
        dtype=str(base_cfg.get("dtype", "float32")),
        device=device or str(sae.device),
        apply_b_dec_to_input=base_cfg.get("apply_b_dec_to_input", True),
        normalize_activations=base_cfg.get("normalize_activations", "none"),
        base_architecture=arch,
        concept_names=list(concept_names),
        k=base_cfg.get("k") if arch == "topk" else None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = AlignedSAE(cfg)
    out.cfg.metadata = copy.deepcopy(sae.cfg.metadata)
    with torch.no_grad():
        out.W_enc.zero_()
        out.b_enc.zero_()
        out.W_dec.zero_()
        out.W_enc[:, :n_free] = state["W_enc"]
        out.b_enc[:n_free] = state["b_enc"]
        out.W_dec[:n_free] = state["W_dec"]
        out.b_dec.copy_(state["b_dec"])
        if arch == "jumprelu":
            out.threshold.zero_()
            out.threshold[:n_free] = state["threshold"]
    return out.to(device or str(sae.device))
