"""The JSON-lines metrics log of a run folder (``metrics.jsonl``): one object per logged step."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from geodino.utils import write_text_atomic

log = logging.getLogger("geodino")


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
        """The records, in order. A last line cut short (a killed process) is dropped; any other
        line that is not a JSON object is dropped too, with a warning naming the file and lines."""
        if not self.path.exists():
            return []
        records, bad = [], []
        lines = self.path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append(record)
            elif number < len(lines) or record is not None:  # not the cut-short tail
                bad.append(number)
        if bad:
            log.warning("%s: %d line(s) are not JSON records and were left out (line %s)", self.path, len(bad),
                        ", ".join(map(str, bad[:10])) + (", ..." if len(bad) > 10 else ""))
        return records
