"""Partitions: person (dynamic, from the ranking), background, model, and model x background."""

from dagster import (
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
)

from beauty_pipeline.settings import BACKGROUNDS, MODELS

person_partitions = DynamicPartitionsDefinition(name="person")
background_partitions = StaticPartitionsDefinition(list(BACKGROUNDS))
model_partitions = StaticPartitionsDefinition(list(MODELS))
model_background_partitions = MultiPartitionsDefinition(
    {"model": model_partitions, "background": background_partitions})
