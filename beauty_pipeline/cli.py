"""The `beauty-pipeline` command: the real study, the synthetic demo, and the shortcut zoo."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
import warnings
from pathlib import Path

from dagster import BetaWarning, PreviewWarning

for _category in (UserWarning, BetaWarning, PreviewWarning):  # notices, not problems of the run
    warnings.filterwarnings("ignore", category=_category)

from beauty_pipeline.console import (  # noqa: E402
    ProgressView,
    closing_summary,
    log_traceback,
    prepare_home,
    run_log,
    stderr_into,
)
from beauty_pipeline.demo.zoo import WORLDS, ZooSettings  # noqa: E402
from beauty_pipeline.resources.face_stage import YUNET_ENV  # noqa: E402
from beauty_pipeline.settings import (  # noqa: E402
    BACKGROUNDS,
    DEMO_MODELS,
    DEVICE_ENV,
    DEVICE_HELP,
    FAIRFACE_CHECKPOINT_ENV,
    FAIRFACE_DIR_ENV,
    HOME_ENV,
    MODELS,
    checked_device,
    default_mlflow_uri,
)
from beauty_pipeline.study_options import add_study_flags, study_options  # noqa: E402
from beauty_pipeline.study_run import DemoPlan  # noqa: E402


def counted(number: int, noun: str) -> str:
    """'1 model', '3 models': the run's header reads as a sentence."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


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
    demo.add_argument("--device", default="auto", help=DEVICE_HELP)
    demo.add_argument("--seeds", type=int, default=DemoPlan.seeds,
                      help="training repeats per partition (mean and spread reported)")
    study = sub.add_parser("study", help="the real study: a ranking, photo folders (or Bing) and "
                                         "FairFace through the whole graph; a rerun continues")
    add_study_flags(study)
    zoo = sub.add_parser("zoo", help="plant each shortcut family in its own synthetic world, train "
                                     "and audit a small model in each; the audit must name it")
    zoo.add_argument("--home", default=os.environ.get(HOME_ENV, "demo-data"),
                     help="data root; zoo.json is written there")
    zoo.add_argument("--worlds", nargs="+", default=list(WORLDS), choices=list(WORLDS))
    for name in ("model", "image_size", "persons", "photos_per_person", "ordinary", "epochs",
                 "batch_size", "learning_rate", "seed"):
        default = getattr(ZooSettings, name)
        zoo.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    zoo.add_argument("--held-out", action="store_true",
                     help="run the held-out known-answer worlds instead (nothing is tuned on "
                          "them); heldout.json is written to --home")
    zoo.add_argument("--held-out-worlds", nargs="+", default=None,
                     help="with --held-out: which worlds (default: all)")
    zoo.add_argument("--seeds", type=int, default=3, help="with --held-out: training seeds per world")
    models = sub.add_parser("models", help="registered classifiers with their audit verdict, "
                                           "newest first (read from MLflow)")
    models.add_argument("--home", default=os.environ.get(HOME_ENV, "demo-data"),
                        help="data root whose mlflow.db to read (default: $BEAUTY_PIPELINE_HOME "
                             "or ./demo-data)")
    models.add_argument("--tracking-uri", default="",
                        help="MLflow tracking URI (default: $BEAUTY_PIPELINE_MLFLOW_URI or "
                             "sqlite:///<home>/mlflow.db)")
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
        DEVICE_ENV: args.device,
    }


def run_demo(args: argparse.Namespace) -> int:
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    home = Path(args.home).expanduser().resolve()
    from beauty_pipeline.errors import PipelineError

    try:
        checked_device(args.device)
    except PipelineError as error:
        print(f"beauty-pipeline demo: {error}", file=sys.stderr)
        return 2
    env = demo_environment(args, home)
    os.environ.update(env)
    env_file = prepare_home(home, env, "demo")

    from dagster import DagsterInstance

    from beauty_pipeline.study_run import full_pass

    plan = DemoPlan(home=home, models=tuple(args.models), backgrounds=tuple(args.backgrounds),
                    image_size=args.image_size, persons=args.persons,
                    photos_per_person=args.photos_per_person, ordinary=args.ordinary,
                    epochs=args.epochs, backbone_epochs=args.backbone_epochs,
                    batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                    seeds=args.seeds, log_level="WARNING")
    print(f"beauty-pipeline demo: SYNTHETIC faces with a planted background shortcut, "
          f"{counted(len(plan.models), 'model')} x {counted(len(plan.backgrounds), 'background')}, "
          f"{plan.image_size} px, {counted(plan.epochs, 'epoch')} -> {home}")
    started = time.perf_counter()
    with DagsterInstance.get() as instance:
        report = full_pass(instance, plan, log=lambda line: print(f"  {line}", flush=True))
    minutes = (time.perf_counter() - started) / 60
    print(closing_summary(home, env_file, report, minutes))
    return 0


