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
from beauty_pipeline.partitions import person_partitions
from beauty_pipeline.ranking import diff_persons, ranking_digest
from beauty_pipeline.resources import DemoDataResource

CHECK_INTERVAL_ENV = "BEAUTY_PIPELINE_RANKING_CHECK_SECONDS"
RANKING = AssetKey("ranking")


def check_interval_seconds() -> int:
    """Daily by default; BEAUTY_PIPELINE_RANKING_CHECK_SECONDS changes it."""
    return int(os.environ.get(CHECK_INTERVAL_ENV, 24 * 3600))


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
def ranking_sensor(context: SensorEvaluationContext, demo_data: DemoDataResource):
    """Diff the ranking against the person partitions; request a ranking run only on change."""
    location = default_ranking_location()
    frame = read_ranking(location, demo_data)
    digest = ranking_digest(frame)
    current = context.instance.get_dynamic_partitions(person_partitions.name)
    added, removed = diff_persons(current, frame["person"].tolist())
    if not added and not removed and digest == materialized_ranking_version(context):
        return SkipReason(f"ranking unchanged ({len(current)} persons, version {digest})")
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
