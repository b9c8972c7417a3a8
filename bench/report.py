"""Turns pytest-benchmark JSON into a Markdown table of MB/s and ratios.

  python bench/report.py bench/tokenizer.json [--anchor "pybert 1 thread(s)"]

Ratios are against the anchor row of the same group, measured in the same run.
"""

import argparse
import json
import platform
from collections import defaultdict


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json_file")
    parser.add_argument("--anchor", default="pybert 1 thread(s)")
    args = parser.parse_args()
    with open(args.json_file) as f:
        data = json.load(f)
    groups = defaultdict(list)
    for b in data["benchmarks"]:
        info = b.get("extra_info", {})
        if "bytes" not in info:
            continue
        mbps = info["bytes"] / 1e6 / b["stats"]["median"]
        groups[b["group"]].append((info.get("name", b["name"]), b["stats"]["median"], mbps))
    machine = data.get("machine_info", {})
    print(
        f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores; "
        f"Python {machine.get('python_version', '?')}; {data.get('datetime', '')[:19]}"
    )
    for group, rows in groups.items():
        anchor = next((r for r in rows if r[0] == args.anchor), None)
        print(f"\n### {group}\n")
        print("| implementation | median s | MB/s | pybert 1 thread / this |")
        print("|---|---:|---:|---:|")
        for name, median, mbps in sorted(rows, key=lambda r: -r[2]):
            ratio = f"{anchor[2] / mbps:.2f}x" if anchor else "-"
            print(f"| {name} | {median:.4f} | {mbps:.1f} | {ratio} |")


if __name__ == "__main__":
    main()
