#!/usr/bin/env bash
# Record src/iapo/data/gsm8k-qwen05.jsonl: the 3 prompts of examples/gsm8k-local.yaml x the first
# QUERIES GSM8K test questions x K samples, from the local Qwen2.5-Coder-0.5B-Instruct (Q4_K_M)
# run in-process by xllamacpp. Needs: pip install 'iapo[local]' and the six model chunks (README,
# "Live models").
#
# Every completion goes through the sample bank (STORAGE), so the script resumes where it stopped:
# run it again after a crash or Ctrl-C. The default bank is the live example's own, so a later
# `iapo run examples/gsm8k-local.yaml` reuses every recorded completion.
#
# SHARED (optional): the shared qwen05-gsm8k recording (5 samples per question of the same model,
# runtime, sampling params and the very same `cot` prompt). When the file exists its samples are
# banked as `cot` samples 0-4 before recording, which saves 200 long completions.
#
# Environment: QUERIES (default 40), K (8), SLOTS (16), THREADS (default: chosen by load; 1 on a
# busy 2-core machine), STORAGE, OUT, SHARED, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

export QUERIES="${QUERIES:-40}" K="${K:-8}" SLOTS="${SLOTS:-16}" THREADS="${THREADS:-}"
export STORAGE="${STORAGE:-sqlite:///runs/gsm8k-local/bank.sqlite}"
export OUT="${OUT:-src/iapo/data/gsm8k-qwen05.jsonl}"
export SHARED="${SHARED:-../shared/data/pools/qwen05-gsm8k/gsm8k_40x5.jsonl}"
PYTHON="${PYTHON:-.venv/bin/python}"
mkdir -p runs/gsm8k-local

"$PYTHON" - <<'EOF'
import json
import os
import sys
import time
from pathlib import Path

from iapo import _run
from iapo.bank import open_bank
from iapo.config import load_config
from iapo.record import record
from iapo.types import Sample

cfg = load_config("examples/gsm8k-local.yaml")
assert cfg.backend is not None
backend_cfg = cfg.backend.model_copy(
    update={
        "concurrency": int(os.environ["SLOTS"]),
        "slots": int(os.environ["SLOTS"]),
        "threads": int(os.environ["THREADS"]) if os.environ["THREADS"] else None,
    }
)
s = _run.setup(
    cfg.model_copy(update={"backend": backend_cfg}),
    config_path=Path("examples/gsm8k-local.yaml"),
    storage=os.environ["STORAGE"],
)
assert s.queries is not None
qids = list(s.queries)[: int(os.environ["QUERIES"])]

shared = Path(os.environ["SHARED"])
if shared.is_file():
    backend = s.make_backend()  # starts nothing: only its cache keys and extractor are used
    bank = open_bank(s.storage)
    added = 0
    for line in shared.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        qid = f"gsm8k-{rec['idx']}"
        if qid not in qids:
            continue
        q = s.queries[qid]
        assert q.text == rec["question"] and q.gold == rec["gold"], qid
        dist = backend.cache_key("cot", qid)
        have = bank.get(dist, range(len(rec["samples"])))
        new = []
        for i, smp in enumerate(rec["samples"]):
            if i in have:
                continue
            text = smp["text"]
            tokens = int(smp["tokens"])
            new.append(
                (i, Sample(backend.extract(text), {}, float(tokens), text,
                           {"completion_tokens": tokens}))
            )
        if new:
            bank.put(dist, "cot", qid, new)
            added += len(new)
    bank.close()
    print(f"banked {added} cot samples from {shared}", file=sys.stderr)

t0 = time.time()
last = [0.0]


def progress(done: int, total: int) -> None:
    now = time.time()
    if now - last[0] > 60 or done == total:
        last[0] = now
        print(f"{time.strftime('%H:%M:%S')} {done}/{total} samples, {now - t0:.0f} s",
              file=sys.stderr, flush=True)


out = Path(os.environ["OUT"])
pool = record(s, int(os.environ["K"]), out, queries=qids, progress=progress)
from iapo.pools import Pool, dump_pool

meta = dict(pool.meta)
meta["license"] = (
    "GSM8K questions and gold answers: MIT, (c) 2021 OpenAI (see LICENSE-gsm8k); completions: "
    "outputs of Qwen2.5-Coder-0.5B-Instruct, Apache-2.0 (Qwen)"
)
if shared.is_file():
    meta["note"] = (
        "cot samples 0-4 of each question are the shared qwen05-gsm8k recording (same model, "
        "xllamacpp version, prompt and sampling params; seeds 1000*idx+i); every other sample "
        "was drawn by scripts/record_gsm8k.sh"
    )
pool = Pool(pool.objectives, pool.prompts, pool.queries, pool.cells, pool.cost_unit, meta)
dump_pool(pool, out)
print(f"wrote {os.environ['OUT']}: {len(pool.prompts)} prompts x {len(pool.queries)} queries "
      f"x {os.environ['K']} samples in {time.time() - t0:.0f} s", file=sys.stderr)
EOF
