#!/usr/bin/env python3
"""Checks a file of Prometheus text exposition (format 0.0.4) with the reference Python
parser, prometheus_client's text_string_to_metric_families.

Usage: parse_check.py FILE [FAMILY ...]

Exits non-zero when the text does not parse, when a histogram's buckets are not
cumulative or lack le="+Inf" equal to its _count, or when a FAMILY named on the command
line is missing. Prints one line per family on success.
"""

import math
import sys

from prometheus_client.parser import text_string_to_metric_families


def check_histogram(family):
    """Returns the problems of one histogram family, by series (labels less le)."""
    problems = []
    series = {}
    for s in family.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        entry = series.setdefault(key, {"buckets": [], "count": None, "sum": None})
        if s.name.endswith("_bucket"):
            entry["buckets"].append((float(s.labels["le"]), s.value))
        elif s.name.endswith("_count"):
            entry["count"] = s.value
        elif s.name.endswith("_sum"):
            entry["sum"] = s.value
    for key, entry in series.items():
        buckets = entry["buckets"]
        if not buckets or not math.isinf(buckets[-1][0]):
            problems.append(f"{family.name}{dict(key)}: no le=\"+Inf\" bucket last")
            continue
        if [b for b, _ in buckets] != sorted(b for b, _ in buckets):
            problems.append(f"{family.name}{dict(key)}: bounds not ascending")
        counts = [c for _, c in buckets]
        if counts != sorted(counts):
            problems.append(f"{family.name}{dict(key)}: buckets not cumulative")
        if entry["count"] != counts[-1]:
            problems.append(f"{family.name}{dict(key)}: _count differs from +Inf bucket")
        if entry["sum"] is None:
            problems.append(f"{family.name}{dict(key)}: no _sum")
    return problems


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        text = f.read()
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and others on bad input
        print(f"parse error: {e!r}", file=sys.stderr)
        return 1
    problems = []
    for family in families:
        if family.type == "histogram":
            problems += check_histogram(family)
    names = {f.name for f in families}
    problems += [f"missing family {n}" for n in argv[2:] if n not in names]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    for family in families:
        print(f"{family.type} {family.name}: {len(family.samples)} samples")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
