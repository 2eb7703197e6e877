"""Ranking changes drive the graph: new person -> its runs only; removed -> dropped; else nothing."""

import pandas as pd
import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    DeleteDynamicPartitionsRequest,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
    instance_for_test,
    materialize,
)

from beauty_pipeline.automation import ranking_sensor
from beauty_pipeline.definitions import defs
from beauty_pipeline.resources import (
    DemoDataResource,
    ManifestIOManager,
    PhotoSourceResource,
    StudyStorage,
)

# three persons to start: the split keeps two identities per class in test and one in train
ROWS = [("Alba Baptista", "female", 4), ("Rosé", "female", 7), ("Lisa", "female", 5),
        ("Jisoo", "female", 2)]


def write_ranking(path, rows):
    pd.DataFrame([{"name": n, "gender": g, "rank": r, "list": "most_beautiful_faces_2024",
                   "year": 2024} for n, g, r in rows]).to_csv(path, index=False)


def tick(instance):
    context = build_sensor_context(instance=instance, resources={
        "demo_data": DemoDataResource(), "storage": StudyStorage()})  # the data root the fixture sets
    return ranking_sensor(context)


def apply(instance, result):
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


@pytest.fixture
def world(tmp_path, monkeypatch):
    csv = tmp_path / "ranking.csv"
    write_ranking(csv, ROWS[:3])
    monkeypatch.setenv("BEAUTY_PIPELINE_RANKING", str(csv))
    monkeypatch.setenv("BEAUTY_PIPELINE_HOME", str(tmp_path))
    monkeypatch.setenv("BEAUTY_PIPELINE_MAX_REMOVED_SHARE", "0.5")  # removing 1 of 4 is intended
    resources = {**defs.resources, "io_manager": ManifestIOManager(root=str(tmp_path)),
                 "storage": StudyStorage(root=str(tmp_path))}
    with instance_for_test() as instance:
        yield csv, instance, resources


def materialize_ranking(instance, resources):
    materialize(list(defs.assets), selection=[AssetKey("ranking")], instance=instance,
                resources=resources)


def test_first_tick_registers_everyone_then_nothing_runs(world):
    csv, instance, resources = world
    first = tick(instance)
    adds = [r for r in first.dynamic_partitions_requests if isinstance(r, AddDynamicPartitionsRequest)]
    assert sorted(adds[0].partition_keys) == ["alba-baptista", "lisa", "rose"]
    assert [r.asset_selection for r in first.run_requests] == [[AssetKey("ranking")]]
    apply(instance, first)
    materialize_ranking(instance, resources)
    again = tick(instance)
    assert isinstance(again, SkipReason) and "unchanged" in again.skip_message


def requested(evaluation):
    """(asset, partition) pairs the automation would launch runs for."""
    return {(key.to_user_string(), partition) for key in defs.resolve_asset_graph().get_all_asset_keys()
            for partition in evaluation.get_requested_partitions(key)}


def materialize_person(instance, resources, person):
    materialize(list(defs.assets), selection=[AssetKey("celebrity_photos"), AssetKey("celebrity_faces")],
                instance=instance, resources=resources, partition_key=person,
                run_config={"ops": {"celebrity_faces": {"config": {"detector": "known"}}}})


def edit_ranking(csv, rows, instance, resources):
    """Edit the list, let the sensor tick, apply its partition change, run the ranking it requested."""
    write_ranking(csv, rows)
    result = tick(instance)
    [request] = result.dynamic_partitions_requests
    apply(instance, result)
    materialize_ranking(instance, resources)
    return request


def test_added_person_runs_only_its_partition_then_dataset_once_removed_is_dropped(world):
    csv, instance, resources = world
    resources = {**resources, "photo_source": PhotoSourceResource(kind="demo"),
                 "demo_data": DemoDataResource(image_size=24, photos_per_person=4, ordinary=12)}
    apply(instance, tick(instance))
    materialize_ranking(instance, resources)
    for person in ("alba-baptista", "rose", "lisa"):
        materialize_person(instance, resources, person)
    materialize(list(defs.assets), selection=[AssetKey("fairface_faces"), AssetKey("face_dataset")],
                instance=instance, resources=resources,
                run_config={"ops": {"fairface_faces": {"config": {"source": "demo"}}}})
    baseline = evaluate_automation_conditions(defs, instance)

    request = edit_ranking(csv, ROWS, instance, resources)  # Jisoo added
    assert isinstance(request, AddDynamicPartitionsRequest) and request.partition_keys == ["jisoo"]
    first = evaluate_automation_conditions(defs, instance, cursor=baseline.cursor)
    assert requested(first) == {("celebrity_photos", "jisoo"), ("celebrity_faces", "jisoo")}

    materialize_person(instance, resources, "jisoo")
    second = evaluate_automation_conditions(defs, instance, cursor=first.cursor)
    rebuilt = requested(second)
    assert ("face_dataset", None) in rebuilt  # once, now that the new person's faces exist
    assert not {pair for pair in rebuilt if pair[0].startswith("celebrity_")}

    materialize(list(defs.assets), selection=[AssetKey("face_dataset")], instance=instance,
                resources=resources)  # as the daemon would
    settled = evaluate_automation_conditions(defs, instance, cursor=second.cursor)

    request = edit_ranking(csv, [ROWS[0], *ROWS[2:]], instance, resources)  # Rosé removed
    assert isinstance(request, DeleteDynamicPartitionsRequest) and request.partition_keys == ["rose"]
    third = evaluate_automation_conditions(defs, instance, cursor=settled.cursor)
    rebuilt = requested(third)
    assert ("face_dataset", None) in rebuilt
    assert not {pair for pair in rebuilt if pair[0].startswith("celebrity_")}
    result = materialize(list(defs.assets), selection=[AssetKey("face_dataset")], instance=instance,
                         resources=resources)
    persons = set(result.output_for_node("face_dataset")["person"])
    assert "rose" not in persons and {"alba-baptista", "lisa", "jisoo"} & persons
