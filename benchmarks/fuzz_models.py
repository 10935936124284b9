"""The model fuzzer's long run: many random models per technique.

Runs the invariants of `tests/fuzz/model_checks.py` on models drawn by
`tests/fuzz/model_strategies.py` (random, not derandomized) and, unlike the
test, keeps going after a failure: every failing example is recorded (its
reproducer is the recipe's source) and the run ends with a table of
examples, wrapped/refused models and failures per technique. Failures are
grouped by their first message line.

    python benchmarks/fuzz_models.py --examples 200                  # every technique
    python benchmarks/fuzz_models.py --techniques prune qat --examples 50 --export-every 5
    python benchmarks/fuzz_models.py --minutes 10 --json fuzz.json

`--export-every N` also converts every N-th model to .tflite (float and
int8) and checks agreement; conversion is the slow part (seconds a model).
"""

import argparse
import collections
import json
import os
import re
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "fuzz"))
sys.path.insert(0, os.path.join(HERE, ".."))

import keras  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

import model_checks  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--techniques", nargs="+", default=list(model_checks.TECHNIQUES),
                        choices=list(model_checks.TECHNIQUES))
    parser.add_argument("--examples", type=int, default=100, help="per technique")
    parser.add_argument("--minutes", type=float, default=None,
                        help="stop each technique after this long (wall clock)")
    parser.add_argument("--export-every", type=int, default=10,
                        help="convert every N-th model to .tflite (0: never)")
    parser.add_argument("--max-steps", type=int, default=6, help="operations per model")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed")
    parser.add_argument("--json", help="also write the results (with reproducers) here")
    parser.add_argument("--current", default=os.path.join(tempfile.gettempdir(),
                                                          "fuzz_current_recipe.py"),
                        help="each model's recipe is written here before it runs, so "
                             "that a crash of the process (a native abort) leaves its "
                             "reproducer")
    return parser.parse_args(argv)


def run_technique(name, args):
    counts = collections.Counter()
    errors = []  # median int8 error of each exported model
    upstream = []  # converter/LiteRT findings (see model_checks.check_export)
    failures = collections.OrderedDict()  # first message line -> (count, recipe, traceback)
    started = time.monotonic()

    @settings(max_examples=args.examples, deadline=None, database=None,
              phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(recipe=model_checks.technique_models(name, max_steps=args.max_steps))
    def one(recipe):
        if args.minutes and time.monotonic() - started > 60 * args.minutes:
            return
        counts["examples"] += 1
        if counts["examples"] % 25 == 0:
            print(f"  [{name}] {counts['examples']} examples, {counts['failed']} failed, "
                  f"{round(time.monotonic() - started)} s", flush=True)
        export = bool(args.export_every) and counts["examples"] % args.export_every == 0
        counts["exported"] += export
        with open(args.current, "w", encoding="utf-8") as f:
            f.write(f"# {name}, export={export}\n{recipe.code}")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                result = model_checks.check(recipe, name, tmp, export_tflite=export)
                counts[result["outcome"]] += 1
                if result.get("int8_median_error") is not None:
                    errors.append(result["int8_median_error"])
                for finding in result.get("upstream", []):
                    counts["upstream findings"] += 1
                    upstream.append({"finding": finding, "reproducer": recipe.code})
            except Exception as error:  # noqa: BLE001 - recorded, the run goes on
                counts["failed"] += 1
                first = str(error).strip().splitlines()[0][:160] if str(error).strip() else ""
                # Numbers (function ids, sizes) vary between examples of one failure.
                key = re.sub(r"\d+", "#", f"{type(error).__name__}: {first}")
                if key in failures:
                    failures[key][0] += 1
                else:
                    failures[key] = [1, recipe.code, traceback.format_exc()[-2500:]]
                    print(f"  [{name}] new failure: {key}", flush=True)
        keras.backend.clear_session()

    if args.seed is not None:
        one = __import__("hypothesis").seed(args.seed)(one)
    one()
    counts["seconds"] = round(time.monotonic() - started)
    if errors:
        counts["int8 median error, worst model"] = round(max(errors), 4)
    return counts, failures, upstream


def main(argv=None):
    args = parse_args(argv)
    results = {}
    for name in args.techniques:
        print(f"{name}: up to {args.examples} examples", flush=True)
        counts, failures, upstream = run_technique(name, args)
        results[name] = {"counts": dict(counts), "upstream": upstream, "failures": [
            {"error": key, "count": count, "reproducer": code, "traceback": tb}
            for key, (count, code, tb) in failures.items()
        ]}
        if args.json:  # after each technique: a long run leaves what it did
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(results, f, indent=1)
    print("\n| technique | examples | wrapped | refused (clean ValueError) | exported | "
          "failed | distinct failures | upstream findings | worst median int8 error "
          "| seconds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, result in results.items():
        c = result["counts"]
        print(f"| {name} | {c.get('examples', 0)} | {c.get('wrapped', 0)} | "
              f"{c.get('refused', 0)} | {c.get('exported', 0)} | {c.get('failed', 0)} | "
              f"{len(result['failures'])} | {c.get('upstream findings', 0)} | "
              f"{c.get('int8 median error, worst model', '-')} | {c.get('seconds', 0)} |")
    for name, result in results.items():
        for finding in result["upstream"]:
            print(f"\n-- {name}, upstream: {finding['finding']}\n{finding['reproducer']}")
    for name, result in results.items():
        for failure in result["failures"]:
            print(f"\n== {name}: {failure['error']} (x{failure['count']})\n"
                  f"{failure['reproducer']}{failure['traceback']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
