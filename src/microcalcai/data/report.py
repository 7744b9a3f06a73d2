"""What an importer found: the manifest rows, and every source row it did not import and why.

Importers never drop a row silently: a row that cannot become a manifest row is recorded here
with the file and the place in it, so the summary printed by `microcalcai import` accounts for
every row of the source.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from microcalcai.data.manifest import OPTIONAL_COLUMNS, REQUIRED_COLUMNS


@dataclass(frozen=True)
class Skipped:
    source: str  # the file the row came from
    where: str  # the place in it: "line 12", "mdb059", "ROI 3", ...
    reason: str  # why it is not in the manifest; rows with the same reason are counted together


@dataclass
class ImportReport:
    dataset: str
    source: Path
    rows: list[dict] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: object) -> None:
        self.rows.append(row)

    def skip(self, source: str | Path, where: str, reason: str) -> None:
        self.skipped.append(Skipped(str(source), where, reason))

    def frame(self) -> pd.DataFrame:
        """The imported rows as a manifest frame (documented columns first)."""
        frame = pd.DataFrame(self.rows)
        if frame.empty:
            return pd.DataFrame(columns=list(REQUIRED_COLUMNS))
        known = [c for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS if c in frame.columns]
        return frame[known + [c for c in frame.columns if c not in known]]

    def keep_findings(self, findings: list[str]) -> None:
        """Keep only rows whose finding (or one of its '+'-joined parts) is in `findings`."""
        wanted = {f.strip().lower() for f in findings}
        kept = []
        for row in self.rows:
            parts = set(str(row["finding"]).split("+"))
            if parts & wanted:
                kept.append(row)
            else:
                self.skip(
                    row.get("_source", self.source),
                    str(row.get("_where", row.get("image_id", ""))),
                    f"finding {row['finding']} not requested (--finding {','.join(sorted(wanted))})",
                )
        self.rows = kept

    def manifest_rows(self) -> pd.DataFrame:
        """The frame without the bookkeeping columns (those starting with '_')."""
        frame = self.frame()
        return frame[[c for c in frame.columns if not str(c).startswith("_")]]

    def summary(self) -> str:
        frame = self.frame()
        lines = [
            f"{self.dataset}: imported {len(frame)} ROI(s) from "
            f"{frame['patient_id'].nunique() if len(frame) else 0} patient(s) in {self.source}"
        ]
        if len(frame):
            table = pd.crosstab(frame["finding"], frame["label"], margins=True, margins_name="total")
            lines.append("ROIs per finding and label:")
            lines.extend("  " + line for line in table.to_string().splitlines())
            labels = frame.groupby("patient_id")["label"].agg(lambda values: "+".join(sorted(set(values))))
            counts = ", ".join(
                f"{name} {count}" for name, count in labels.value_counts().sort_index().items()
            )
            lines.append(f"patients by label: {counts}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} source row(s):")
            by_reason = Counter(s.reason for s in self.skipped)
            for reason, count in by_reason.most_common():
                examples = [
                    f"{Path(s.source).name} {s.where}".strip() for s in self.skipped if s.reason == reason
                ]
                shown = ", ".join(examples[:3]) + (", ..." if len(examples) > 3 else "")
                lines.append(f"  {count} x {reason} ({shown})")
        else:
            lines.append("skipped 0 source rows")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)

    def skipped_frame(self) -> pd.DataFrame:
        return pd.DataFrame([s.__dict__ for s in self.skipped], columns=["source", "where", "reason"])
