"""Turns pytest-benchmark JSON files into Markdown tables of rates and ratios.

  python bench/report.py bench/tokenizer.json bench/squad.json

Each benchmark records what it processed (extra_info: bytes, or items + unit)
and one row per group is the anchor (pybert on one thread, extra_info
anchor=True); ratios are against it, measured in the same run.
"""

import argparse
import json
import platform
from collections import defaultdict


def rows_of(data):
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        # interleaved best round when the benchmark ran one (see bench_tokenizer.py),
        # else the best round: this host is shared and its speed drifts
        median = info.get("interleaved_s", b["stats"]["min"])
        if "bytes" in info:
            rate, unit = info["bytes"] / 1e6 / median, "MB/s"
        elif "items" in info:
            rate, unit = info["items"] / median, f"{info.get('unit', 'items')}/s"
        else:
            continue
        groups[b["group"]].append(
            (info.get("name", b["name"]), median, rate, unit, bool(info.get("anchor")))
        )
    return groups


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json_files", nargs="+")
    args = parser.parse_args()
    for path in args.json_files:
        with open(path) as f:
            data = json.load(f)
        machine = data.get("machine_info", {})
        cpu = machine.get("cpu", {})
        print(
            f"From {path}: {cpu.get('brand_raw', platform.processor())}, "
            f"{cpu.get('count', '?')} cores, Python {machine.get('python_version', '?')}, "
            f"{data.get('datetime', '')[:19]}"
        )
        for group, rows in rows_of(data).items():
            anchor = next((r for r in rows if r[4]), None)
            print(f"\n### {group}\n")
            print("| implementation | best of rounds, s | rate | anchor rate / this rate |")
            print("|---|---:|---:|---:|")
            for name, median, rate, unit, _ in sorted(rows, key=lambda r: -r[2]):
                ratio = f"{anchor[2] / rate:.2f}x" if anchor else "-"
                print(f"| {name} | {median:.4f} | {rate:,.1f} {unit} | {ratio} |")
            print()


if __name__ == "__main__":
    main()
