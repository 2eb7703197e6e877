"""The `beauty-pipeline` command: the synthetic demo end to end, and the shortcut zoo."""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

from dagster import BetaWarning, PreviewWarning

for _category in (UserWarning, BetaWarning, PreviewWarning):  # notices, not problems of the run
    warnings.filterwarnings("ignore", category=_category)

from beauty_pipeline.demo.zoo import WORLDS, ZooSettings  # noqa: E402
from beauty_pipeline.settings import BACKGROUNDS, DEMO_MODELS, HOME_ENV, MODELS  # noqa: E402
from beauty_pipeline.study_run import DemoPlan  # noqa: E402

DAGSTER_YAML = Path(__file__).resolve().parent.parent / "dagster.yaml"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="beauty-pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialize the whole graph on synthetic demo data")
    demo.add_argument("--home", default=os.environ.get(HOME_ENV, "demo-data"),
                      help="data root (default: $BEAUTY_PIPELINE_HOME or ./demo-data)")
    demo.add_argument("--models", nargs="+", default=list(DEMO_MODELS), choices=MODELS,
                      help=f"default: {' '.join(DEMO_MODELS)}")
    demo.add_argument("--backgrounds", nargs="+", default=list(BACKGROUNDS), choices=BACKGROUNDS)
    demo.add_argument("--image-size", type=int, default=DemoPlan.image_size)
    demo.add_argument("--persons", type=int, default=DemoPlan.persons)
    demo.add_argument("--photos-per-person", type=int, default=DemoPlan.photos_per_person)
    demo.add_argument("--ordinary", type=int, default=DemoPlan.ordinary)
    demo.add_argument("--epochs", type=int, default=DemoPlan.epochs)
    demo.add_argument("--backbone-epochs", type=int, default=DemoPlan.backbone_epochs)
    demo.add_argument("--batch-size", type=int, default=DemoPlan.batch_size)
    demo.add_argument("--learning-rate", type=float, default=DemoPlan.learning_rate)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--seeds", type=int, default=DemoPlan.seeds,
                      help="training repeats per partition (mean and spread reported)")
    zoo = sub.add_parser("zoo", help="plant each shortcut family in its own synthetic world, train "
                                     "and audit a small model in each; the audit must name it")
    zoo.add_argument("--home", default=os.environ.get(HOME_ENV, "demo-data"),
                     help="data root; zoo.json is written there")
    zoo.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    for name in ("model", "image_size", "persons", "photos_per_person", "ordinary", "epochs",
                 "batch_size", "learning_rate", "seed"):
        default = getattr(ZooSettings, name)
        zoo.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    return parser.parse_args(argv)


def demo_environment(args: argparse.Namespace, home: Path) -> dict[str, str]:
    """Env vars that make `dagster dev` and the UI defaults match this demo's data."""
    return {
        HOME_ENV: str(home), "DAGSTER_HOME": str(home / "dagster"),
        "BEAUTY_PIPELINE_PROFILE": "demo",
        "BEAUTY_PIPELINE_IMAGE_SIZE": str(args.image_size),
        "BEAUTY_PIPELINE_EPOCHS": str(args.epochs),
        "BEAUTY_PIPELINE_BACKBONE_EPOCHS": str(args.backbone_epochs),
        "BEAUTY_PIPELINE_BATCH_SIZE": str(args.batch_size),
        "BEAUTY_PIPELINE_LEARNING_RATE": str(args.learning_rate),
        "BEAUTY_PIPELINE_DEMO_IMAGE_SIZE": str(args.image_size),
        "BEAUTY_PIPELINE_DEMO_PERSONS": str(args.persons),
        "BEAUTY_PIPELINE_DEMO_PHOTOS_PER_PERSON": str(args.photos_per_person),
        "BEAUTY_PIPELINE_DEMO_ORDINARY": str(args.ordinary),
        "BEAUTY_PIPELINE_DEMO_SEED": str(args.seed),
    }


def _interval(result: dict, name: str, signed: bool = False) -> str:
    value = result.get(name)
    if value is None:
        return ""
    low, high = result.get(f"{name}_ci_low"), result.get(f"{name}_ci_high")
    fmt = "+.2f" if signed else ".2f"
    return f"{value:{fmt}} [{low:{fmt}},{high:{fmt}}]" if low is not None else f"{value:{fmt}}"


