"""The JSON-lines metrics log of a run folder (``metrics.jsonl``): one object per logged step."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geodino.utils import write_text_atomic


class MetricsLog:
    """Appends one JSON object per line; safe to reopen after a resume."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop records beyond ``step`` (written after the checkpoint a resumed run starts from)."""
        if not self.path.exists():
            return
        kept = [json.dumps(r) for r in self.read() if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a killed process
                continue
        return records
