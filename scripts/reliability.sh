#!/usr/bin/env bash
# The heavier reliability checks of issue 7, beyond what CI runs (CI runs the same tests at their
# default sizes). FASTRNN_RELIABILITY_FULL=1 scales them up:
#   - fuzzing (tests/test_property.py -k fuzzed): 3000 module calls and 3000 op calls instead of
#     150 + 150, with hypothesis exploring fresh examples (no CI derandomisation);
#   - leak checks (tests/test_memory.py): 10000 training steps and 10000 fast-path calls;
# and runs the rest of the reliability tests once more alongside (bad input, determinism,
# threads, T=100000 memory bound, DDP, CPU autocast). About 2 minutes on 2 cores after the build.
# Prints the measured numbers (-s) and hypothesis's statistics.
#
#   bash scripts/reliability.sh            # from the repository root, fastrnn built
set -euo pipefail
cd "$(dirname "$0")/.."
export FASTRNN_RELIABILITY_FULL=1
unset CI  # conftest derandomises hypothesis under CI; here it should explore
python -m pytest -q -s --hypothesis-show-statistics \
  tests/test_property.py -k "fuzzed" "$@"
python -m pytest -q -s \
  tests/test_memory.py tests/test_reliability.py tests/test_distributed.py tests/test_autocast.py "$@"
