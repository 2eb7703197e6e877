"""Identity bootstrap: right width on a known binomial, wider when photos cluster by person,
paired differences, reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from beauty_pipeline.explain.stats import IdentityBootstrap


def test_interval_matches_the_binomial_for_independent_images():
    rng = np.random.default_rng(0)
    n, p = 600, 0.7
    labels = np.arange(n) % 2
    correct = (rng.random(n) < p).astype(float)
    estimate = IdentityBootstrap([str(i) for i in range(n)], labels, seed=1).mean(correct)
    half = 1.96 * np.sqrt(correct.mean() * (1 - correct.mean()) / n)
    assert estimate.value == pytest.approx(correct.mean())
    assert estimate.high - estimate.low == pytest.approx(2 * half, rel=0.15)
    assert estimate.low < estimate.value < estimate.high


def test_coverage_on_a_known_binomial():
    rng = np.random.default_rng(5)
    hits, trials, p = 0, 120, 0.8
    for t in range(trials):
        correct = (rng.random(100) < p).astype(float)
        est = IdentityBootstrap([str(i) for i in range(100)], np.arange(100) % 2, seed=t,
                                replicates=400).mean(correct)
        hits += est.low <= p <= est.high
    assert 0.88 <= hits / trials <= 0.99  # nominal 95%


def test_clustered_photos_widen_the_interval():
    rng = np.random.default_rng(3)
    persons = 40
    per_person = (rng.random(persons) < 0.7).astype(float)
    correct = np.repeat(per_person, 10)  # ten photos of each person, all right or all wrong
    labels = np.repeat(np.arange(persons) % 2, 10)
    by_identity = IdentityBootstrap(np.repeat(np.arange(persons), 10).astype(str), labels).mean(correct)
    by_image = IdentityBootstrap(np.arange(persons * 10).astype(str), labels).mean(correct)
    assert (by_identity.high - by_identity.low) > 2.5 * (by_image.high - by_image.low)


def test_paired_difference_and_reproducibility():
    labels = np.arange(200) % 2
    ids = np.arange(200).astype(str)
    a = np.ones(200)
    b = np.ones(200)
    b[:20] = 0.0  # the probe breaks 10% of the images
    boot = IdentityBootstrap(ids, labels, seed=4)
    diff = boot.difference(a, b)
    assert diff.value == pytest.approx(0.1)
    assert 0.05 < diff.low < 0.1 < diff.high < 0.15
    same = boot.difference(a, a)
    assert same.value == same.low == same.high == 0.0
    again = IdentityBootstrap(ids, labels, seed=4).difference(a, b)
    assert (again.low, again.high) == (diff.low, diff.high)


def test_class_strata_are_kept_and_bad_input_refused():
    labels = np.array([0] * 5 + [1] * 5)
    boot = IdentityBootstrap([str(i) for i in range(10)], labels, replicates=50)
    assert (boot.weights[:, :5].sum(axis=1) == 5).all() and (boot.weights[:, 5:].sum(axis=1) == 5).all()
    with pytest.raises(ValueError):
        IdentityBootstrap([], [])