def study_environment(plan) -> dict[str, str]:
    """Env vars that make `dagster dev` and the UI's launchpad defaults match this study."""
    o = plan.options
    env = {HOME_ENV: str(plan.home), "DAGSTER_HOME": str(plan.home / "dagster"),
           "BEAUTY_PIPELINE_PROFILE": "study", "BEAUTY_PIPELINE_RANKING": o.ranking,
           "BEAUTY_PIPELINE_PHOTO_SOURCE": "bing" if o.bing else "local",
           "BEAUTY_PIPELINE_LOCAL_PHOTOS": o.photos, FAIRFACE_DIR_ENV: o.fairface,
           FAIRFACE_CHECKPOINT_ENV: o.fairface_checkpoint, YUNET_ENV: o.detector_model,
           DEVICE_ENV: o.device}
    for name in ("image_size", "epochs", "backbone_epochs", "batch_size", "learning_rate", "seeds"):
        env[f"BEAUTY_PIPELINE_{name.upper()}"] = str(getattr(o, name))
    return {k: shlex.quote(v) for k, v in env.items() if v}


def run_study(args: argparse.Namespace) -> int:
    from dagster import DagsterExecutionInterruptedError, DagsterInstance

    from beauty_pipeline.errors import PipelineError
    from beauty_pipeline.progress import listening
    from beauty_pipeline.resume import StepLedger
    from beauty_pipeline.study_run import StudyPlan, full_pass

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    try:
        plan = StudyPlan(study_options(args))
    except PipelineError as error:
        print(f"beauty-pipeline study: {error}", file=sys.stderr)
        return 2
    home, o = plan.home, plan.options
    env = study_environment(plan)
    os.environ.update({k: shlex.split(v)[0] for k, v in env.items()})
    env_file = prepare_home(home, env, "study")
    print(f"beauty-pipeline study: {'Bing' if o.bing else o.photos} vs FairFace {o.fairface}, "
          f"{counted(len(o.models), 'model')} x {counted(len(o.backgrounds), 'background')}, "
          f"{o.image_size} px, {counted(o.epochs, 'epoch')}, {counted(o.seeds, 'seed')} -> {home}")
    started = time.perf_counter()
    log_file = run_log(home, "study")  # Dagster's log and any traceback go here, not on screen
    try:
        with DagsterInstance.get() as instance, ProgressView(sys.stderr) as view, \
                listening(view), stderr_into(log_file):
            report = full_pass(instance, plan, log=lambda line: print(f"  {line}", flush=True),
                               ledger=StepLedger(home / "study-steps.json"))
    except (KeyboardInterrupt, DagsterExecutionInterruptedError):
        print("\ninterrupted: finished steps and epochs are kept; run the same command again to "
              f"continue (log: {log_file})", file=sys.stderr)
        return 130
    except PipelineError as error:
        log_traceback(log_file, error)
        print(f"beauty-pipeline study: {error}\n  full log: {log_file}", file=sys.stderr)
        return 1
    except Exception as error:  # a fault, not a bad input: one line here, the traceback logged
        log_traceback(log_file, error)
        print(f"beauty-pipeline study: stopped by {type(error).__name__}: "
              f"{str(error).splitlines()[0] if str(error) else ''}\n"
              f"  full log with the traceback: {log_file}", file=sys.stderr)
        return 1
    print(closing_summary(home, env_file, report, (time.perf_counter() - started) / 60))
    print(f"  run log         : {log_file}")
    return 0


def run_zoo_command(args: argparse.Namespace) -> int:
    from beauty_pipeline.demo.zoo import detection_matrix, run_zoo

    home = Path(args.home).expanduser().resolve()
    settings = ZooSettings(**{name: getattr(args, name) for name in ZooSettings.__dataclass_fields__})
    if args.held_out:
        return run_heldout_command(args, home, settings)
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


def run_models(args: argparse.Namespace) -> int:
    from beauty_pipeline.model_registry import list_registered

    home = Path(args.home).expanduser().resolve()
    uri = args.tracking_uri or default_mlflow_uri(home)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        print(f"beauty-pipeline models: no MLflow store at {uri} (run the demo or a study first, "
              "or pass --home / --tracking-uri)", file=sys.stderr)
        return 2
    print(list_registered(uri))
    return 0


def run_heldout_command(args: argparse.Namespace, home: Path, settings: ZooSettings) -> int:
    """`zoo --held-out`: the held-out worlds, their matrix, and the acceptance (exit 1 on a wrong
    `face` or a clean control that is not `face` in most seeds)."""
    from beauty_pipeline.demo.heldout import HELD_OUT_WORLDS, acceptance, heldout_matrix, run_heldout

    worlds = args.held_out_worlds or list(HELD_OUT_WORLDS)
    print(f"beauty-pipeline zoo --held-out: {len(worlds)} SYNTHETIC held-out worlds x {args.seeds} "
          f"seeds, {settings.model} at {settings.image_size} px -> {home}")
    started = time.perf_counter()
    results = run_heldout(home, worlds, settings, args.seeds,
                          log=lambda line: print(f"  {line}", flush=True))
    print()
    print(heldout_matrix(results))
    verdict = acceptance(results)
    print(f"\nwrong face in: {', '.join(verdict['wrong_face_worlds']) or 'no world'}; clean control "
          f"face in {verdict['clean_face_seeds']} seeds; "
          f"{(time.perf_counter() - started) / 60:.1f} min; details in {home / 'heldout.json'}")
    return 0 if verdict["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "demo":
            return run_demo(args)
        if args.command == "study":
            return run_study(args)
        if args.command == "zoo":
            return run_zoo_command(args)
        if args.command == "models":
            return run_models(args)
    except KeyboardInterrupt:  # outside a study's steps (start-up, demo, zoo): no traceback
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
