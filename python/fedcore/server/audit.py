"""audit.jsonl: per round, who was selected, answered, dropped or refused, with each frame's size and hash."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from fedcore.protocol.transport import RoundOutcome
from fedcore.records import RoundRecord


def audit_entry(record: RoundRecord, outcome: RoundOutcome) -> dict[str, Any]:
    """One round's line: ids in order, refusals with their typed reason, frames by sha256."""
    failures = sorted(outcome.failures, key=lambda f: f.client_id)
    answered = sorted(r.client_id for r in outcome.replies)
    return {
        "round": record.round,
        "selected": sorted({*answered, *record.dropouts, *(f.client_id for f in failures)}),
        "answered": answered,
        "dropped": record.dropouts,
        "refused": [
            {"client_id": f.client_id, "kind": f.kind, "message": f.message, "nbytes": f.nbytes}
            for f in failures
            if f.kind not in ("dropped", "disconnected")
        ],
        "frames": [
            {"client_id": r.client_id, "nbytes": r.nbytes, "sha256": list(r.sha256)}
            for r in sorted(outcome.replies, key=lambda r: r.client_id)
        ],
    }


class AuditLog:
    """Appends one JSON line per round and flushes it, so the log survives a crash of the server."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")

    def write(self, record: RoundRecord, outcome: RoundOutcome) -> None:
        self._file.write(json.dumps(audit_entry(record, outcome), sort_keys=True) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
