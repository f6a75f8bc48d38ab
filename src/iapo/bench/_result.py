"""The result of a benchmark: every run's numbers (JSON-ready), their summary, tables and plot."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iapo.bench._report import markdown_tables, plot, summarise
from iapo.errors import InputError
from iapo.fmt import strict_json

__all__ = ["BenchResult"]


@dataclass
class BenchResult:
    """Every run's numbers (``data``, JSON-ready) and their summary."""

    data: dict[str, Any]

    @property
    def summary(self) -> dict[str, Any]:
        s: dict[str, Any] = self.data["summary"]
        return s

    @property
    def budgets(self) -> list[int]:
        return [int(b) for b in self.data["protocol"]["budgets"]]

    @property
    def titles(self) -> dict[str, str]:
        return {a["label"]: a["title"] for a in self.data["algorithms"]}

    def acr(self, label: str, budget: int) -> list[float]:
        """Per-run test ACR of ``label`` at ``budget``, in run order (runs it took part in)."""
        key = str(budget)
        return [
            r["results"][label][key]["acr"]
            for r in self.data["runs"]
            if key in r["results"].get(label, {})
        ]

    def markdown(self, heading: str = "####") -> str:
        return markdown_tables(self.summary, self.titles, self.budgets, heading=heading)

    def to_json(self, *, arms: bool = False) -> str:
        """The data as compact JSON; ``arms=False`` leaves out each run's chosen arms."""
        data = self.data
        if not arms:
            runs = [
                {
                    **r,
                    "results": {
                        a: {b: {k: v for k, v in x.items() if k != "arms"} for b, x in d.items()}
                        for a, d in r["results"].items()
                    },
                }
                for r in data["runs"]
            ]
            data = {**data, "runs": runs}
        return strict_json(data, separators=(",", ":"))

    def save(self, out: str | Path, *, with_plot: bool = True) -> dict[str, Path]:
        """Write ``<env>.json``, ``<env>.md`` and (matplotlib) ``<env>.png`` into ``out``."""
        d = Path(out)
        try:
            d.mkdir(parents=True, exist_ok=True)
            name = self.data["env"]["name"]
            paths = {"json": d / f"{name}.json", "markdown": d / f"{name}.md"}
            paths["json"].write_text(self.to_json())
            paths["markdown"].write_text(
                f"### {name}\n\n{self.data['env']['description']}\n\n"
                f"Command: `{self.data['command']}`\n\n{self.markdown()}"
            )
            if with_plot:
                paths["plot"] = d / f"{name}.png"
                plot(self.summary, self.titles, self.budgets, paths["plot"], name)
        except OSError as exc:
            raise InputError(
                f"cannot write the results ({exc.strerror}): choose a writable --out", source=str(d)
            ) from None
        return paths

    def resummarise(self, reference: str = "psst") -> None:
        """Recompute the summary from the stored per-run numbers, the paired tests against
        ``reference`` (how stored results are re-read, e.g. with another reference)."""
        algos = self.data["algorithms"]
        self.data["summary"] = summarise(
            self.data["runs"],
            [a["label"] for a in algos],
            self.budgets,
            {a["label"]: a["min_budget"] for a in algos},
            [c["name"] for c in self.data["env"]["contexts"]],
            reference=reference,
        )

    def plot(self, path: str | Path) -> None:
        plot(self.summary, self.titles, self.budgets, path, self.data["env"]["name"])

    @classmethod
    def load(cls, path: str | Path) -> BenchResult:
        return cls(json.loads(Path(path).read_text()))
