"""The shortcut zoo: one synthetic world per planted family (background, quality, geometry, colour,
compression, position, border, noise) plus a clean negative control; a small model is trained
and audited in each, and the audit must name exactly what was planted (`face` for the control).
It is the development set: thresholds are chosen here, never on held-out worlds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.data.schema import conform
from beauty_pipeline.data.split import SplitSettings, build_study_set
from beauty_pipeline.data.variants import VariantSettings, build_variant
from beauty_pipeline.demo.source import face_record
from beauty_pipeline.demo.synthetic import (
    DemoSpec,
    demo_ordinary_faces,
    demo_person_photos,
    person_name,
)
from beauty_pipeline.explain.audit import TrainedModel, class_lifts, gradcam_audit, shortcut_audit
from beauty_pipeline.settings import TrainSettings
from beauty_pipeline.storage import ImageStore, atomic_write_json
from beauty_pipeline.training.checkpoints import save_state
from beauty_pipeline.training.data import split_arrays
from beauty_pipeline.training.loop import seeded, train
from beauty_pipeline.training.models import build_model

# planted family -> how strongly the cue and the face follow the class in that world
WORLDS = {
    "background": dict(planted="background", shortcut=0.97, face_signal=0.75),
    "quality": dict(planted="quality", shortcut=0.97, face_signal=0.75),
    "geometry": dict(planted="geometry", shortcut=0.97, face_signal=0.75),
    "colour": dict(planted="colour", shortcut=0.97, face_signal=0.75),
    "compression": dict(planted="compression", shortcut=0.97, face_signal=0.75),
    "position": dict(planted="position", shortcut=0.97, face_signal=0.75),
    "border": dict(planted="border", shortcut=0.97, face_signal=0.75),
    "noise": dict(planted="noise", shortcut=0.97, face_signal=0.75),
    "none": dict(planted="none", shortcut=0.5, face_signal=0.95),
}


@dataclass(frozen=True)
class ZooSettings:
    """Size of every world and of its model; small enough for 2 CPU cores in minutes."""

    model: str = "resnet18"
    image_size: int = 48
    persons: int = 40
    photos_per_person: int = 6
    ordinary: int = 240
    epochs: int = 8
    batch_size: int = 16
    learning_rate: float = 1e-3
    seed: int = 0


def world_faces(spec: DemoSpec, store: ImageStore) -> pd.DataFrame:
    """Both classes of one world as a face manifest (celebrity persons, ordinary singletons)."""
    rows = []
    for index in range(spec.persons):
        name = person_name(index)
        who, faces = demo_person_photos(spec, name)
        rows += [face_record(store, face, who, f"person-{index:03d}", 1) for face in faces]
    rows += [face_record(store, face, who, f"ordinary-{i:05d}", 0)
             for i, (who, face) in enumerate(demo_ordinary_faces(spec))]
    return conform(pd.DataFrame(rows))


def world_dataset(spec: DemoSpec, store: ImageStore, seed: int) -> pd.DataFrame:
    """The world's study set on its original background, with counterfactual test sets."""
    study = build_study_set(world_faces(spec, store), store, SplitSettings(seed=seed))
    return build_variant(study, "original", store, None, VariantSettings(seed=seed)).manifest


