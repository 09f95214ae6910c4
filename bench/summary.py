#!/usr/bin/env python3
"""Tables of bench/run.sh.

  summary.py META RESULTS IDLE ZIPF OUT.md    medians, per-repetition ratios, targets -> OUT.md
  summary.py --readme RESULT.md README.md     copies RESULT.md's tables into README.md's benchmark
                                              section (between the bench:begin/end markers)

RESULTS columns: system case workers rep rps p50 p99 cpu_us hwm_kib requests hit_ratio errors anon_kib.
Ratios cdn-node/X are computed per repetition (the runs of one repetition are back to back) and the
median of those ratios is shown; the other columns are medians over the repetitions.
"""
import bisect
import collections
import os
import random
import statistics
import sys

CASES = {
    "a": "(a) 1 KiB hot hit",
    "b": "(b) 100 KiB hot hit",
    "c": "(c) regional hit, edge not caching",
    "d": "(d) cold miss, 1 connection",
    "e": "(e) mTLS handshakes on the regional",
    "f": "(f) Zipf over a set > edge cache",
}
ORDER = ["cdn-node", "nginx", "ats", "limit"]
NAMES = {"cdn-node": "cdn-node", "nginx": "nginx", "ats": "ATS", "limit": "limit (static TLS)"}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(v, nd=1):
    if v is None:
        return "-"
    if nd == 0:
        return "%.0f" % v
    return ("%." + str(nd) + "f") % v


def lru_hit_ratios(n, alpha, capacity, warm, reps, seed=12345):
    """Hit ratio of an LRU cache of `capacity` objects on a Zipf(n, alpha) trace: `warm` requests
    first, then one ratio per entry of `reps` (request counts), like the bench's runs."""
    rnd = random.Random(seed)
    cdf, s = [], 0.0
    for k in range(1, n + 1):
        s += 1.0 / k**alpha
        cdf.append(s)
    cdf = [x / s for x in cdf]
    cache = collections.OrderedDict()

    def run(count):
        hits = 0
        for _ in range(count):
            k = bisect.bisect_left(cdf, rnd.random())
            if k in cache:
                cache.move_to_end(k)
                hits += 1
            else:
                cache[k] = True
                if len(cache) > capacity:
                    cache.popitem(last=False)
        return hits / count if count else 0.0

    run(warm)
    return [run(c) for c in reps]


