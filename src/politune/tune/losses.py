"""Preference losses on sequence log-probabilities: one pure function, tested on hand-computed examples.

Notation, per pair: ``d = (log pi(y_w) - log ref(y_w)) - (log pi(y_l) - log ref(y_l))`` (summed over completion
tokens), ``b = beta``.

- ``sigmoid`` (DPO, Rafailov et al. 2023): ``-log sigmoid(b d)``
- ``ipo`` (Azar et al. 2023): ``(d_w/|y_w| - d_l/|y_l| - 1/(2b))^2`` with per-token averages (as TRL, after the
  IPO authors)
- ``hinge`` (SLiC): ``max(0, 1 - b d)``
- ``robust`` (cDPO / rDPO, Chowdhury et al. 2024), flip probability ``e``:
  ``(-(1-e) log sigmoid(b d) + e log sigmoid(-b d)) / (1 - 2e)``
- ``simpo``: SimPO-style length normalisation, ``-log sigmoid(b (d_w/|y_w| - d_l/|y_l|))``; it keeps the
  reference (TRL's ``sigmoid_norm``), so step-0 is still ln 2
- ``sft_weight`` > 0 adds ``sft_weight * mean NLL of chosen tokens`` (RPO, Pang et al. 2024).

Every loss is 0-margin-consistent: at step 0 (policy == reference) sigmoid/robust/simpo give ln 2, hinge 1 and
IPO ``1/(4 b^2)``; :func:`step0_expected` returns that value for the step-0 check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from politune.tune.config import LOSSES, LossSpec


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar
    preference_loss: torch.Tensor  # scalar, the preference part only
    chosen_rewards: torch.Tensor  # (B,) b * (log pi - log ref) on chosen
    rejected_rewards: torch.Tensor  # (B,)


def preference_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    spec: LossSpec,
    *,
    lengths: tuple[torch.Tensor, torch.Tensor] | None = None,
    chosen_nll: torch.Tensor | None = None,
) -> LossOutput:
    """Mean loss over a batch of pairs. ``*_logps``: (B,) summed completion log-probs; ``lengths``: (chosen,
    rejected), each (B,) completion token counts (needed by ipo/simpo); ``chosen_nll``: scalar mean NLL per
    chosen token (RPO, needed when ``spec.sft_weight > 0``)."""
    loss, beta, label_smoothing, sft_weight = spec.name, spec.beta, spec.label_smoothing, spec.sft_weight
    chosen_logratios = chosen_logps - ref_chosen_logps
    rejected_logratios = rejected_logps - ref_rejected_logps
    d = chosen_logratios - rejected_logratios
    if loss in ("ipo", "simpo"):
        if lengths is None:
            raise ValueError(f"loss {loss!r} needs the completion lengths")
        chosen_lengths, rejected_lengths = lengths
        d_norm = chosen_logratios / chosen_lengths.clamp(min=1) - rejected_logratios / rejected_lengths.clamp(
            min=1
        )
    if loss == "sigmoid":
        per = -F.logsigmoid(beta * d)
    elif loss == "hinge":
        per = torch.relu(1 - beta * d)
    elif loss == "ipo":
        per = (d_norm - 1 / (2 * beta)) ** 2
    elif loss == "robust":
        e = label_smoothing
        per = (-(1 - e) * F.logsigmoid(beta * d) + e * F.logsigmoid(-beta * d)) / (1 - 2 * e)
    elif loss == "simpo":
        per = -F.logsigmoid(beta * d_norm)
    else:
        raise ValueError(f"unknown loss {loss!r}: expected one of {', '.join(LOSSES)}")
    pref = per.mean()
    total = pref
    if sft_weight > 0:
        if chosen_nll is None:
            raise ValueError("sft_weight > 0 needs chosen_nll")
        total = pref + sft_weight * chosen_nll
    return LossOutput(total, pref, (beta * chosen_logratios).detach(), (beta * rejected_logratios).detach())


def step0_expected(loss: str, beta: float) -> float:
    """The preference loss when policy == reference (zero margin)."""
    if loss in ("sigmoid", "robust", "simpo"):
        return math.log(2)
    if loss == "hinge":
        return 1.0
    if loss == "ipo":
        return (1 / (2 * beta)) ** 2
    raise ValueError(f"unknown loss {loss!r}")
