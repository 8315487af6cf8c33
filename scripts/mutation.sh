#!/usr/bin/env bash
# Mutation testing of one module with mutmut 3, in a scratch copy (the checkout is never touched).
#
#   scripts/mutation.sh MODULE TESTS...
#   scripts/mutation.sh vidprior/data/sampling.py tests/test_data_sampling.py tests/test_regression_net.py
#
# mutmut plants one small bug at a time in MODULE (an operator, a constant, a comparison, a dropped argument...) and
# runs TESTS against each: a mutant no test fails on "survived" and points at an untested behaviour. Only TESTS are
# run (not the whole suite), with -x and in a fixed order, so a run costs minutes, not hours, on a small machine.
#
# Environment: PYTHON (default: python), JOBS (parallel mutants, default 1), KEEP=1 to keep the scratch copy (the
# path is printed; `python -m mutmut show NAME` there shows a mutant's diff), MUTANTS="PATTERN..." to run only the
# mutants whose names match (glob, e.g. 'vidprior.engine.checkpoint.x_prune*'; the others count as "not checked").
# Output: every mutant with its status, then one line "MODULE: N mutants, killed K, survived S, timeout T, ...".
set -euo pipefail

if [ $# -lt 2 ]; then
    echo "usage: $0 MODULE TESTS...   (e.g. $0 vidprior/engine/metrics.py tests/test_regression_net.py)" >&2
    exit 2
fi
module=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python}
jobs=${JOBS:-1}
if [ ! -f "$repo/$module" ]; then
    echo "$module: no such file under $repo" >&2
    exit 2
fi
for t in "$@"; do
    if [ ! -e "$repo/${t%%::*}" ]; then
        echo "$t: no such test file under $repo" >&2
        exit 2
    fi
done
"$python" -c "import mutmut" 2>/dev/null || {
    echo "mutmut is not installed for $python (pip install -e '.[dev]')" >&2
    exit 2
}

scratch=$(mktemp -d "${TMPDIR:-/tmp}/vidprior-mutation.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then
    echo "scratch copy: $scratch"
else
    trap 'rm -rf "$scratch"' EXIT
fi
# the package, the tests, the recipes some tests read and the project file; no .git, caches or earlier mutants
tar -C "$repo" --exclude=__pycache__ --exclude=.pytest_cache --exclude=mutants -cf - vidprior tests configs pyproject.toml |
    tar -C "$scratch" -xf -

toml_list() { # "a" "b" -> ["a", "b"]
    local out="" x
    for x in "$@"; do out="$out${out:+, }\"$x\""; done
    echo "[$out]"
}
cat >>"$scratch/pyproject.toml" <<EOF

[tool.mutmut]
source_paths = ["vidprior"]
only_mutate = ["$module"]
pytest_add_cli_args = ["-p", "no:cacheprovider"]  # mutmut adds -x -q -p no:randomly itself
pytest_add_cli_args_test_selection = $(toml_list "$@")
# torch is not fork-safe once its thread pools run: fork the mutants from a clean server process
process_isolation = "forkserver"
use_git_change_detection = false
EOF

cd "$scratch"
mkdir -p mutants # must exist before Python starts, or the import system caches it as missing
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
# subprocesses the tests start (the CLI) import the mutated package too
export PYTHONPATH="$scratch/mutants${PYTHONPATH:+:$PYTHONPATH}"
# shellcheck disable=SC2086 # MUTANTS is a list of patterns
"$python" -m mutmut run --max-children "$jobs" ${MUTANTS:-} >"$scratch/run.log" 2>&1 || {
    tail -40 "$scratch/run.log" >&2
    echo "mutmut run failed (log above)" >&2
    exit 1
}
"$python" -m mutmut results --all true | tee "$scratch/results.txt"
# lines "    NAME: STATUS"; STATUS is killed, survived, timeout, "no tests" (no selected test runs the function),
# suspicious, skipped, segfault...; the score counts the mutants some test ran
awk -F': ' -v m="$module" '
    NF >= 2 { n++; s[$NF]++ }
    END {
        tested = n - s["no tests"] - s["not checked"]
        line = sprintf("%s: %d mutants, killed %d, survived %d, timeout %d, no tests %d", m, n, s["killed"],
                       s["survived"], s["timeout"], s["no tests"])
        for (k in s) if (k != "killed" && k != "survived" && k != "timeout" && k != "no tests") line = line sprintf(", %s %d", k, s[k])
        if (tested) line = line sprintf(" (score %.1f%% of the %d tested)", 100 * (s["killed"] + s["timeout"]) / tested, tested)
        print line
    }' "$scratch/results.txt"
