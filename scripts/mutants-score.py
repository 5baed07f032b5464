#!/usr/bin/env python3
"""Mutation score per file from cargo-mutants' output (`make mutants`).

Reads <dir>/outcomes.json (default: mutants.out) and prints, per mutated file, how many
mutants were caught, missed, timed out and unviable, then a total. The score is
caught / (caught + missed): unviable mutants (they do not compile) are left out, and so
are timeouts, which are listed but counted neither as caught nor as missed (a mutant that
makes a test loop forever is usually caught in effect, but nothing asserted it). With
--missed, each missed mutant is listed too. Python 3 standard library only.
"""

import argparse
import json
import os
import sys
from collections import OrderedDict

SUMMARIES = {
    "CaughtMutant": "caught",
    "MissedMutant": "missed",
    "Timeout": "timeout",
    "Unviable": "unviable",
}


def mutant_of(outcome):
    scenario = outcome.get("scenario")
    if isinstance(scenario, dict) and "Mutant" in scenario:
        return scenario["Mutant"]
    return None


def describe(mutant):
    if mutant.get("name"):
        return mutant["name"]
    span = mutant.get("span") or {}
    line = (span.get("start") or {}).get("line", "?")
    func = mutant.get("function") or {}
    name = func.get("function_name", "") if isinstance(func, dict) else str(func)
    where = f"{mutant.get('file', '?')}:{line}"
    what = mutant.get("replacement", "")
    genre = mutant.get("genre", "")
    return f"{where}: {genre} in {name}: replace with {what!r}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default="mutants.out")
    parser.add_argument("--missed", action="store_true", help="list missed mutants")
    args = parser.parse_args()

    path = os.path.join(args.dir, "outcomes.json")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        print(f"mutants-score: cannot read {path}: {e}", file=sys.stderr)
        return 2

    per_file = OrderedDict()
    missed = []
    baseline_failed = False
    for outcome in data.get("outcomes", []):
        summary = outcome.get("summary")
        mutant = mutant_of(outcome)
        if mutant is None:
            baseline_failed |= summary not in (None, "Success")
            continue
        kind = SUMMARIES.get(summary)
        if kind is None:
            continue
        counts = per_file.setdefault(
            mutant.get("file", "?"), dict.fromkeys(SUMMARIES.values(), 0)
        )
        counts[kind] += 1
        if kind == "missed":
            missed.append(describe(mutant))

    if baseline_failed:
        print("mutants-score: the baseline (unmutated) tests failed", file=sys.stderr)
        return 2

    def score(c):
        tested = c["caught"] + c["missed"]
        return f"{100.0 * c['caught'] / tested:.1f}%" if tested else "-"

    header = ("file", "caught", "missed", "timeout", "unviable", "score")
    rows = [(f, c["caught"], c["missed"], c["timeout"], c["unviable"], score(c))
            for f, c in sorted(per_file.items())]
    total = dict.fromkeys(SUMMARIES.values(), 0)
    for c in per_file.values():
        for k in total:
            total[k] += c[k]
    rows.append(("total", total["caught"], total["missed"], total["timeout"],
                 total["unviable"], score(total)))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    fmt = "  ".join(["{:<%d}" % widths[0]] + ["{:>%d}" % w for w in widths[1:]])
    print(fmt.format(*header))
    for r in rows:
        print(fmt.format(*r))
    print("score = caught / (caught + missed); unviable and timeouts are not counted")
    if args.missed and missed:
        print(f"\nmissed ({len(missed)}):")
        for m in missed:
            print(f"  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
