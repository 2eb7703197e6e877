"""95% bootstrap intervals that resample identities, not images (photos of one person are not
independent), stratified by class so every replicate keeps both classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95
REPLICATES = 2000


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile interval."""

    value: float
    low: float
    high: float

    def as_metrics(self, name: str) -> dict[str, float]:
        return {name: self.value, f"{name}_ci_low": self.low, f"{name}_ci_high": self.high}

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}


class IdentityBootstrap:
    """Replicate weights over identities: each replicate redraws every class's identities."""

    def __init__(self, identities: Sequence[str], labels: Sequence[int], seed: int = 0,
                 replicates: int = REPLICATES, level: float = LEVEL):
        identities, labels = np.asarray(identities).astype(str), np.asarray(labels)
        if len(identities) != len(labels) or len(labels) == 0:
            raise ValueError("identities and labels must be non-empty and of equal length")
        keys = np.char.add(np.char.add(labels.astype(str), "\x1f"), identities)
        unique, self.group = np.unique(keys, return_inverse=True)
        self.n_groups = len(unique)
        group_label = np.empty(self.n_groups, dtype=labels.dtype)
        group_label[self.group] = labels
        rng = np.random.default_rng(seed)
        self.weights = np.zeros((replicates, self.n_groups))
        for label in np.unique(group_label):
            members = np.flatnonzero(group_label == label)
            share = np.full(len(members), 1.0 / len(members))
            self.weights[:, members] = rng.multinomial(len(members), share, size=replicates)
        self.tail = (1 - level) / 2
        self.labels = labels

    def _sums(self, values: np.ndarray, select: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(values, dtype=np.float64)
        keep = np.isfinite(values) if select is None else np.isfinite(values) & select
        sums = np.bincount(self.group[keep], values[keep], minlength=self.n_groups)
        counts = np.bincount(self.group[keep], minlength=self.n_groups).astype(np.float64)
        return sums, counts

    def mean(self, values: np.ndarray, select: np.ndarray | None = None) -> Estimate:
        """Mean of per-image values (e.g. 0/1 correctness) with its interval; NaNs are skipped."""
        sums, counts = self._sums(values, select)
        if counts.sum() == 0:
            return Estimate(float("nan"), float("nan"), float("nan"))
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = (self.weights @ sums) / (self.weights @ counts)
        return self._estimate(sums.sum() / counts.sum(), replicates)

    def weighted_mean(self, values: np.ndarray, weights: np.ndarray) -> Estimate:
        """Weighted mean (e.g. reweighted to a common stratum mix; weights held fixed across
        replicates) with its interval; NaN values and zero weights are skipped."""
        values, weights = np.asarray(values, dtype=np.float64), np.asarray(weights, np.float64)
        keep = np.isfinite(values) & (weights > 0)
        sums = np.bincount(self.group[keep], values[keep] * weights[keep], minlength=self.n_groups)
        totals = np.bincount(self.group[keep], weights[keep], minlength=self.n_groups)
        if totals.sum() == 0:
            return Estimate(float("nan"), float("nan"), float("nan"))
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = (self.weights @ sums) / (self.weights @ totals)
        return self._estimate(sums.sum() / totals.sum(), replicates)

    def difference(self, a: np.ndarray, b: np.ndarray) -> Estimate:
        """mean(a) - mean(b) on the same images, paired within every replicate."""
        sums_a, counts_a = self._sums(a, None)
        sums_b, counts_b = self._sums(b, None)
        if counts_a.sum() == 0 or counts_b.sum() == 0:
            return Estimate(float("nan"), float("nan"), float("nan"))
        with np.errstate(invalid="ignore", divide="ignore"):
            replicates = (self.weights @ sums_a) / (self.weights @ counts_a) - \
                (self.weights @ sums_b) / (self.weights @ counts_b)
        return self._estimate(sums_a.sum() / counts_a.sum() - sums_b.sum() / counts_b.sum(),
                              replicates)

    def _estimate(self, value: float, replicates: np.ndarray) -> Estimate:
        replicates = replicates[np.isfinite(replicates)]
        if not len(replicates):
            return Estimate(float(value), float("nan"), float("nan"))
        low, high = np.quantile(replicates, [self.tail, 1 - self.tail])
        return Estimate(float(value), float(low), float(high))
