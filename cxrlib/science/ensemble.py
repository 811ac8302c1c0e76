"""Ensembles (report section 7): average voting, weights from the report's genetic algorithm or from
differential evolution, all fitted on validation only (their intervals: science.stats)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlib.science.calibration import log_softmax, softmax
from cxrlib.science.choice import choose
from cxrlib.science.metrics import present_classes

# The ensembles, by the key their results are saved under (their names: cxrlib.present.labels.ENSEMBLE_NAMES).
METHODS = ("average", "ga", "differential_evolution")
# Validation folds for the out-of-fold predictions of the fitted ensembles (whole patients per fold).
FOLDS = 5


def weighted(probs: list, weights=None) -> np.ndarray:
    """Weighted average of the models' probabilities (equal weights: average voting)."""
    stack = np.stack([np.asarray(p, float) for p in probs])
    weights = np.full(len(stack), 1 / len(stack)) if weights is None else np.asarray(weights, float)
    return np.tensordot(weights / weights.sum(), stack, axes=1)


def weighted_log_probs(logits: list, weights=None) -> np.ndarray:
    """Log of the weighted average of the models' probabilities, from their logits in float64 and never
    clipped: the ensemble's own logits, for temperature scaling."""
    from scipy.special import logsumexp

    stack = np.stack([log_softmax(z) for z in logits])
    weights = np.full(len(stack), 1 / len(stack)) if weights is None else np.asarray(weights, float)
    return logsumexp(stack, axis=0, b=(weights / weights.sum())[:, None, None])


def fast_macro_f1(y_true, y_pred) -> float:
    """metrics.macro_f1 (present classes, F1 0 where undefined) in plain numpy: the fitness runs thousands of times."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    present = present_classes(y_true)
    if not present:
        return float("nan")
    scores = [2 * np.sum((y_true == k) & (y_pred == k)) / (np.sum(y_pred == k) + np.sum(y_true == k)) for k in present]
    return float(np.mean(scores))


def fitness(weights, probs: list, y_true) -> float:
    """Macro F1 of the weighted ensemble: the report's fitness, robust to class imbalance."""
    return fast_macro_f1(y_true, weighted(probs, weights).argmax(axis=1))


def normalise(chromosome: np.ndarray) -> np.ndarray:
    """Genes sum to 1 (weights are shares); an all-zero chromosome becomes uniform."""
    total = chromosome.sum()
    return chromosome / total if total > 0 else np.full(len(chromosome), 1 / len(chromosome))


@dataclass
class GAResult:
    """The best weights, their fitness, and the best fitness of every generation."""

    weights: np.ndarray
    fitness: float
    history: list = field(default_factory=list)
    seed: int = 0


def genetic_weights(probs: list, y_true, *, population: int = 40, generations: int = 60, crossover: float = 0.9,
                    mutation: float = 0.2, crossover_genes: float = 0.5, tournament: int = 3,
                    elitism: float = 0.1, seed: int = 0) -> GAResult:
    """The report's GA: one real gene per model, normalised chromosomes, k-tournament selection,
    average crossover on a share of the genes, single-gene uniform mutation, elitism; fitness macro F1."""
    rng = np.random.default_rng(seed)
    n = len(probs)
    pop = np.array([normalise(rng.random(n)) for _ in range(population)])
    scores = np.array([fitness(c, probs, y_true) for c in pop])
    history = [float(scores.max())]
    elite = max(1, int(round(elitism * population)))
    for _ in range(generations):
        children = [pop[i].copy() for i in np.argsort(-scores)[:elite]]
        while len(children) < population:
            mother, father = (pop[_tournament(scores, tournament, rng)] for _ in range(2))
            child = mother.copy()
            if rng.random() < crossover:
                genes = rng.random(n) < crossover_genes
                child[genes] = (mother[genes] + father[genes]) / 2
            if rng.random() < mutation:
                child[rng.integers(n)] = rng.random()
            children.append(normalise(child))
        pop = np.array(children)
        scores = np.array([fitness(c, probs, y_true) for c in pop])
        history.append(float(scores.max()))
    best = int(np.argmax(scores))
    return GAResult(pop[best], float(scores[best]), history, seed)


def _tournament(scores, k: int, rng) -> int:
    """Index of the fittest of k individuals drawn at random."""
    contenders = rng.choice(len(scores), size=min(k, len(scores)), replace=False)
    return int(contenders[np.argmax(scores[contenders])])


def genetic_restarts(probs: list, y_true, seeds=(0, 1, 2), **options) -> tuple:
    """Run the GA from several random populations; keep the best (and return every run)."""
    results = [genetic_weights(probs, y_true, seed=s, **options) for s in seeds]
    return max(results, key=lambda r: r.fitness), results


def evolution_weights(probs: list, y_true, seed: int = 0, maxiter: int = 60) -> np.ndarray:
    """scipy's differential evolution on the same fitness, as an independent check of the GA."""
    from scipy.optimize import differential_evolution

    found = differential_evolution(lambda w: -fitness(normalise(np.asarray(w)), probs, y_true),
                                   bounds=[(0, 1)] * len(probs), seed=seed, maxiter=maxiter, polish=False, tol=1e-6)
    return normalise(np.asarray(found.x))


