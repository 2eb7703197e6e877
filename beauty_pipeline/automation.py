"""Reruns what changed when the ranking changes: a ranking sensor plus declarative automation."""

import os

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from beauty_pipeline.assets.ingest import default_ranking_location, read_ranking
from beauty_pipeline.errors import PipelineError
from beauty_pipeline.partitions import person_partitions
from beauty_pipeline.ranking import diff_persons, ranking_digest
from beauty_pipeline.resources import DemoDataResource, StudyStorage
from beauty_pipeline.settings import env_number

CHECK_INTERVAL_ENV = "BEAUTY_PIPELINE_RANKING_CHECK_SECONDS"
MAX_REMOVED_SHARE_ENV = "BEAUTY_PIPELINE_MAX_REMOVED_SHARE"
CONFIRM_RANKING_ENV = "BEAUTY_PIPELINE_CONFIRM_RANKING"
RANKING = AssetKey("ranking")


def check_interval_seconds() -> int:
    """Daily by default; BEAUTY_PIPELINE_RANKING_CHECK_SECONDS changes it."""
    return env_number(CHECK_INTERVAL_ENV, int, 24 * 3600, 1)


def removal_refusal(current: list[str], removed: list[str], digest: str) -> str | None:
    """Why a ranking change that deletes too many persons is refused, or None to go ahead.

    More than BEAUTY_PIPELINE_MAX_REMOVED_SHARE (default 0.2) of the persons is a truncated or
    wrong list far more often than an edit; BEAUTY_PIPELINE_CONFIRM_RANKING=<version> accepts it."""
    max_share = env_number(MAX_REMOVED_SHARE_ENV, float, 0.2, 0.0)
    if not current or not removed or len(removed) / len(current) <= max_share:
        return None
    if os.environ.get(CONFIRM_RANKING_ENV, "").strip() == digest:
        return None
    return (f"ranking {digest} would delete {len(removed)} of {len(current)} persons "
            f"({len(removed) / len(current):.0%} > {max_share:.0%}, e.g. {', '.join(removed[:3])}); "
            f"nothing was changed. If intended, set {CONFIRM_RANKING_ENV}={digest} "
            f"(or raise {MAX_REMOVED_SHARE_ENV})")


def materialized_ranking_version(context: SensorEvaluationContext) -> str | None:
    """The data version of the last materialized ranking, if any."""
    record = context.instance.get_latest_data_version_record(RANKING)
    if record is None:
        return None
    tags = record.asset_materialization.tags or {} if record.asset_materialization else {}
    return tags.get("dagster/data_version")


@sensor(name="ranking_sensor", minimum_interval_seconds=check_interval_seconds(),
        default_status=DefaultSensorStatus.RUNNING, asset_selection=[RANKING],
        description="Watches the ranking list: adds/removes person partitions, refreshes ranking.")
def ranking_sensor(context: SensorEvaluationContext, demo_data: DemoDataResource,
                   storage: StudyStorage):
    """Diff the ranking against the person partitions; request a ranking run only on change."""
    location = default_ranking_location()
    try:
        frame = read_ranking(location, demo_data, storage)
    except PipelineError as error:  # an unreadable or empty list changes nothing
        context.log.error(str(error))
        return SkipReason(f"ranking not used, nothing changed: {error}")
    digest = ranking_digest(frame)
    current = context.instance.get_dynamic_partitions(person_partitions.name)
    added, removed = diff_persons(current, frame["person"].tolist())
    if not added and not removed and digest == materialized_ranking_version(context):
        return SkipReason(f"ranking unchanged ({len(current)} persons, version {digest})")
    try:
        refusal = removal_refusal(current, removed, digest)
    except PipelineError as error:
        refusal = str(error)
    if refusal:
        context.log.warning(refusal)
        return SkipReason(refusal)
    requests = []
    if added:
        requests.append(AddDynamicPartitionsRequest(person_partitions.name, added))
    if removed:
        requests.append(DeleteDynamicPartitionsRequest(person_partitions.name, removed))
    context.log.info(f"ranking {digest}: +{added} -{removed}")
    return SensorResult(
        run_requests=[RunRequest(run_key=f"ranking-{digest}", asset_selection=[RANKING],
                                 tags={"beauty_pipeline/added": ",".join(added)[:200],
                                       "beauty_pipeline/removed": ",".join(removed)[:200]})],
        dynamic_partitions_requests=requests)


study_automation = AutomationConditionSensorDefinition(
    "study_automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes new persons' photos and rebuilds what a changed input touches.")
