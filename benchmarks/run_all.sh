#!/usr/bin/env bash
# The runs behind BENCHMARKS.md sections 1-2; each command writes docs/bench/<env>.{json,md,png}:
# every default algorithm, 200 runs (issue #12). The one-pull-per-step baselines (UCB, epsilon-
# greedy, softmax) dominate: 4-15 min per environment on 2 idle cores.
set -euo pipefail
cd "$(dirname "$0")/.."
IAPO=${IAPO:-.venv/bin/iapo}
for env in synth-bernoulli synth-categorical ccot-logiqa-en ccot-medmcqa-dev mcqa-gpt35 tot-game24 \
  tot-writing ccot-aqua-rat ccot-lsat-ar ccot-sat-math; do
  $IAPO bench --env "$env" --runs 200 --workers 2 --shared "${SHARED:-../shared}" --out docs/bench \
    --quiet
done

# Section 5 (issue #11, PSST at any budget): the large-arm environments, written under scratch
# names and copied to docs/bench/any-<env>.json; then psst_any alone at psst_paper's mean actual
# spend (rounded down) where psst_paper overspent (same seed: run r pairs with run r), copied to
# docs/bench/any-<env>-matched.json. The matched budgets below are the ones the main runs gave.
# psst_any_paired (groups 1, the schedule before query groups) runs on the large-arm
# environments only, as the ablation of psst_any's query groups.
ALGOS=psst_any,psst_any_paired,psst,psst_paper,psst_k1,psst_k4,triple_n1,uniform
SCRATCH=$(mktemp -d)
any_run() {  # any_run ENV NAME BUDGETS [extra bench args...]
  local env=$1 name=$2 budgets=$3
  shift 3
  $IAPO bench --env "$env" --budgets "$budgets" --runs "${RUNS:-200}" --workers 2 \
    --out "$SCRATCH/$name" --quiet "$@"
  cp "$SCRATCH/$name/$env.json" "docs/bench/$name.json"
}
any_run synth-48x32 any-synth-48x32 500,1000,2000,4224,5000,10000,16896,20000,50000 --algorithms $ALGOS
any_run synth-48x32 any-synth-48x32-matched 4445,4560,4938,6079,6511,9987 --algorithms psst_any \
  --no-plot
any_run renze-temperature-all any-renze-temperature-all 500,1000,2000,4098,5000,10000,16390,20000,50000 \
  --algorithms $ALGOS --shared "${SHARED:-/work/shared}"
any_run renze-temperature-all any-renze-temperature-all-matched 3996,4182,4649,5879,6479,9988 \
  --algorithms psst_any --shared "${SHARED:-/work/shared}" --no-plot
any_run synth-200x64 any-synth-200x64 500,1000,2000,5000,10000,20000,50000 --algorithms $ALGOS
any_run synth-200x64 any-synth-200x64-matched 36350,36390,36571,37534,39695,44961,63747 \
  --algorithms psst_any --no-plot
# target 3 on synth-200x64: psst_any at a quarter of strict PSST's minimum, strict PSST at it
any_run synth-200x64 any-synth-200x64-quarter 44800,179200 --algorithms psst_any,psst --no-plot
# the groups ablation at that quarter budget (psst_any against psst_any_paired, paired by run)
any_run synth-200x64 any-synth-200x64-quarter-paired 44800 --algorithms psst_any,psst_any_paired \
  --no-plot

# Section 5 on the existing pools (compact blocks, no plot), then the matched runs where
# psst_paper overspent (budgets: its mean actual spend in the main run, rounded down).
POOL_ALGOS=psst_any,psst,psst_paper,psst_k1,psst_k4,triple_n1,uniform
ANY_BUDGETS=500,1000,2000,5000,10000,20000,50000
for env in mcqa-gpt35 tot-writing synth-bernoulli synth-categorical; do
  any_run "$env" "any-$env" $ANY_BUDGETS --algorithms $POOL_ALGOS --no-plot
done
for env in tot-game24 ccot-aqua-rat ccot-lsat-ar ccot-sat-math ccot-logiqa-en ccot-medmcqa-dev; do
  any_run "$env" "any-$env" $ANY_BUDGETS --algorithms $POOL_ALGOS --shared "${SHARED:-/work/shared}" \
    --no-plot
done
# psst_paper overspends only on the synthetic 32 × 32 pools (below strict PSST's 10,240)
any_run synth-bernoulli any-synth-bernoulli-matched 3037,3145,3537,5239 --algorithms psst_any --no-plot
any_run synth-categorical any-synth-categorical-matched 4192,4201,4365,5652 --algorithms psst_any \
  --no-plot

# Section 6 (deviations from the paper), row 1: strict PSST with independent queries per prompt
# (psst_unpaired) against paired (psst), copied to docs/bench/paired-<env>.json.
for env in mcqa-gpt35 synth-bernoulli synth-categorical tot-writing tot-game24 synth-48x32; do
  $IAPO bench --env "$env" --shared "${SHARED:-/work/shared}" --algorithms psst,psst_unpaired \
    --budgets 1000,2000,5000,10000,20000,50000 --runs 200 --workers 2 --out "$SCRATCH/paired-$env" \
    --quiet --no-plot
  cp "$SCRATCH/paired-$env/$env.json" "docs/bench/paired-$env.json"
done
