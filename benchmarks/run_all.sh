#!/usr/bin/env bash
# The runs behind BENCHMARKS.md sections 1-2; each command writes docs/bench/<env>.{json,md,png}.
# UCB and epsilon-greedy pull one completion per step (about 10-20k steps per run at 50k), so
# they take part in the first runs only (--runs-for); every other algorithm runs all of them.
# The concise-CoT exams run fewer runs (the compute budget of one 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/.."
IAPO=${IAPO:-.venv/bin/iapo}
for env in mcqa-gpt35 synth-bernoulli synth-categorical tot-writing tot-game24; do
  $IAPO bench --env "$env" --runs 200 --runs-for ucb=20,epsilon_greedy=20 --out docs/bench
done
for env in ccot-aqua-rat ccot-lsat-ar ccot-sat-math; do
  $IAPO bench --env "$env" --runs 50 --runs-for ucb=10,epsilon_greedy=10 --out docs/bench
done
