"""H2O losses (Niu et al., NeurIPS 2022; ALGORITHMS.md section 1.2, every symbol as written there).

Class index 0 = real, 1 = sim. ``D_sa`` and ``D_sas`` are the classifiers' outputs, already bounded
as ``2 tanh(.)`` (logits in [-2, 2]); shapes (..., 2). K critics, B_r real and B_s sim transitions.

    p_sa   = softmax(D_sa),   p_sas = softmax(D_sas + D_sa)
    L_D    = E_real[-log p_sa,0 - log p_sas,0] + E_sim[-log p_sa,1 - log p_sas,1]
    log w^ = (log p_sas,0 - log p_sas,1) - (log p_sa,0 - log p_sa,1),   w = clip(w^, 1e-5, 1)
    u      = clip(mean_j -log w^(s, a, s'_j), 1e-45, 10),   omega_i = u_i / sum_{j in B_s} u_j
    L_Q    = sum_k [mean_{B_r}(Q_k - y)^2 + mean_{B_s} w (Q_k - y)^2 + beta R_k]
    R_k    = clip(log sum_{i in B_s} omega_i exp Q_k(s_i, a_i) - mean_{B_r} Q_k(s, a), -1000, 1000)

Note ``log w^`` equals ``D_sas,0 - D_sas,1``: for two classes ``log p_0 - log p_1`` is the logit
difference, so the ``D_sa`` residual cancels. It is kept in :func:`dynamics_log_ratio` as written.
w, u and omega carry no gradient (the functions run under ``torch.no_grad``).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

Metrics = dict[str, torch.Tensor]


def classifier_loss(
    sa_real: torch.Tensor, sas_real: torch.Tensor, sa_sim: torch.Tensor, sas_sim: torch.Tensor
) -> tuple[torch.Tensor, Metrics]:
    """``L_D`` for classifier outputs (B, 2) on real and sim inputs; gradient reaches D_sa through
    both its own term and the p_sas residual.

    Metrics: ``loss/classifier``; ``h2o/classifier_acc`` (p_sas's argmax right, real and sim pooled).
    """
    lp_sa_real = F.log_softmax(sa_real, dim=-1)
    lp_sas_real = F.log_softmax(sas_real + sa_real, dim=-1)
    lp_sa_sim = F.log_softmax(sa_sim, dim=-1)
    lp_sas_sim = F.log_softmax(sas_sim + sa_sim, dim=-1)
    loss_real = -(lp_sa_real[:, 0] + lp_sas_real[:, 0]).mean()
    loss_sim = -(lp_sa_sim[:, 1] + lp_sas_sim[:, 1]).mean()
    loss = loss_real + loss_sim
    with torch.no_grad():
        right = torch.cat((lp_sas_real[:, 0] > lp_sas_real[:, 1], lp_sas_sim[:, 1] > lp_sas_sim[:, 0]))
        acc = right.float().mean()
    return loss, {"loss/classifier": loss.detach(), "h2o/classifier_acc": acc}


def dynamics_log_ratio(logits_sa: torch.Tensor, logits_sas: torch.Tensor) -> torch.Tensor:
    """``log w^ = (log p_sas,0 - log p_sas,1) - (log p_sa,0 - log p_sa,1)``, shape (...), no gradient.

    ``logits_sa`` broadcasts against ``logits_sas`` (one D_sa per (s, a) for N perturbed s').
    """
    with torch.no_grad():
        lp_sa = F.log_softmax(logits_sa, dim=-1)
        lp_sas = F.log_softmax(logits_sas + logits_sa, dim=-1)
        return (lp_sas[..., 0] - lp_sas[..., 1]) - (lp_sa[..., 0] - lp_sa[..., 1])


def clip_ratio(log_w_hat: torch.Tensor, low: float = 1e-5, high: float = 1.0) -> torch.Tensor:
    """``w = clip(exp(log w^), low, high)``: sim samples are only ever down-weighted (high = 1)."""
    with torch.no_grad():
        return log_w_hat.exp().clamp(low, high)


def gap_estimate(log_w_hat_noisy: torch.Tensor, low: float = 1e-45, high: float = 10.0) -> torch.Tensor:
    """``u = clip(mean_j -log w^_j, low, high)`` for log w^ (N, B) at N perturbed next states -> (B,)
    float64 (the 1e-45 floor is below float32's smallest normal number; float64 keeps omega exact)."""
    with torch.no_grad():
        return (-log_w_hat_noisy.double()).mean(dim=0).clamp(low, high)


def normalise_gap(u: torch.Tensor) -> torch.Tensor:
    """``omega_i = u_i / sum_j u_j`` over the sim batch, (B,), same dtype as ``u``."""
    with torch.no_grad():
        return u / u.sum()


def regulariser(
    q_sim: torch.Tensor, q_real: torch.Tensor, omega: torch.Tensor, clip: float = 1000.0
) -> torch.Tensor:
    """``R_k = clip(log sum_i omega_i exp q_sim_k,i - mean q_real_k, -clip, clip)``, (K,).

    q_sim (K, B_s) at the sim batch's stored (s, a); q_real (K, B_r); omega (B_s,) summing to 1.
    The log-sum-exp is taken as ``logsumexp(q + log omega)`` (stable for large Q). Outside the clip
    the gradient is zero.
    """
    log_omega = omega.log().to(q_sim.dtype)
    raw = torch.logsumexp(q_sim + log_omega, dim=1) - q_real.mean(dim=1)
    return raw.clamp(-clip, clip)


def critic_loss(
    q_real: torch.Tensor,
    y_real: torch.Tensor,
    q_sim: torch.Tensor,
    y_sim: torch.Tensor,
    w: torch.Tensor,
    omega: torch.Tensor,
    beta: float,
    regulariser_clip: float = 1000.0,
) -> tuple[torch.Tensor, Metrics]:
    """``L_Q = sum_k (L_real,k + L_sim,k + beta R_k)``.

    q_real (K, B_r), y_real (B_r,), q_sim (K, B_s), y_sim (B_s,), w and omega (B_s,). R is computed
    and logged also when beta = 0 (the naive mix). Metrics: ``loss/critic``, ``h2o/bellman_real``,
    ``h2o/bellman_sim`` and ``h2o/regulariser`` (means over the K critics), ``train/q_real_mean``,
    ``train/q_sim_mean``.
    """
    bellman_real = (q_real - y_real).square().mean(dim=1)
    bellman_sim = (w.to(q_sim.dtype) * (q_sim - y_sim).square()).mean(dim=1)
    reg = regulariser(q_sim, q_real, omega, regulariser_clip)
    loss = (bellman_real + bellman_sim + beta * reg).sum()
    metrics: Metrics = {
        "loss/critic": loss.detach(),
        "h2o/bellman_real": bellman_real.detach().mean(),
        "h2o/bellman_sim": bellman_sim.detach().mean(),
        "h2o/regulariser": reg.detach().mean(),
        "train/q_real_mean": q_real.detach().mean(),
        "train/q_sim_mean": q_sim.detach().mean(),
    }
    return loss, metrics
