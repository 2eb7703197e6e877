"""The code location loads, and every asset of the design is there with a group and description."""

import subprocess
import sys

from dagster import MultiPartitionsDefinition

from beauty_pipeline.definitions import defs

EXPECTED = {
    "ranking": "ingest", "celebrity_photos": "ingest", "fairface_faces": "ingest",
    "celebrity_faces": "faces", "face_dataset": "dataset", "face_dataset_variant": "dataset",
    "fairface_backbone": "models", "classifier": "models",
}


def test_dagster_definitions_validate_cli():
    result = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-m",
                             "beauty_pipeline.definitions"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_assets_groups_descriptions_and_partitions():
    graph = defs.resolve_asset_graph()
    nodes = {key.to_user_string(): graph.get(key) for key in graph.get_all_asset_keys()}
    for name, group in EXPECTED.items():
        assert name in nodes, name
        assert nodes[name].group_name == group
        assert nodes[name].description
    partitions = nodes["classifier"].partitions_def
    assert isinstance(partitions, MultiPartitionsDefinition)
    assert {d.name for d in partitions.partitions_defs} == {"model", "background"}
    assert len(partitions.get_partition_keys()) == 15
    assert nodes["celebrity_photos"].partitions_def.name == "person"
    assert nodes["face_dataset_variant"].partitions_def.get_partition_keys() == [
        "original", "white", "random"]
