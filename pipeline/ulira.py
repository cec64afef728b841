"""U-LiRA in the stages (:mod:`unlearn.evaluation.ulira`): each track's candidates and shadow
models, the shadows a method unlearns, and the metrics a target model gets.

Stage ``ulira_shadows`` trains, per track (``random``, ``class``), ``ulira.shadows``
shadow models on the track's remain set plus their half of the candidates, and as many
retrained shadows on the remain set alone (retrain's own U-LiRA, the reference of every
gap). Each ``unlearn@<method>`` / ``unlearn_class@<method>`` stage then unlearns every
shadow's half with its method (:func:`unlearn_shadows`); ``evaluate`` /
``evaluate_class`` score the targets (:func:`ulira_of`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from unlearn.config import Params
from unlearn.errors import DataError
from unlearn.io import load_tensors, save_tensors
from unlearn_pipeline.common import Prepared

if TYPE_CHECKING:
    import numpy as np
    import torch

log = logging.getLogger(__name__)

SHADOWS = Path("data/ulira/shadows")
SHADOW_ADVERSARIAL = Path("data/adversarial/shadows.pt")  # AMUN's D_A of each random-track shadow
TRACKS = ("random", "class")
_TRACK_SEED = {"random": 0, "class": 1}


@dataclass(frozen=True)
class Candidates:
    """A track's U-LiRA candidates: ``indices`` into the dataset, ``positive`` (the target's
    forget set), ``keep`` (shadows x candidates), the ``remain`` set every shadow trains on
    and the ``test`` split (a shadow's held-out samples are the test samples it did not train on)."""

    indices: np.ndarray
    positive: np.ndarray
    keep: np.ndarray
    remain: np.ndarray
    test: np.ndarray

    def shadow_train(self, s: int) -> np.ndarray:
        import numpy as np

        return np.sort(np.concatenate([self.remain, self.indices[self.keep[s]]]))

    def shadow_forget(self, s: int) -> np.ndarray:
        return self.indices[self.keep[s]]

    def shadow_holdout(self, s: int) -> np.ndarray:
        import numpy as np

        return np.setdiff1d(self.test, self.shadow_forget(s))


def candidates_of(track: str, data: Prepared, params: Params) -> Candidates:
    """The candidates of ``track`` in the default pipeline: random, the forget split and as
    many test samples; class, the forgotten class's train samples and its test samples."""
    if track == "random":
        return make_candidates(data.splits["forget"], data.splits["test"], data.splits["remain"], data.splits["test"],
                               params.ulira.shadows, (params.seed, _TRACK_SEED[track]))
    from unlearn_pipeline.class_track import class_split

    split = class_split(data, params)
    return make_candidates(split["forget"], split["forget_test"], split["remain"], data.splits["test"],
                           params.ulira.shadows, (params.seed, _TRACK_SEED[track]))


def make_candidates(forget: np.ndarray, never_seen: np.ndarray, remain: np.ndarray, test: np.ndarray, shadows: int,
                    seed: tuple[int, ...]) -> Candidates:
    """:class:`Candidates` of a forget set and the samples the target never saw, drawn from ``seed``."""
    from unlearn.evaluation.ulira import candidates, shadow_keep

    indices, positive = candidates(forget, never_seen, seed[0])
    return Candidates(indices, positive, shadow_keep(shadows, len(indices), seed), remain, test)


def shadow_seed(seed: int, track: str, kind: str, s: int) -> int:
    """Weight-init and batch-order seed of shadow ``s`` (distinct from every other model's)."""
    return 20_000 + 1_000 * seed + 100 * _TRACK_SEED[track] + (50 if kind == "retrain" else 0) + s


def shadow_path(track: str, kind: str, s: int) -> Path:
    """Shadow ``s`` of ``track``: ``original`` (weights and candidate logits) or ``retrain`` (logits)."""
    return SHADOWS / track / f"{kind}_{s}.pt"


def unlearned_path(track: str, method: str) -> Path:
    """The candidate logits of every shadow after ``method`` unlearned it."""
    return Path("data/ulira") / track / f"{method}.pt"


def load_shadow_logits(track: str, kind: str, shadows: int) -> torch.Tensor:
    """(S, M, C): shadow logits on the candidates (``kind``: original, retrain or a method's name)."""
    import torch

    if kind in ("original", "retrain"):
        paths = [shadow_path(track, kind, s) for s in range(shadows)]
        missing = [p for p in paths if not p.exists()]
        if missing:
            raise DataError(f"{missing[0]}: file not found; run `dvc repro ulira_shadows`")
        return torch.stack([load_tensors(p)["logits"] for p in paths])
    path = unlearned_path(track, kind)
    if not path.exists():
        raise DataError(f"{path}: file not found; run the stage of method {kind!r}")
    logits = load_tensors(path)["logits"]
    if logits.shape[0] != shadows:
        raise DataError(f"{path}: {logits.shape[0]} shadows, params.yaml has ulira.shadows = {shadows}; re-run it")
    return logits


def unlearn_shadows(method_name: str, cfg, track: str, params: Params, data: Prepared) -> None:
    """Unlearn each shadow's half of the candidates with ``method_name`` (settings ``cfg``) and
    save the shadows' logits on the candidates (:func:`unlearned_path`; an empty tensor when
    ``ulira.shadows`` is 0, so that the stage's outputs exist)."""
    import torch

    if params.ulira.shadows == 0:
        save_tensors(unlearned_path(track, method_name), {"logits": torch.empty(0)})
        return
    from unlearn.unlearning import METHODS

    states = [load_tensors(shadow_path(track, "original", s))["state"] for s in range(params.ulira.shadows)]
    seeds = [shadow_seed(params.seed, track, "unlearn", s) for s in range(params.ulira.shadows)]
    built = load_shadow_adversarial(params.ulira.shadows) if METHODS.get(method_name).needs_adversarial else None
    logits = unlearned_logits(method_name, cfg, candidates_of(track, data, params), states, seeds, params, data, built)
    save_tensors(unlearned_path(track, method_name), {"logits": logits})


def save_shadow_adversarial(params: Params, data: Prepared) -> None:
    """AMUN's D_A of each random-track shadow's forget half (:func:`adversarial_examples`), in
    :data:`SHADOW_ADVERSARIAL`: built once by stage ``adversarial`` rather than by each of
    AMUN's variants (the same bits: the same shadow, the same settings)."""
    import torch

    from unlearn_pipeline.model_store import build_model

    found = candidates_of("random", data, params)
    blob = {}
    for s in range(params.ulira.shadows):
        model = build_model(params, data.meta)
        model.load_state_dict(load_tensors(shadow_path("random", "original", s))["state"])
        blob[str(s)] = vars(adversarial_examples(model, data, torch.as_tensor(found.shadow_forget(s)), params))
    save_tensors(SHADOW_ADVERSARIAL, blob)


def load_shadow_adversarial(shadows: int) -> list:
    """The shadows' D_A that :func:`save_shadow_adversarial` saved."""
    from unlearn.attacks import AdversarialSet

    if not SHADOW_ADVERSARIAL.exists():
        raise DataError(f"{SHADOW_ADVERSARIAL}: file not found; run `dvc repro adversarial`")
    blob = load_tensors(SHADOW_ADVERSARIAL)
    if len(blob) != shadows:
        raise DataError(f"{SHADOW_ADVERSARIAL}: {len(blob)} shadows, params.yaml has ulira.shadows = {shadows}; "
                        f"re-run `dvc repro adversarial`")
    return [AdversarialSet(**blob[str(s)]) for s in range(shadows)]


def unlearned_logits(method_name: str, cfg, found: Candidates, states: list[dict], seeds: list[int], params: Params,
                     data: Prepared, adversarial: list | None = None) -> torch.Tensor:
    """(S, M, C): each shadow (its weights ``states[s]``) after ``method_name`` unlearned its half
    of the candidates (with the generator seed ``seeds[s]``), on the candidates. AMUN's D_A is
    ``adversarial[s]``, else built from each shadow as the ``adversarial`` stage builds it from
    the original."""
    import torch

    from unlearn.evaluation import predict
    from unlearn.unlearning import METHODS, ForgetTask
    from unlearn_pipeline.model_store import build_model

    method = METHODS.get(method_name)
    logits = []
    for s, state in enumerate(states):
        start = time.perf_counter()
        model = build_model(params, data.meta)
        model.load_state_dict(state)
        forget = torch.as_tensor(found.shadow_forget(s))
        shadow_set = None
        if method.needs_adversarial:
            shadow_set = adversarial[s] if adversarial is not None else adversarial_examples(model, data, forget, params)
        task = ForgetTask(data.images, data.labels, forget, torch.as_tensor(found.remain), len(data.meta["classes"]),
                          shadow_set, holdout=torch.as_tensor(found.shadow_holdout(s)))
        method.run(model, task, cfg, torch.Generator().manual_seed(seeds[s]))
        logits.append(predict(model, data.images[torch.as_tensor(found.indices)]))
        log.info("U-LiRA: %s unlearned shadow %d of %d in %.1f s", method_name, s + 1, len(states),
                 time.perf_counter() - start)  # the stage's longest silent part otherwise
    return torch.stack(logits)


def adversarial_examples(model, data: Prepared, forget, params: Params):
    """AMUN's D_A of ``forget`` (an index tensor) from ``model``, as stage ``adversarial`` builds it."""
    from unlearn.attacks import adversarial_set, choose_eps_init
    from unlearn.training import to_float

    cfg = params.adversarial
    x, y = to_float(data.images[forget]), data.labels[forget]
    eps_init = choose_eps_init(model, x, y, cfg, params.seed)
    return adversarial_set(model, x, y, eps_init=eps_init, steps=cfg.steps, max_doublings=cfg.max_doublings,
                           batch_size=cfg.batch_size)


def ulira_of(target_logits: torch.Tensor, kind: str, track: str, data: Prepared, params: Params) -> dict[str, float]:
    """``ulira_auc`` and ``ulira_tpr_at_1fpr`` of a target model (its ``target_logits`` on every
    sample) against the shadows of ``kind`` (original, retrain or a method); {} without shadows."""
    if params.ulira.shadows == 0:
        return {}
    found = candidates_of(track, data, params)
    return score(target_logits, load_shadow_logits(track, kind, params.ulira.shadows), found, data, params)


def score(target_logits: torch.Tensor, shadow_logits: torch.Tensor, found: Candidates, data: Prepared,
          params: Params) -> dict[str, float]:
    """U-LiRA's metrics of a target (logits on every sample) against shadows' candidate logits."""
    import torch

    from unlearn.evaluation.ulira import ulira_metrics, ulira_scores

    idx = torch.as_tensor(found.indices)
    scores = ulira_scores(target_logits[idx], shadow_logits, found.keep, data.labels[idx],
                          fixed_variance=params.ulira.pooled_variance)
    return ulira_metrics(scores, found.positive, seed=params.seed, repeats=params.mia.repeats)
