#!/usr/bin/env python3
"""Prints the ratios the performance targets are stated in, as Markdown tables.

Reads the estimates criterion saved for the last run of `cargo bench --bench verify`
(in target/criterion) and, when it was run, of the `svix` comparison in benches/peer
(in benches/peer/target/criterion). Times are criterion's median per iteration of
the bench thread's CPU time. Compare only numbers of one run.

    python3 benches/ratios.py [CRITERION_DIR ...]
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIRS = [ROOT / "target/criterion", ROOT / "benches/peer/target/criterion"]


def load(dirs):
    """{group: {function: (median seconds, body bytes)}} for every benchmark found."""
    out = {}
    for base in dirs:
        for meta in sorted(Path(base).glob("*/*/new/benchmark.json")):
            info = json.loads(meta.read_text())
            estimates = json.loads((meta.parent / "estimates.json").read_text())
            seconds = estimates["median"]["point_estimate"] * 1e-9
            size = (info.get("throughput") or {}).get("Bytes")
            out.setdefault(info["group_id"], {})[info["value_str"] or info["function_id"]] = (
                seconds,
                size,
            )
    return out


def fmt_time(seconds):
    for unit, scale in (("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def size_of(rows):
    return next(size for _, size in rows.values() if size is not None)


def by_size(groups, prefix):
    found = [(size_of(rows), name, rows) for name, rows in groups.items() if name.startswith(prefix)]
    return sorted(found)


def main():
    dirs = [Path(d) for d in sys.argv[1:]] or DEFAULT_DIRS
    groups = load(d for d in dirs if Path(d).is_dir())

    core = by_size(groups, "message_received/")
    if core:
        print("| body | HMAC | borrowed parse | limit (sum) | `verify_and_parse` "
              "| ÷ limit (≤ 1.10) | naive | naive ÷ `verify_and_parse` (≥ 2.2 at 1 KiB) |")
        print("|---|---|---|---|---|---|---|---|")
        for _, name, rows in core:
            t = {k: v[0] for k, v in rows.items()}
            limit = t["hmac"] + t["borrowed_parse"]
            core_t = t["verify_and_parse"]
            print(f"| {name.split('/', 1)[1]} | {fmt_time(t['hmac'])} "
                  f"| {fmt_time(t['borrowed_parse'])} | {fmt_time(limit)} | {fmt_time(core_t)} "
                  f"| **{core_t / limit:.2f}×** | {fmt_time(t['naive'])} "
                  f"| **{t['naive'] / core_t:.2f}×** |")
        print()
        print("| body | `verify` ÷ HMAC | `parse` ÷ borrowed parse "
              "| borrowed parse via `from_str` | `verify_and_parse` ÷ (HMAC + that) |")
        print("|---|---|---|---|---|")
        for _, name, rows in core:
            t = {k: v[0] for k, v in rows.items()}
            strict = t["hmac"] + t["borrowed_parse_str"]
            print(f"| {name.split('/', 1)[1]} | {t['verify'] / t['hmac']:.2f}× "
                  f"| {t['parse'] / t['borrowed_parse']:.2f}× "
                  f"| {fmt_time(t['borrowed_parse_str'])} "
                  f"| {t['verify_and_parse'] / strict:.2f}× |")

    peer = by_size(groups, "svix/")
    if peer:
        if core:
            print()
        print("| body | svix `verify` | `verify` | svix ÷ ours (≥ 5 at 1 KiB) "
              "| `verify` + `parse` | svix ÷ ours (≥ 2.5 at 1 KiB) |")
        print("|---|---|---|---|---|---|")
        for _, name, rows in peer:
            t = {k: v[0] for k, v in rows.items()}
            print(f"| {name.split('/', 1)[1]} | {fmt_time(t['svix_verify'])} "
                  f"| {fmt_time(t['verify'])} | **{t['svix_verify'] / t['verify']:.2f}×** "
                  f"| {fmt_time(t['verify_and_parse'])} "
                  f"| **{t['svix_verify'] / t['verify_and_parse']:.2f}×** |")

    if not core and not peer:
        sys.exit("no criterion results found: run `cargo bench --bench verify` first")


if __name__ == "__main__":
    main()
