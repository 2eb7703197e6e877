"""The shortcut zoo: one synthetic world per planted family (background, quality, geometry, colour,
compression, position, border, noise) plus a clean negative control; a small model is trained
and audited in each, and the audit must name exactly what was planted (`face` for the control).
It is the development set: thresholds are chosen here, never on held-out worlds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from beauty_pipeline.data.families import FAMILIES
from beauty_pipeline.data.schema import conform
from beauty_pipeline.data.split import SplitSettings, build_study_set
from beauty_pipeline.data.variants import VariantSettings, build_variant
from beauty_pipeline.demo.source import face_record
from beauty_pipeline.demo.synthetic import (
    RENDERERS,
    DemoFace,
    DemoSpec,
    demo_ordinary_faces,
    demo_person_photos,
    person_name,
)
from beauty_pipeline.explain.audit import (
    FACE_METRIC_PREFIXES,
    TrainedModel,
    class_lifts,
    gradcam_audit,
    shortcut_audit,
)
from beauty_pipeline.explain.transfer import (
    apply_to_audit,
    score_transfer,
    score_transfer_controls,
    transfer_control_metrics,
    transfer_metrics,
)
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
    # source worlds (explain/transfer.py): every family drawn independently of the class; the
    # classes come from two photo pipelines (ordinary, celebrity), and a transfer set of new
    # celebrities from a third, no harder to see than the study's photos (press), must expose a
    # model that learned the pipeline; the clean world's transfer set (webcam) is softer than
    # any of its photos, so its fall is image difficulty, not the source (the transfer control)
    "source": dict(planted="none", shortcut=0.5, face_signal=0.75, renderers=("phone", "studio"),
                   transfer="press", expected="source"),
    "none_transfer": dict(planted="none", shortcut=0.5, face_signal=0.95, transfer="webcam"),
}
WORLD_EXTRAS = ("renderers", "transfer", "expected")  # world keys that are not DemoSpec's
TRANSFER_PERSONS = 12


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


def rendered(face: DemoFace, renderer: str | None, rng: np.random.Generator) -> DemoFace:
    """The photo through a renderer's pipeline (RENDERERS); masks and box unchanged."""
    if renderer is None:
        return face
    return replace(face, image=RENDERERS[renderer](face.image, rng))


def world_faces(spec: DemoSpec, store: ImageStore,
                renderers: tuple[str, str] | None = None) -> pd.DataFrame:
    """Both classes of one world as a face manifest (celebrity persons, ordinary singletons);
    with renderers (ordinary, celebrity) each class's photos through its own pipeline."""
    ordinary, celebrity = renderers or (None, None)
    rng = np.random.default_rng(spec.seed + 104729)
    rows = []
    for index in range(spec.persons):
        name = person_name(index)
        who, faces = demo_person_photos(spec, name)
        rows += [face_record(store, rendered(face, celebrity, rng), who, f"person-{index:03d}", 1)
                 for face in faces]
    rows += [face_record(store, rendered(face, ordinary, rng), who, f"ordinary-{i:05d}", 0)
             for i, (who, face) in enumerate(demo_ordinary_faces(spec))]
    return conform(pd.DataFrame(rows))


def transfer_faces(spec: DemoSpec, store: ImageStore, renderer: str,
                   persons: int = TRANSFER_PERSONS) -> pd.DataFrame:
    """New celebrities of the same world (names after the study's), through another renderer."""
    rng = np.random.default_rng(spec.seed + 130363)
    rows = []
    for index in range(spec.persons, spec.persons + persons):
        who, faces = demo_person_photos(spec, person_name(index))
        rows += [face_record(store, rendered(face, renderer, rng), who, f"transfer-{index:03d}", 1)
                 for face in faces]
    return conform(pd.DataFrame(rows))


def world_dataset(spec: DemoSpec, store: ImageStore, seed: int,
                  renderers: tuple[str, str] | None = None) -> pd.DataFrame:
    """The world's study set on its original background, with counterfactual test sets."""
    study = build_study_set(world_faces(spec, store, renderers), store, SplitSettings(seed=seed))
    return build_variant(study, "original", store, None, VariantSettings(seed=seed)).manifest


def run_world(name: str, home: Path, settings: ZooSettings) -> dict:
    """Train one model in one world and audit it."""
    world = WORLDS[name]
    spec = DemoSpec(image_size=settings.image_size, persons=settings.persons,
                    photos_per_person=settings.photos_per_person, ordinary=settings.ordinary,
                    seed=settings.seed, **{k: v for k, v in world.items() if k not in WORLD_EXTRAS})
    store = ImageStore(home / "images")
    manifest = world_dataset(spec, store, settings.seed, world.get("renderers"))
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
    if world.get("transfer"):
        faces = transfer_faces(spec, store, world["transfer"])
        estimates, images, identities = score_transfer(
            trained, faces, faces["image_key"].tolist(), store, home / "cache", device="cpu",
            seed=settings.seed)
        controls = score_transfer_controls(trained, manifest, faces, faces["image_key"].tolist(),
                                           store, home / "cache", device="cpu", seed=settings.seed)
        audit = {**apply_to_audit(audit, estimates, controls=controls),
                 **transfer_metrics(estimates, images, identities),
                 **transfer_control_metrics(controls)}
    planted = world.get("expected", world["planted"])
    keys = [k for k in audit if k.startswith(("acc_", "bg_gap", "composite_cost", "family_",
                                               "matched_", "transfer_", *FACE_METRIC_PREFIXES))]
    return {"world": name, "planted": planted, "named": audit["named_families"],
            "verdict": audit["verdict"], "reasons": audit["verdict_reasons"],
            "test_accuracy": audit["acc_original"], "val_accuracy": history[-1].val_accuracy,
            "intervals": {k: audit[k] for k in keys},
            "face_mass": {k: cam[k] for k in ("face_mass", "face_mass_ci_low", "face_mass_ci_high",
                                              "face_mass_lift", "face_mass_lift_celebrity",
                                              "face_mass_lift_ordinary")},
            "face_evidence": {k: audit[k] for k in audit if k.startswith(FACE_METRIC_PREFIXES)},
            "probes": audit["probes"], "class_profiles": audit["class_profiles"],
            "correct": planted_correctly(planted, audit["named_families"], audit["verdict"])}


def planted_correctly(planted: str, named: Sequence[str], verdict: str) -> bool:
    """The audit's answer is right: exactly the planted family named, or `face` for none;
    `source` named for a source world (a pipeline may also show as quality or colour)."""
    if planted == "source":
        return "source" in named
    return verdict == "face" if planted == "none" else list(named) == [planted]


def detection_matrix(results: Sequence[dict]) -> str:
    """Planted (rows) x named (columns), one mark per world, verdict and accuracy beside."""
    columns = (*FAMILIES, "source")
    header = f"{'planted':<12}" + "".join(f"{f:>12}" for f in columns) + \
        f"  {'verdict':<22}{'test acc [95% CI]':<22}{'no features / swap c,o':<24}ok"
    lines = [header, "-" * len(header)]
    for r in results:
        marks = "".join(f"{('named' if f in r['named'] else '.'):>12}" for f in columns)
        acc = r["intervals"]
        face = " / ".join(", ".join(f"{acc[k]:+.2f}" if k in acc else "-" for k in keys) for keys in (
            ("face_features_drop",), ("face_swap_drop_celebrity", "face_swap_drop_ordinary")))
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

