"""Ensembles (report section 7): average voting, weights from the report's genetic algorithm or from
differential evolution, and patient-clustered bootstrap confidence intervals."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cxrlib.metrics import accuracy, macro_f1


def weighted(probs: list, weights=None) -> np.ndarray:
    """Weighted average of the models' probabilities (equal weights: average voting)."""
    stack = np.stack([np.asarray(p, float) for p in probs])
    weights = np.full(len(stack), 1 / len(stack)) if weights is None else np.asarray(weights, float)
    return np.tensordot(weights / weights.sum(), stack, axes=1)


def fitness(weights, probs: list, y_true) -> float:
    """Macro F1 of the weighted ensemble: the report's fitness, robust to class imbalance."""
    return macro_f1(y_true, weighted(probs, weights).argmax(axis=1))


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


def bootstrap_ci(y_true, probs, patients, n: int = 1000, seed: int = 0, level: float = 0.95) -> pd.DataFrame:
    """Confidence intervals of accuracy and macro F1, resampling whole patients (their images are correlated).

    'resamples missing a class' counts the resamples that lack a class of the full set: their macro F1
    averages over fewer classes (metrics.present_classes), so a large count makes the interval less comparable.
    """
    y_true, pred, patients = np.asarray(y_true), np.asarray(probs).argmax(axis=1), np.asarray(patients)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(patients == p) for p in np.unique(patients)]
    classes = set(np.unique(y_true))
    samples, missed = {"Accuracy": [], "F1-macro": []}, 0
    for _ in range(n):
        index = np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        samples["Accuracy"].append(accuracy(y_true[index], pred[index]))
        samples["F1-macro"].append(macro_f1(y_true[index], pred[index]))
        missed += set(np.unique(y_true[index])) != classes
    tail = (1 - level) / 2 * 100
    return pd.DataFrame({name: {"estimate": (accuracy if name == "Accuracy" else macro_f1)(y_true, pred),
                                "low": np.percentile(values, tail), "high": np.percentile(values, 100 - tail),
                                "resamples missing a class": missed, "resamples": n}
                         for name, values in samples.items()}).T


def plot_weights(weights: pd.DataFrame, title: str):
    """Weights per model, one group of bars per method."""
    ax = weights.plot.bar(figsize=(8, 3.8), rot=15)
    ax.set(title=title, xlabel="model", ylabel="weight")
    ax.figure.tight_layout()
    return ax.figure


def plot_ga_history(results: list, title: str = "Genetic algorithm: best macro F1 per generation"):
    """Convergence of every restart."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for result in results:
        ax.plot(result.history, label=f"seed {result.seed}")
    ax.set(title=title, xlabel="generation", ylabel="best macro F1 (validation)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside the data (the book's figure style)
    fig.tight_layout()
    return fig


def plot_intervals(table: pd.DataFrame, metric: str, title: str):
    """Point estimates with their bootstrap intervals, one row per model."""
    import matplotlib.pyplot as plt

    rows = table.xs(metric, level=1)
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.5))
    ax.errorbar(rows["estimate"], range(len(rows)), xerr=[rows["estimate"] - rows["low"], rows["high"] - rows["estimate"]],
                fmt="o", capsize=4)
    ax.set_yticks(range(len(rows)), rows.index)
    ax.set(title=title, xlabel=metric, ylabel="model")
    fig.tight_layout()
    return fig
