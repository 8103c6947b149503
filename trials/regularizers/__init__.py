"""Training-time regularizers that make a network prune well (DAFP, FFR, PAAM).

A regularizer is attached to a model before training, adds ``penalty()`` to the loss
of every step, sees every optimizer step (``after_step``) and is detached at the end.
``history`` is its course (one dict per logged step), for MLflow.

- ``dafp`` (DAFP, sparsity-inducing training): ``weight * sum |gamma|`` over every BN
  layer, with ``weight`` raised or lowered every ``interval`` steps so that the share
  of BN scales under ``threshold`` reaches ``target``.
- ``ffr`` (feature flow regularization): along the blocks of each stage (consecutive
  block outputs of one shape), the mean squared first difference ("gradient") plus
  ``curvature`` times the mean squared second difference ("curvature") of the
  features, times ``weight``.
- ``paam`` (pruning by active attention manipulation): per conv layer, an attention
  module over the layer's filter weights gives each filter an analog score in (0, 1)
  that gates its (normalised) output; ``weight * sum of the scores`` drives them down
  (the weight ramps up over the first ``warmup`` fraction of training, so a network
  trained from scratch learns before its filters compete). The score modules have
  their own Adam optimizer (learning rate ``lr``). On detach the gates are folded into the BN affine parameters (or
  the conv), so the trained network is a plain network again, and the scores are kept.
"""

from __future__ import annotations

from trials.errors import UserError
from trials.regularizers.base import REGISTRY, Regularizer, bn_layers, bn_scales, bn_sparsity, register
from trials.regularizers.dafp import DafpSparsity
from trials.regularizers.ffr import FeatureFlow, feature_blocks
from trials.regularizers.paam import FilterAttention, PaamGates, group_scores, threshold_spec

REGULARIZERS = ("none", *REGISTRY)  # the names a config may use
__all__ = [
    "REGISTRY",
    "REGULARIZERS",
    "DafpSparsity",
    "FeatureFlow",
    "FilterAttention",
    "PaamGates",
    "Regularizer",
    "bn_layers",
    "bn_scales",
    "bn_sparsity",
    "feature_blocks",
    "group_scores",
    "make_regularizer",
    "register",
    "threshold_spec",
]


def make_regularizer(kind: str, **options) -> Regularizer | None:
    """``kind`` in REGULARIZERS; options are the constructor's keywords (None ones dropped)."""
    options = {k: v for k, v in options.items() if v is not None}
    if kind in (None, "none"):
        return None
    cls = REGISTRY.get(kind)
    if cls is None:
        raise UserError(f"regularizer '{kind}' is unknown: use one of {', '.join(REGULARIZERS)}")
    try:
        return cls(**options)
    except TypeError as exc:
        raise UserError(f"regularizer '{kind}': {exc}") from None
