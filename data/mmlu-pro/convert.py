#!/usr/bin/env python3
"""Converts MMLU-Pro's published per-question model outputs into the routing-eval format.

Source: github.com/TIGER-AI-Lab/MMLU-Pro (Apache-2.0):
  - small: eval_results/model_outputs_Mixtral-8x7B-Instruct-v0.1_5shots.zip (the JSON inside)
    at commit f418b11 (any commit with that file);
  - large: eval_results/gpt4o/<category>_result.json (GPT-4o 2024-05-13), 14 files, at
    commit ff991b5b7f14a383fd41da3987447ab6c08bf138 (removed from the repository later).

Only questions MMLU-Pro took from elsewhere than MMLU (src stemez-*, theoremQA-*,
scibench-*) are kept, so that no MMLU question enters through this data. A model's score is
1.0 when its extracted answer equals the key, else 0.0 (no extracted answer: 0.0);
output_chars is the length of its reply. The split rule is routing-eval's: byte 0 of
sha256(prompt) even -> dev, odd -> test.

  python3 data/mmlu-pro/convert.py MIXTRAL_JSON GPT4O_DIR > data/mmlu-pro/mmlu_pro.jsonl
"""
import glob
import hashlib
import json
import os
import sys

SMALL_MODEL = "mixtral-8x7b-instruct-v0.1"
LARGE_MODEL = "gpt-4o-2024-05-13"
LETTERS = "ABCDEFGHIJ"


def options_of(row):
    opts = row["options"]
    if isinstance(opts, str):  # some dumps keep the list's repr
        import ast

        opts = ast.literal_eval(opts)
    return opts


def prompt_of(row):
    opts = options_of(row)
    lines = [row["question"].strip()]
    lines += [f"{LETTERS[i]}. {str(o).strip()}" for i, o in enumerate(opts)]
    lines.append("Answer:")
    return "\n".join(lines)


def split_of(prompt):
    return "dev" if hashlib.sha256(prompt.encode("utf-8")).digest()[0] % 2 == 0 else "test"


def outcome(model, row, text_key):
    text = row.get(text_key) or ""
    return {"model": model, "score": 1.0 if row.get("pred") == row["answer"] else 0.0, "output_chars": len(text)}


def main(mixtral_json, gpt4o_dir):
    small = json.load(open(mixtral_json, encoding="utf-8"))
    large = {}
    for f in sorted(glob.glob(os.path.join(gpt4o_dir, "*_result.json"))):
        for row in json.load(open(f, encoding="utf-8")):
            large[row["question_id"]] = row
    kept = 0
    for row in sorted(small, key=lambda r: r["question_id"]):
        if row["src"].startswith("ori_mmlu"):
            continue
        big = large.get(row["question_id"])
        if big is None:
            continue
        if big["answer"] != row["answer"] or options_of(big) != options_of(row):
            raise SystemExit(f"question {row['question_id']}: the two files disagree on the question")
        prompt = prompt_of(row)
        out = {
            "id": f"mmlu_pro-{row['question_id']}",
            "benchmark": "mmlu_pro",
            "category": row["category"].replace(" ", "_"),
            "split": split_of(prompt),
            "prompt": prompt,
            "small": outcome(SMALL_MODEL, row, "generated_text"),
            "large": outcome(LARGE_MODEL, big, "response"),
        }
        sys.stdout.write(json.dumps(out, ensure_ascii=False) + "\n")
        kept += 1
    print(f"{kept} rows", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