def summarize(meta_f, res_f, idle_f, zipf_f, out_f):
    meta = collections.OrderedDict()
    left_out = []
    for line in open(meta_f):
        k, _, v = line.rstrip("\n").partition("=")
        if k == "left_out":
            left_out.append(v)
        elif k in ("note", "cdnstats"):
            meta.setdefault(k, []).append(v)
        else:
            meta[k] = v
    rows = collections.defaultdict(dict)  # (case, workers, system) -> rep -> fields
    for line in open(res_f):
        f = line.rstrip("\n").split("\t")
        if len(f) < 13:
            continue
        sysn, case, w, rep = f[0], f[1], int(f[2]), int(f[3])
        rows[(case, w, sysn)][rep] = {
            "rps": num(f[4]), "p50": num(f[5]), "p99": num(f[6]), "cpu": num(f[7]),
            "hwm": num(f[8]), "req": num(f[9]), "hit": num(f[10]), "err": num(f[11]), "anon": num(f[12]),
        }
    warm = {}
    for line in open(zipf_f):
        f = line.rstrip("\n").split("\t")
        if len(f) == 3 and f[2]:
            warm[(f[0], int(f[1]))] = int(f[2])
    zn, za, zs, _ = meta.get("zipf", "20000 1.0 16384 6").split()
    zn, za, zs = int(zn), float(za), int(zs)
    capacity = int(meta.get("edge_cache_mb", "128")) * 1048576 // zs

    workers = sorted({k[1] for k in rows})
    systems = [s for s in ORDER if any(k[2] == s for k in rows)]
    others = [s for s in ("nginx", "ats", "limit") if s in systems]

    def ratio(case, w, other, field):
        a, b = rows.get((case, w, "cdn-node"), {}), rows.get((case, w, other), {})
        rs = [a[r][field] / b[r][field] for r in a if r in b and a[r][field] and b[r][field]]
        return med(rs)

    lru = {}
    head = ["case", "workers", "system", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "peak RSS MiB", "anon RSS MiB", "edge hit %",
            "LRU hit %"]
    head += ["req/s ÷ " + NAMES[o].split()[0] for o in others]
    head += ["CPU ÷ " + NAMES[o].split()[0] for o in others]
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "--:|" * (len(head) - 3)]
    med_of = {}
    for case in CASES:
        for w in workers:
            for s in systems:
                reps = rows.get((case, w, s))
                if not reps:
                    continue
                m = {k: med([r[k] for r in reps.values()]) for k in ("rps", "p50", "p99", "cpu", "hwm", "hit", "anon")}
                med_of[(case, w, s)] = m
                lru_s = "-"
                if case == "f" and (s, w) in warm:
                    ordered = [reps[r]["req"] for r in sorted(reps)]
                    lr = lru_hit_ratios(zn, za, capacity, warm[(s, w)], [int(x or 0) for x in ordered])
                    lru[(w, s)] = med(lr)
                    lru_s = fmt(100 * lru[(w, s)])
                cells = [CASES[case], str(w), NAMES[s], fmt(m["rps"], 0), fmt(m["p50"], 2), fmt(m["p99"], 2),
                         fmt(m["cpu"]), fmt(m["hwm"] / 1024 if m["hwm"] else None), fmt(m["anon"] / 1024 if m["anon"] else None),
                         fmt(100 * m["hit"]) if m["hit"] is not None else "-", lru_s]
                if s == "cdn-node":
                    cells += [fmt(ratio(case, w, o, "rps"), 2) for o in others]
                    cells += [fmt(ratio(case, w, o, "cpu"), 2) for o in others]
                else:
                    cells += ["-"] * (2 * len(others))
                table.append("| " + " | ".join(cells) + " |")

    idle = []
    for line in open(idle_f):
        f = line.rstrip("\n").split("\t")
        if len(f) == 6:
            idle.append(f)
    itable = []
    if idle:
        itable = ["| system | connections opened | still open at the end | edge anon RSS before MiB | edge anon RSS with them MiB | KiB per connection |",
                  "|---|--:|--:|--:|--:|--:|"]
        for f in idle:
            itable.append("| %s | %s | %s | %.1f | %.1f | %.2f |" % (NAMES.get(f[0], f[0]), f[1], f[2], int(f[3]) / 1024,
                                                                   int(f[4]) / 1024, float(f[5])))

    # targets of issue 8, judged on the medians
    tgt = []

    def m(case, w, s, k):
        return med_of.get((case, w, s), {}).get(k)

    def line(name, ok, text):
        tgt.append("| %s | %s | %s |" % (name, {True: "met", False: "missed", None: "not measured"}[ok], text))

    for w in workers:
        r, c = ratio("a", w, "nginx", "rps"), m("a", w, "cdn-node", "cpu")
        ok = None if r is None or c is None else (r >= 1.5 and c <= 17)
        line("(a) ≥ 1.5× nginx req/s, ≤ 17 µs/req, %d worker(s)" % w, ok, "%s× nginx, %s µs/req" % (fmt(r, 2), fmt(c)))
        r, c = ratio("b", w, "ats", "rps"), m("b", w, "cdn-node", "cpu")
        ok = None if r is None or c is None else (r >= 1.3 and c <= 90)
        line("(b) ≥ 1.3× ATS req/s, ≤ 90 µs/req, %d worker(s)" % w, ok, "%s× ATS, %s µs/req" % (fmt(r, 2), fmt(c)))
        r, c = ratio("c", w, "nginx", "rps"), m("c", w, "cdn-node", "cpu")
        ok = None if r is None or c is None else (r >= 1.5 and c <= 40)
        line("(c) ≥ 1.5× nginx req/s, ≤ 40 µs/req (both tiers), %d worker(s)" % w, ok,
             "%s× nginx, %s µs/req" % (fmt(r, 2), fmt(c)))
        r = ratio("e", w, "limit", "cpu")
        ok = None if r is None else r <= 1.10
        line("(e) CPU per handshake ≤ 1.10× the static TLS server's, %d worker(s)" % w, ok, "%s×" % fmt(r, 2))
        h, l = m("f", w, "cdn-node", "hit"), lru.get((w, "cdn-node"))
        ok = None if h is None or l is None else h >= l
        line("(f) edge hit ratio ≥ LRU's at equal size, %d worker(s)" % w, ok,
             "%s %% vs LRU %s %%" % (fmt(100 * h if h is not None else None), fmt(100 * l if l is not None else None)))
    cdn_idle = [float(f[5]) for f in idle if f[0] == "cdn-node"]
    ok = None if not cdn_idle else cdn_idle[0] <= 4
    line("(g) ≤ 4 KiB per idle connection", ok, "%s KiB" % (fmt(cdn_idle[0], 2) if cdn_idle else "-"))
    for key, what in (("hwm", "peak RSS (VmHWM, file pages included)"), ("anon", "anon RSS (RssAnon)")):
        peaks = {}
        for sy in ("cdn-node", "nginx"):
            vals = [v[key] for (case, w, s2), v in med_of.items() if s2 == sy and v[key]]
            peaks[sy] = max(vals) if vals else None
        ok = None if None in peaks.values() else peaks["cdn-node"] <= peaks["nginx"]
        line("%s ≤ nginx's (all server processes of the system, highest median)" % what, ok,
             "%s MiB vs %s MiB" % (fmt(peaks["cdn-node"] / 1024 if peaks["cdn-node"] else None),
                                   fmt(peaks["nginx"] / 1024 if peaks["nginx"] else None)))

    with open(out_f, "w") as o:
        o.write("# make bench: cdn-node vs nginx vs ATS, %s\n\n" % meta.get("date", ""))
        for v in meta.get("note", []):
            o.write("**%s**\n\n" % v)
        o.write("Machine: %s. Versions: %s. Load: %s.\n" % (meta.get("machine"), meta.get("versions"), meta.get("load")))
        o.write("Runs: %s s each, %s repetitions, each system back to back within a repetition; wrk `-t%s -c%s` "
                "over HTTPS keep-alive on 127.0.0.1 (cases a, b, c, f), `wrk -t1 -c1` with a new URL per request "
                "(d), `openssl s_time -new` with the edge's client certificate (e). Zipf: %d objects of %d bytes, "
                "alpha %s, edge caches of %s MiB (%d objects), %s s warm-up per system. Measuring took %s s.\n\n"
                % (meta.get("duration"), meta.get("reps"), meta.get("threads"), meta.get("conns"), zn, zs, za,
                   meta.get("edge_cache_mb"), capacity, meta.get("zipf", "").split()[-1], meta.get("elapsed")))
        tls = [(k[4:], v) for k, v in meta.items() if k.startswith("tls_") and v.strip()]
        if tls:
            o.write("TLS negotiated with each edge: %s.\n\n" % "; ".join("%s %s" % (NAMES.get(s, s), v) for s, v in tls))
        for l in left_out:
            o.write("Left out: %s.\n\n" % l)
        o.write("How to read it: medians over the repetitions. CPU µs/req is utime+stime of every server process "
                "of the system (edge, regional, and for cdn-node the second, non-caching edge of case c; nginx: "
                "masters, workers and cache processes) from /proc/PID/stat over the run, divided by the requests "
                "wrk made (case e: per handshake; only the regional works then). Kernel softirq work on loopback "
                "is charged to no process and is left out for all. Peak RSS is VmHWM summed over the same "
                "processes, since their start (so it only grows from case to case); it includes file-backed pages, "
                "and cdn-node serves hits from its LMDB store's file mapping, so the store pages a case touched "
                "count in cdn-node's figure while nginx's and ATS's cache files, read() through the page cache, "
                "do not. Anon RSS (RssAnon after the run, summed) leaves file pages out for all. `÷` columns are cdn-node "
                "divided by the other system, per repetition, median. Edge hit % (f) comes from each system's "
                "own response header (Cache-Status, X-Cache, ATS Via codes); LRU hit % is a simulated LRU of the "
                "same object capacity on the same Zipf distribution and request counts.\n\n")
        o.write("\n".join(table) + "\n\n")
        if itable:
            o.write("(g) idle keep-alive TLS connections to the edge (%s workers):\n\n" % meta.get("idle_workers", workers[-1] if workers else "?"))
            o.write("\n".join(itable) + "\n\n")
        if meta.get("cdnstats"):
            o.write("cdn-node's cache counters (`/stats`) at the end of each worker count:\n\n")
            for v in meta["cdnstats"]:
                o.write("- %s\n" % v)
            o.write("\n")
        o.write("Targets of issue 8:\n\n| target | | measured |\n|---|---|---|\n" + "\n".join(tgt) + "\n")


def readme(result_md, readme_md):
    body = open(result_md).read().split("\n", 1)[1].strip()
    rel = os.path.relpath(result_md, os.path.dirname(os.path.abspath(readme_md)))
    block = "%s\n%s\n\n(From [%s](%s), written by `make bench`.)\n%s" % (BEGIN, body, rel, rel, END)
    text = open(readme_md).read()
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + ("\n\n## Benchmarks\n\n`make bench` (bench/run.sh, [bench/README.md](bench/README.md)) "
                                    "compares cdn-node with nginx and Apache Traffic Server in the same two-tier mTLS "
                                    "topology. The latest run:\n\n" + block + "\n")
    open(readme_md, "w").write(text)


if __name__ == "__main__":
    if sys.argv[1] == "--readme":
        readme(sys.argv[2], sys.argv[3])
    else:
        summarize(*sys.argv[1:6])