def run_world(name: str, home: Path, settings: ZooSettings) -> dict:
    """Train one model in one world and audit it."""
    spec = DemoSpec(image_size=settings.image_size, persons=settings.persons,
                    photos_per_person=settings.photos_per_person, ordinary=settings.ordinary,
                    seed=settings.seed, **WORLDS[name])
    store = ImageStore(home / "images")
    manifest = world_dataset(spec, store, settings.seed)
    train_settings = TrainSettings(epochs=settings.epochs, batch_size=settings.batch_size,
                                   learning_rate=settings.learning_rate,
                                   image_size=settings.image_size, seed=settings.seed, device="cpu")
    arrays = split_arrays(manifest, store, settings.image_size, home / "cache")
    seeded(settings.seed)
    model = build_model(settings.model)
    history = train(model, arrays["train"].images, arrays["train"].labels, arrays["test"].images,
                    arrays["test"].labels, train_settings, val_images=arrays["val"].images,
                    val_targets=arrays["val"].labels)
    weights = save_state(home / "models" / f"{name}.pt", model.state_dict())
    trained = TrainedModel(settings.model, (str(weights),), settings.image_size)
    cam = gradcam_audit(trained, manifest, store, home / "cache", home / "figures", name,
                        device="cpu", seed=settings.seed)
    audit = shortcut_audit(trained, manifest, store, home / "cache", class_lifts(cam),
                           device="cpu", seed=settings.seed)
    planted = WORLDS[name]["planted"]
    keys = [k for k in audit if k.startswith(("acc_", "bg_gap", "composite_cost", "family_",
                                               "matched_", "face_features_"))]
    return {"world": name, "planted": planted, "named": audit["named_families"],
            "verdict": audit["verdict"], "reasons": audit["verdict_reasons"],
            "test_accuracy": audit["acc_original"], "val_accuracy": history[-1].val_accuracy,
            "intervals": {k: audit[k] for k in keys},
            "face_mass": {k: cam[k] for k in ("face_mass", "face_mass_ci_low", "face_mass_ci_high",
                                              "face_mass_lift", "face_mass_lift_celebrity",
                                              "face_mass_lift_ordinary")},
            "face_evidence": {k: audit[k] for k in audit if k.startswith("face_features_")},
            "probes": audit["probes"], "class_profiles": audit["class_profiles"],
            "correct": planted_correctly(planted, audit["named_families"], audit["verdict"])}


def planted_correctly(planted: str, named: Sequence[str], verdict: str) -> bool:
    """The audit's answer is right: exactly the planted family named, or `face` for none."""
    return verdict == "face" if planted == "none" else list(named) == [planted]


def detection_matrix(results: Sequence[dict]) -> str:
    """Planted (rows) x named (columns), one mark per world, verdict and accuracy beside."""
    header = f"{'planted':<12}" + "".join(f"{f:>12}" for f in FAMILIES) + \
        f"  {'verdict':<22}{'test acc [95% CI]':<22}{'no features / swap c,o':<24}ok"
    lines = [header, "-" * len(header)]
    for r in results:
        marks = "".join(f"{('named' if f in r['named'] else '.'):>12}" for f in FAMILIES)
        acc = r["intervals"]
        face = " / ".join(", ".join(f"{acc[k]:+.2f}" if k in acc else "-" for k in keys) for keys in (
            ("face_features_drop",), ("face_features_swap_drop_celebrity",
                                      "face_features_swap_drop_ordinary")))
        lines.append(f"{r['planted']:<12}{marks}  {r['verdict']:<22}"
                     f"{acc['acc_original']:.3f} [{acc['acc_original_ci_low']:.2f}, "
                     f"{acc['acc_original_ci_high']:.2f}]  {face:<24}"
                     f"{'yes' if r['correct'] else 'NO'}")
    return "\n".join(lines)


def run_zoo(home: Path, worlds: Sequence[str] = tuple(WORLDS), settings: ZooSettings = ZooSettings(),
            log: Callable[[str], None] = print) -> list[dict]:
    """Every world in turn; zoo.json under the data root holds one object per world."""
    home = Path(home)
    results = []
    for name in worlds:
        if name not in WORLDS:
            raise ValueError(f"unknown zoo world {name!r}; expected one of {sorted(WORLDS)}")
        result = run_world(name, home / "zoo", settings)
        results.append(result)
        log(f"{name}: verdict {result['verdict']}, test accuracy {result['test_accuracy']:.3f}")
        atomic_write_json(home / "zoo.json", {"settings": settings.__dict__, "worlds": results})
    return results