def results_table(partitions: dict[str, dict]) -> str:
    """One row per model x background: accuracies and the audit's effects with 95% intervals."""
    columns = (("test acc", "acc_original", False), ("face-only", "acc_face_only", False),
               ("BG-gap", "bg_gap", True), ("quality", "family_quality_drop", True),
               ("geometry", "family_geometry_drop", True), ("colour", "family_colour_drop", True))
    header = f"{'model/background':<28} {'val':>5} " + \
        " ".join(f"{title:>20}" for title, _, _ in columns) + f" {'lift':>5}  verdict"
    lines = [header, "-" * len(header)]
    for name, outputs in partitions.items():
        if "classifier" not in outputs:
            continue
        last = outputs["classifier"]["history"][-1]
        audit = outputs.get("shortcut_audit") or {}
        lift = (outputs.get("gradcam") or {}).get("face_mass_lift")
        lines.append(f"{name:<28} {last['val_accuracy']:>5.2f} " +
                     " ".join(f"{_interval(audit, key, signed):>20}" for _, key, signed in columns)
                     + f" {'' if lift is None else f'{lift:.2f}':>5}  {audit.get('verdict', '')}")
    return "\n".join(lines)


def run_demo(args: argparse.Namespace) -> int:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    home = Path(args.home).expanduser().resolve()
    env = demo_environment(args, home)
    os.environ.update(env)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    if DAGSTER_YAML.exists():  # a source checkout: same instance settings as `dagster dev`
        shutil.copy(DAGSTER_YAML, home / "dagster" / "dagster.yaml")
    env_file = home / "demo.env"
    env_file.write_text("".join(f"export {k}={v}\n" for k, v in env.items()))

    from dagster import DagsterInstance

    from beauty_pipeline.study_run import full_pass

    plan = DemoPlan(home=home, models=tuple(args.models), backgrounds=tuple(args.backgrounds),
                    image_size=args.image_size, persons=args.persons,
                    photos_per_person=args.photos_per_person, ordinary=args.ordinary,
                    epochs=args.epochs, backbone_epochs=args.backbone_epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                    seeds=args.seeds, log_level="WARNING")
    print(f"beauty-pipeline demo: SYNTHETIC faces with a planted background shortcut, "
          f"{len(plan.models)} models x {len(plan.backgrounds)} backgrounds, "
          f"{plan.image_size} px, {plan.epochs} epochs -> {home}")
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        report = full_pass(instance, plan, log=lambda line: print(f"  {line}", flush=True))
    minutes = (time.perf_counter() - started) / 60
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print()
    print(results_table(report.partitions))
    summary = report.partitions.get("study_report") or {}
    print(f"""
finished in {minutes:.1f} min (peak memory {peak_gib:.1f} GiB)
  Dagster storage : {home / 'dagster'}
  MLflow store    : {home / 'mlflow.db'} (artifacts in {home / 'mlartifacts'})
  outputs         : {home / 'outputs'}{f"  (report: {summary['html']})" if 'html' in summary else ''}

Open the Dagster UI on this data:
  . {env_file} && dagster dev -m beauty_pipeline.definitions -h 127.0.0.1 -p 3000
Open the MLflow UI on this data:
  mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'} -h 127.0.0.1 -p 5000""")
    return 0


def run_zoo_command(args: argparse.Namespace) -> int:
    from beauty_pipeline.demo.zoo import detection_matrix, run_zoo

    home = Path(args.home).expanduser().resolve()
    settings = ZooSettings(**{name: getattr(args, name) for name in ZooSettings.__dataclass_fields__})
    print(f"beauty-pipeline zoo: {len(args.worlds)} SYNTHETIC worlds, one planted shortcut family "
          f"each (none = negative control), {settings.model} at {settings.image_size} px -> {home}")
    started = time.perf_counter()
    results = run_zoo(home, args.worlds, settings, log=lambda line: print(f"  {line}", flush=True))
    print()
    print(detection_matrix(results))
    right = sum(r["correct"] for r in results)
    print(f"\n{right}/{len(results)} worlds answered as planted; "
          f"{(time.perf_counter() - started) / 60:.1f} min; details in {home / 'zoo.json'}")
    return 0 if right == len(results) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "demo":
        return run_demo(args)
    if args.command == "zoo":
        return run_zoo_command(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