def patient_folds(patients, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """Fold of each row, whole patients per fold (a patient's images are correlated), patients shuffled by seed."""
    patients = np.asarray(patients)
    unique = np.unique(patients)
    folds = min(folds, len(unique))
    if folds < 2:
        raise ValueError("out-of-fold predictions need validation images of at least two patients")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold_of = dict(zip(unique[order], np.arange(len(unique)) % folds))
    return np.array([fold_of[p] for p in patients])


def best_candidate(candidates: dict, y_true, rows) -> str:
    """The candidate (name -> logits) with the highest macro F1 on these rows; the first of equals, so the
    caller's order is its preference."""
    return choose({name: fast_macro_f1(y_true[rows], np.asarray(logits)[rows].argmax(1))
                   for name, logits in candidates.items()})


def out_of_fold(fit, candidates: list, y_true, fold: np.ndarray) -> np.ndarray:
    """Each row's ensemble log-probabilities with every choice made on the other folds only: each member's
    candidate (name -> logits, chosen as the validation choice chooses) and the weights fit(probs, labels).
    Validation predictions no choice saw, so their score is not flattered by picking members on the same rows."""
    y_true = np.asarray(y_true, int)
    out = np.empty(np.shape(next(iter(candidates[0].values()))))
    for k in np.unique(fold):
        held = fold == k
        members = [np.asarray(options[best_candidate(options, y_true, ~held)]) for options in candidates]
        weights = fit([softmax(z[~held]) for z in members], y_true[~held])
        out[held] = weighted_log_probs([z[held] for z in members], weights)
    return out


@dataclass
class ValidationFit:
    """Everything the ensembles fit, all on validation: weights (model x method key), every GA restart on the
    whole validation set, and each method's out-of-fold validation log-probabilities."""

    weights: pd.DataFrame
    restarts: list
    val_log_probs: dict


def weight_fitters(seed: int = 0, restarts: int = 3, de_maxiter: int = 60, **ga_options) -> dict:
    """Method name -> fit(probs, labels) -> weights: uniform, the GA with restarts, differential evolution."""
    seeds = range(seed, seed + restarts)
    return {"average": lambda probs, y: np.full(len(probs), 1 / len(probs)),
            "ga": lambda probs, y: genetic_restarts(probs, y, seeds=seeds, **ga_options)[0].weights,
            "differential_evolution": lambda probs, y: evolution_weights(probs, y, seed=seed, maxiter=de_maxiter)}


def fit_on_validation(val_logits: dict, y_val, patients, *, candidates: dict | None = None, seed: int = 0,
                      restarts: int = 3, folds: int = FOLDS, de_maxiter: int = 60, **ga_options) -> ValidationFit:
    """Every ensemble's weights from the validation set alone (val_logits: member -> logits), and out-of-fold
    validation predictions, so the GA and DE ensembles compete in the validation choice like any model.

    candidates: member -> {name: logits} that member was chosen from on validation (default: itself alone);
    each fold chooses again, on the other folds."""
    logits, y_val = list(val_logits.values()), np.asarray(y_val, int)
    candidates = candidates or {member: {member: z} for member, z in val_logits.items()}
    probs = [softmax(z) for z in logits]
    fitters = weight_fitters(seed, restarts, de_maxiter, **ga_options)
    best, every = genetic_restarts(probs, y_val, seeds=range(seed, seed + restarts), **ga_options)
    weights = {"ga": best.weights, "differential_evolution": fitters["differential_evolution"](probs, y_val),
               "average": fitters["average"](probs, y_val)}
    fold = patient_folds(patients, folds, seed)
    val = {key: out_of_fold(fit, [candidates[m] for m in val_logits], y_val, fold) for key, fit in fitters.items()}
    return ValidationFit(pd.DataFrame(weights, index=list(val_logits)), every, val)  # columns: ga, DE, average


def combine(fitted: ValidationFit, logits: dict) -> dict:
    """Method name -> the ensemble's log-probabilities on another split (logits: model -> logits)."""
    members = [logits[name] for name in fitted.weights.index]
    return {key: weighted_log_probs(members, fitted.weights[key].to_numpy()) for key in METHODS}


def prediction_frames(fitted: ValidationFit, test_logits: dict, val_rows: pd.DataFrame,
                      test_rows: pd.DataFrame) -> dict:
    """Method name -> {"val": out-of-fold validation predictions, "test": test predictions}, as the run folder
    saves them (rows: frames with the split's 'Image Index' and 'label', in the order of the logits)."""
    from cxrlib.core.frames import predictions_frame

    def frame(rows, log_probs):
        return predictions_frame(rows["Image Index"], rows["label"], softmax(log_probs), log_probs)

    test = combine(fitted, test_logits)
    return {key: {"val": frame(val_rows, fitted.val_log_probs[key]), "test": frame(test_rows, test[key])}
            for key in METHODS}
