"""Partitions: person (dynamic, from the ranking), background, model, and model x background."""

from dagster import (
    AssetIn,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
    StaticPartitionsDefinition,
)

from beauty_pipeline.settings import BACKGROUNDS, MODELS

person_partitions = DynamicPartitionsDefinition(name="person")
background_partitions = StaticPartitionsDefinition(list(BACKGROUNDS))
model_partitions = StaticPartitionsDefinition(list(MODELS))
model_background_partitions = MultiPartitionsDefinition(
    {"model": model_partitions, "background": background_partitions})

# A model x background partition reads the background variant it was trained on.
VARIANT_OF_PARTITION = {"face_dataset_variant": AssetIn(
    partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name="background"))}
