#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turn one run of scripts/bench.sh into the published figures.

Reads the raw figures syslet_bench wrote (RUN/syslet-bench.json) and fio's
reports (RUN/fio-ENGINE-DEPTH.json); writes bench/results.json (every raw
figure, fio's included), bench/results.png (the plot) and the README's
table between its bench markers. Every ratio is taken within one repetition
(contenders measured in the same guest, minutes apart), then the median and
the spread (min..max) over the repetitions are shown.

Usage: bench-report.py RUN_DIR REPO
"""
import glob
import json
import os
import re
import statistics
import sys

BEGIN = "<!-- bench:begin (scripts/bench.sh writes this table) -->"
END = "<!-- bench:end -->"


def load(run_dir):
    with open(os.path.join(run_dir, "syslet-bench.json")) as f:
        data = json.load(f)
    # fio's reports: fio-b3-ENGINE-DEPTH.json and fio-b4-ENGINE.json (B4 at
    # depth 32, psync at 1). The whole reports are kept in bench/fio/results/.
    data["fio"] = []
    for path in sorted(glob.glob(os.path.join(run_dir, "fio-b*.json"))):
        m = re.match(r"fio-(b3|b4)-(\w+?)(?:-(\d+))?\.json", os.path.basename(path))
        bench, engine, depth = m.groups()
        with open(path) as f:
            text = f.read()
        # fio may print notes before its JSON.
        report = json.loads(text[text.index("{"):])
        # B4's [warm] job fills the cache and is not measured.
        jobs = [j for j in report["jobs"] if j["jobname"] != "warm"]
        iops = sum(job["read"]["iops"] for job in jobs)
        if depth is None:
            depth = 1 if engine == "psync" else 32
        data["fio"].append({"bench": bench.upper(), "engine": engine, "depth": int(depth),
                            "iops": iops})
    return data


def fio_iops(data, bench, engine, depth):
    for x in data["fio"]:
        if x["bench"] == bench and x["engine"] == engine and x["depth"] == depth:
            return x["iops"]
    return None


def series(data, section, workload, contender, param, metric):
    """The figure of each repetition: {rep: value}."""
    return {
        g["rep"]: g["value"]
        for g in data["figures"]
        if g["section"] == section and g["workload"] == workload
        and g["contender"] == contender and g["param"] == param and g["metric"] == metric
    }


def ratio(data, a, b):
    """Median and spread of a/b over the repetitions both have."""
    sa, sb = series(data, *a), series(data, *b)
    r = [sa[k] / sb[k] for k in sa if k in sb and sb[k]]
    if not r:
        return None
    return statistics.median(r), min(r), max(r)


def fmt(r, target=None):
    if r is None:
        return "n/a"
    med, lo, hi = r
    s = f"{med:.2f}x ({lo:.2f}-{hi:.2f})"
    return s


def median(data, *key):
    v = list(series(data, *key).values())
    return statistics.median(v) if v else None


def table(data):
    rows = []
    add = rows.append
    add("| | What | Result (median, min-max over repetitions) | Target |")
    add("|---|---|---|---|")
    for w, name in (("getppid", "getppid"), ("pread4k", "cached 4 KiB pread")):
        for b in (1, 8, 32):
            s = ratio(data, ("B1", w, "syslet", b, "time"), ("B1", w, "plain", 1, "time"))
            u = ratio(data, ("B1", w, "io_uring", b, "time"), ("B1", w, "plain", 1, "time"))
            target = ""
            if w == "getppid" and b == 1:
                target = "syslet <= 2x"
            elif w == "getppid" and b == 32:
                target = "syslet <= io_uring"
            elif w == "pread4k" and b == 32:
                target = "syslet <= 1.0x"
            add(f"| B1 | {name}, {b} per exec/enter, per op vs a plain call | "
                f"syslet {fmt(s)}; io_uring {fmt(u)} | {target} |")
    for p in ("p50", "p99"):
        r = ratio(data, ("B2", "block", "syslet", 0, p), ("B2", "block", "futex", 0, p))
        s = median(data, "B2", "block", "syslet", 0, p)
        f = median(data, "B2", "block", "futex", 0, p)
        target = "<= 1.5x" if p == "p50" else "reported"
        add(f"| B2 | handoff {p}: submit to user code on the spare, vs futex wake-to-run | "
            f"{fmt(r)} ({s / 1000:.0f} us vs {f / 1000:.0f} us) | {target} |")
    for d in (1, 8, 32):
        cells = []
        for c in ("syslet", "aio", "pool", "pread"):
            r = ratio(data, ("B3", "odirect", c, d, "rate"), ("B3", "odirect", "io_uring", d, "rate"))
            if r:
                cells.append(f"{c} {fmt(r)}")
        u = median(data, "B3", "odirect", "io_uring", d, "rate")
        fio = ", ".join(f"fio {x['engine']} {x['iops'] / 1000:.1f}k"
                        for x in data["fio"] if x["bench"] == "B3" and x["depth"] == d)
        target = "syslet >= 0.8x, >= pool" if d == 32 else ""
        if u:
            add(f"| B3 | O_DIRECT 4 KiB random reads, depth {d}: IOPS vs io_uring "
                f"({u / 1000:.1f}k/s) | {'; '.join(cells)}; {fio} | {target} |")
    u = ratio(data, ("B4", "mixed", "syslet", 32, "rate"), ("B4", "mixed", "io_uring", 32, "rate"))
    p = ratio(data, ("B4", "mixed", "syslet", 32, "rate"), ("B4", "mixed", "pool", 32, "rate"))
    if u:
        add(f"| B4 | 90% cached / 10% miss, depth 32: syslet vs io_uring; vs pool | "
            f"{fmt(u)}; {fmt(p)} | >= 1.0x; >= 1.5x |")
    # fio: one run per engine and depth, the same job file for all.
    for bench, depths, what in (("B3", (1, 8, 32), "O_DIRECT 4 KiB random reads"),
                                ("B4", (32,), "buffered random reads, 90% cached")):
        for d in depths:
            u = fio_iops(data, bench, "io_uring", d)
            cells = []
            for e in ("syslet", "libaio", "psync"):
                v = fio_iops(data, bench, e, d if bench == "B3" or e != "psync" else 1)
                if u and v:
                    # psync is synchronous: B3 runs depth threads of it, B4 one.
                    how = ""
                    if e == "psync" and bench == "B3" and d > 1:
                        how = f" ({d} threads)"
                    elif e == "psync" and bench == "B4":
                        how = " (depth 1)"
                    cells.append(f"{e} {v / u:.2f}x{how}")
            if u:
                add(f"| {bench} in fio | {what}, depth {d}: fio IOPS vs fio io_uring "
                    f"({u / 1000:.1f}k/s; one run) | {'; '.join(cells)} | |")
    for w, name in (("odirect", "B3 depth 32"), ("mixed", "B4")):
        cells = []
        for c in ("syslet", "io_uring", "aio", "pool"):
            m = median(data, "B5", w, c, 32, "threads")
            if m is not None:
                cells.append(f"{c} {m:.2f}")
        if cells:
            add(f"| B5 | threads beyond the submitter per op in flight, {name} | "
                f"{'; '.join(cells)} | syslet <= 1 + a small reserve |")
    return "\n".join(rows)


def plot(data, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    ax = axes[0][0]
    labels, syslet, uring = [], [], []
    for w in ("getppid", "pread4k"):
        for b in (1, 8, 32):
            labels.append(f"{w}\nx{b}")
            s = ratio(data, ("B1", w, "syslet", b, "time"), ("B1", w, "plain", 1, "time"))
            u = ratio(data, ("B1", w, "io_uring", b, "time"), ("B1", w, "plain", 1, "time"))
            syslet.append(s[0] if s else 0)
            uring.append(u[0] if u else 0)
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], syslet, 0.4, label="syslet")
    ax.bar([i + 0.2 for i in x], uring, 0.4, label="io_uring")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("time per op / plain call")
    ax.set_title("B1 inline cost (lower is better)")
    ax.legend()

    ax = axes[0][1]
    vals = []
    for c in ("syslet", "futex"):
        vals.append([(median(data, "B2", "block", c, 0, p) or 0) / 1000 for p in ("p50", "p99")])
    ax.bar([-0.2, 0.8], vals[0], 0.4, label="syslet handoff")
    ax.bar([0.2, 1.2], vals[1], 0.4, label="futex wake-to-run")
    ax.set_xticks([0, 1], ["p50", "p99"])
    ax.set_ylabel("us")
    ax.set_title("B2 handoff latency (lower is better)")
    ax.legend()

    ax = axes[1][0]
    contenders = ("syslet", "io_uring", "aio", "pool", "pread")
    for i, c in enumerate(contenders):
        ys = [(median(data, "B3", "odirect", c, d, "rate") or 0) / 1000 for d in (1, 8, 32)]
        ax.bar([j + (i - 2) * 0.16 for j in range(3)], ys, 0.16, label=c)
    ax.set_xticks(range(3), ["depth 1", "depth 8", "depth 32"])
    ax.set_ylabel("k IOPS")
    ax.set_title("B3 O_DIRECT random 4 KiB reads, null_blk 100 us")
    ax.legend(fontsize=8)

    ax = axes[1][1]
    cs = ("syslet", "io_uring", "pool")
    ys = [(median(data, "B4", "mixed", c, 32, "rate") or 0) / 1000 for c in cs]
    ax.bar(range(3), ys, 0.5)
    ax.set_xticks(range(3), cs)
    ax.set_ylabel("k ops/s")
    ax.set_title("B4 90% cached / 10% miss, depth 32")

    fig.suptitle(f"syslet_bench {data['date']}, kernel {data['kernel']}, "
                 f"{data['cpus']} CPUs, {data['reps']} repetitions")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main():
    run_dir, repo = sys.argv[1], sys.argv[2]
    data = load(run_dir)
    out = os.path.join(repo, "bench")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(data, f, indent=1)
    plot(data, os.path.join(out, "results.png"))
    text = (f"{BEGIN}\n\n`scripts/bench.sh`, {data['date']}, kernel {data['kernel']} "
            f"(release flavor), {data['cpus']} vCPUs, {data['reps']} repetitions, "
            f"{data['ops']} ops per B1 row; raw figures in `bench/results.json`.\n\n"
            f"{table(data)}\n\n![syslet_bench](bench/results.png)\n\n{END}")
    print(table(data))
    readme = os.path.join(repo, "README.md")
    with open(readme) as f:
        body = f.read()
    if BEGIN in body and END in body:
        body = body[:body.index(BEGIN)] + text + body[body.index(END) + len(END):]
        with open(readme, "w") as f:
            f.write(body)
    else:
        print(f"bench-report: no bench markers in {readme}; table not written", file=sys.stderr)


if __name__ == "__main__":
    main()
