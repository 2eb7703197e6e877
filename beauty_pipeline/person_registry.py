"""Person keys, once given, never change or move to another name: the assignment is kept on disk."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from beauty_pipeline.errors import PipelineError
from beauty_pipeline.storage import atomic_write_json, file_lock


class PersonKeyRegistry:
    """identity (normalised name) -> key, in a JSON file; newcomers that collide get a suffix."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise PipelineError(f"person key registry {self.path} is unreadable ({error}); "
                                "restore it from a backup: deleting it can reassign keys") from error
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise PipelineError(f"person key registry {self.path} is not a JSON object of keys; "
                                "restore it from a backup")
        return data

    def assign(self, names: Iterable[str]) -> dict[str, str]:
        """Keys for names: registered ones as before, new ones persisted before they are returned."""
        from beauty_pipeline.ranking import assign_newcomers, normal_name

        names = list(names)
        with file_lock(self.path):
            known = self.load()
            fresh = [n for n in dict.fromkeys(names) if normal_name(n) not in known]
            if fresh:
                known.update(assign_newcomers(fresh, set(known.values())))
                atomic_write_json(self.path, known)
        return {name: known[normal_name(name)] for name in names}
