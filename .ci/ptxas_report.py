"""Reads the ptxas reports (nvcc -Xptxas=-v) in a build log: prints registers, spills and
shared memory of every CUDA kernel per target, and exits 1 if any kernel spills."""

import re
import shutil
import subprocess
import sys


def _demangle(names):
    if not names or shutil.which("c++filt") is None:
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out))


def main(path: str) -> int:
    rows, current = [], None
    for line in open(path, errors="replace"):
        entry = re.search(r"Compiling entry function '([^']+)' for '(sm_\w+)'", line)
        if entry:
            current = {"name": entry.group(1), "arch": entry.group(2), "spill": 0, "regs": 0, "smem": 0}
            rows.append(current)
            continue
        if current is None:
            continue
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spills:
            current["spill"] = int(spills.group(1)) + int(spills.group(2))
        used = re.search(r"Used (\d+) registers", line)
        if used:
            current["regs"] = int(used.group(1))
            smem = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(smem.group(1)) if smem else 0
    if not rows:
        print(f"no ptxas reports in {path}: was the extension built with CUDA and -Xptxas=-v?")
        return 1
    names = _demangle(sorted({r["name"] for r in rows}))
    print(f"{'kernel':<90} {'target':<7} {'regs':>5} {'spill B':>8} {'smem B':>7}")
    for r in sorted(rows, key=lambda r: (names[r["name"]], r["arch"])):
        short = names[r["name"]].replace("(anonymous namespace)::", "").replace("pitome::cuda::", "")
        short = re.sub(r"\(.*", "", re.sub(r"^void ", "", short))
        print(f"{short[:90]:<90} {r['arch']:<7} {r['regs']:>5} {r['spill']:>8} {r['smem']:>7}")
    spilled = [r for r in rows if r["spill"]]
    print(f"{len(rows)} kernels, {len(spilled)} spill")
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
