#!/usr/bin/env bash
# Statistics and the admin listener, on both tiers (each with a cache: and an admin: block):
# /healthz, /readyz, unknown paths and methods, and that the admin is not reachable through the
# public listener; counters that move by exactly what a miss, a hit, a pooled upstream connection, a
# refused client certificate and an unreachable upstream should add; /metrics as strict Prometheus
# text exposition 0.0.4 that agrees with /stats row by row (docs/STATS.md's table) and passes
# promtool when it is installed; PURGE on the edge and on the regional (public URL and cache key
# URL forms), and that a purge at one tier leaves the other tier's copy alone.
#
# Counters are compared as deltas from a snapshot taken before the step (stats_base), by a python3
# helper that polls /stats for a few seconds until every expectation holds, since a scrape is not an
# atomic snapshot (docs/STATS.md) and a response can reach the client an instant before its
# counters are written. Expectations are "d:KEYS OP N" (delta since the snapshot) or "v:KEYS OP N"
# (current value); KEYS is one JSON key or a sum/difference of several (a+b-c), a dotted key reads
# into a histogram object (request_duration_seconds.count); OP is ==, >= or <= (quote those two:
# unquoted, the shell takes > and < for redirections).
set -eu
# shellcheck source=test/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

# the interpreter itself, not a version manager's shim (which can take 0.3 s per start)
PY=$(python3 -c 'import sys; print(sys.executable)') || fail "python3 is needed"
MA='hdr=Cache-Control:max-age%3D60'
TTL='(5[0-9]|60)' # a ttl at most a few seconds below max-age=60

# --- the python3 helpers: /stats polling and a strict Prometheus text parser -------------------------
cat >"$T/stats.py" <<'PYEOF'
import json
import math
import re
import sys
import time
import http.client


def die(msg):
    sys.stderr.write(msg.rstrip("\n") + "\n")
    sys.exit(1)


def fetch(port, path):
    c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read().decode("utf-8", "replace")
    finally:
        c.close()


def no_dup_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate JSON key %r" % k)
        d[k] = v
    return d


def get_stats(port, role):
    st, ct, body = fetch(port, "/stats")
    if st != 200:
        die("GET /stats on admin port %s: status %d: %s" % (port, st, body[:500]))
    if not ct.startswith("application/json"):
        die("GET /stats: Content-Type %r, expected application/json" % ct)
    try:
        j = json.loads(body, object_pairs_hook=no_dup_keys)
    except ValueError as e:
        die("GET /stats: not JSON (%s): %s" % (e, body[:500]))
    if not isinstance(j, dict) or j.get("role") != role:
        die("GET /stats: role %r, expected %r" % (j.get("role") if isinstance(j, dict) else j, role))
    return j


def lookup(j, key):
    v = j
    for part in key.split("."):
        if not isinstance(v, dict) or part not in v:
            raise KeyError(key)
        v = v[part]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise KeyError("%s (not a number: %r)" % (key, v))
    return v


TERM = re.compile(r"(d|v):([a-z0-9_.]+(?:[+-][a-z0-9_.]+)*)(==|>=|<=)(-?[0-9]+(?:\.[0-9]+)?)")


def check(term, base, cur):
    m = TERM.fullmatch(term)
    if not m:
        die("bad expectation %r" % term)
    kind, keys, op, want = m.group(1), m.group(2), m.group(3), float(m.group(4))
    total, parts = 0.0, []
    for sign, key in re.findall(r"([+-]?)([a-z0-9_.]+)", keys):
        s = -1 if sign == "-" else 1
        try:
            now = lookup(cur, key)
            was = lookup(base, key) if kind == "d" else 0
        except KeyError as e:
            return "%s: no numeric key %s in /stats" % (term, e)
        total += s * (now - was)
        parts.append("%s %s -> %s" % (key, was, now) if kind == "d" else "%s = %s" % (key, now))
    ok = {"==": abs(total - want) < 1e-9, ">=": total >= want - 1e-9, "<=": total <= want + 1e-9}[op]
    if ok:
        return None
    return "%s: %s %g, expected %s %g (%s)" % (term, "delta" if kind == "d" else "value", total, op, want,
                                              "; ".join(parts))


def cmd_snap(*args):
    for port, role, out in zip(args[0::3], args[1::3], args[2::3]):
        with open(out, "w") as f:
            json.dump(get_stats(port, role), f)


def cmd_expect(port, role, base_file, what, *terms):
    with open(base_file) as f:
        base = json.load(f)
    deadline = time.monotonic() + 5
    while True:
        cur = get_stats(port, role)
        bad = [r for r in (check(t, base, cur) for t in terms) if r is not None]
        if not bad:
            return
        if time.monotonic() > deadline:
            die("%s /stats, %s (still so after 5 s):\n  %s" % (role, what, "\n  ".join(bad)))
        time.sleep(0.05)


# ---- Prometheus text exposition format 0.0.4, strictly ----

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
VALUE = r"(?:[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[-+]?Inf|NaN)"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
HELP_RE = re.compile(r"# HELP (" + NAME + r") ((?:[^\\\n]|\\[\\n])+)")
TYPE_RE = re.compile(r"# TYPE (" + NAME + r") ([a-z]+)")
SAMPLE_RE = re.compile(r"(" + NAME + r")\{(.*)\} (" + VALUE + r")")
LABELS_RE = re.compile(LABEL + r"(?:," + LABEL + r")*")
UNESC = {"\\": "\\", '"': '"', "n": "\n"}


def parse_exposition(text, role):
    """Returns (errors, families): families maps a name to {help, type, samples: [(name, labels, value)]}."""
    errs = []
    fams = {}
    cur = [None]
    series = set()

    def enter(name, ln):
        if cur[0] is not None and cur[0] != name:
            fams[cur[0]]["closed"] = True
        if fams[name]["closed"]:
            errs.append("line %d: family %s continues after another family's lines" % (ln, name))
        cur[0] = name

    if not text.endswith("\n"):
        errs.append("the text does not end with a line feed")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for ln, line in enumerate(lines, 1):
        if line == "":
            errs.append("line %d: empty line" % ln)
            continue
        if line.startswith("#"):
            m = HELP_RE.fullmatch(line) or TYPE_RE.fullmatch(line)
            if m is None:
                errs.append("line %d: a comment that is not a well-formed HELP or TYPE line: %r" % (ln, line))
                continue
            name, arg = m.group(1), m.group(2)
            what = "HELP" if line.startswith("# HELP ") else "TYPE"
            f = fams.setdefault(name, {"help": None, "type": None, "samples": [], "closed": False})
            enter(name, ln)
            if f["samples"]:
                errs.append("line %d: %s of %s after its samples" % (ln, what, name))
            if f[what.lower()] is not None:
                errs.append("line %d: a second %s line for %s" % (ln, what, name))
            if what == "TYPE":
                if arg not in ("counter", "gauge", "histogram"):
                    errs.append("line %d: %s has type %r (expected counter, gauge or histogram)" % (ln, name, arg))
                if arg == "counter" and not name.endswith("_total"):
                    errs.append("line %d: counter %s does not end in _total" % (ln, name))
            f[what.lower()] = arg
            continue
        m = SAMPLE_RE.fullmatch(line)
        if m is None:
            errs.append("line %d: not a sample line 'name{labels} value': %r" % (ln, line))
            continue
        name, lab, val = m.groups()
        fam = None
        if name in fams and fams[name]["type"] not in (None, "histogram"):
            fam = name
        else:
            for suf in ("_bucket", "_sum", "_count"):
                b = name[: -len(suf)]
                if name.endswith(suf) and b in fams and fams[b]["type"] == "histogram":
                    fam = b
        if fam is None:
            errs.append("line %d: sample %s without a HELP and TYPE of its family before it" % (ln, name))
            continue
        f = fams[fam]
        enter(fam, ln)
        if f["help"] is None or f["type"] is None:
            errs.append("line %d: sample %s before its family's HELP and TYPE" % (ln, name))
        if not LABELS_RE.fullmatch(lab):
            errs.append("line %d: malformed labels {%s}" % (ln, lab))
            continue
        labels = {}
        for k, v in re.findall(LABEL, lab):
            if k in labels:
                errs.append("line %d: label %s twice" % (ln, k))
            if k.startswith("__"):
                errs.append("line %d: reserved label name %s" % (ln, k))
            labels[k] = re.sub(r"\\(.)", lambda x: UNESC[x.group(1)], v)
        if labels.get("role") != role:
            errs.append("line %d: %s has role=%r, expected %r" % (ln, name, labels.get("role"), role))
        is_bucket = f["type"] == "histogram" and name == fam + "_bucket"
        if is_bucket != ("le" in labels):
            errs.append("line %d: %s: le label %s" % (ln, name, "missing" if is_bucket else "on a non-bucket sample"))
            continue
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            errs.append("line %d: duplicate series %s%s" % (ln, name, labels))
        series.add(key)
        v = float(val)
        if f["type"] == "counter" and not v >= 0:
            errs.append("line %d: counter %s is %s" % (ln, name, val))
        f["samples"].append((name, labels, v))
    for name, f in fams.items():
        if f["help"] is None or f["type"] is None:
            errs.append("family %s lacks its %s line" % (name, "HELP" if f["help"] is None else "TYPE"))
        if f["type"] == "histogram":
            check_histogram(name, f["samples"], errs)
    return errs, fams


def check_histogram(fam, samples, errs):
    groups = {}
    for name, labels, v in samples:
        g = groups.setdefault(tuple(sorted((k, x) for k, x in labels.items() if k != "le")),
                              {"b": [], "sum": None, "count": None})
        if name == fam + "_bucket":
            le = labels["le"]
            if le != "+Inf" and not re.fullmatch(VALUE, le) or le in ("NaN", "-Inf", "Inf"):
                errs.append("%s: bad le=%r" % (fam, le))
                continue
            g["b"].append((math.inf if le == "+Inf" else float(le), le, v))
        else:
            g["sum" if name.endswith("_sum") else "count"] = v
    for key, g in groups.items():
        b, where = g["b"], "%s%s" % (fam, dict(key))
        if g["count"] is None or g["sum"] is None:
            errs.append("%s: _sum or _count missing" % where)
        if not b:
            errs.append("%s: no buckets" % where)
            continue
        for (l1, _, c1), (l2, s2, c2) in zip(b, b[1:]):
            if not l2 > l1:
                errs.append("%s: le=%s does not follow a smaller bound" % (where, s2))
            if c2 < c1:
                errs.append("%s: bucket le=%s (%g) below the previous one (%g): not cumulative" % (where, s2, c2, c1))
        for _, s, c in b:
            if c != int(c) or c < 0:
                errs.append("%s: bucket le=%s is %g" % (where, s, c))
        if b[-1][1] != "+Inf":
            errs.append("%s: the last bucket is le=%s, not +Inf" % (where, b[-1][1]))
        elif g["count"] is not None and b[-1][2] != g["count"]:
            errs.append("%s: bucket +Inf (%g) differs from _count (%g)" % (where, b[-1][2], g["count"]))


def table_rows(md):
    text = open(md).read()
    part = text[text.index("<!-- BEGIN generated"): text.index("<!-- END generated")]
    rows = []
    for line in part.splitlines():
        m = re.match(r"\| `([a-z0-9_]+)` \| `([^`]+)`[^|]* \| ([a-z ,]+) \|", line)
        if m:
            rows.append(m.groups())
    if len(rows) < 10:
        die("%s: could not read the generated table (%d rows)" % (md, len(rows)))
    return rows


def near(a, b):
    return abs(a - b) <= max(1e-6, 1e-6 * abs(a))


def cross_check(j, fams, rows, role):
    """Every row of docs/STATS.md's table: its JSON member and its Prometheus series agree."""
    errs = []
    want_keys = ["role", "time"] + [r[0] for r in rows] + ["reload_last_error"]
    if list(j.keys()) != want_keys:
        errs.append("/stats members %s, expected (docs/STATS.md order) %s" % (list(j.keys()), want_keys))
    used = set()
    for key, ser, typ in rows:
        if key not in j:
            continue
        m = re.fullmatch(r"(" + NAME + r")(?:\{([a-z_]+)(?:=\"([^\"]*)\")?(?:,[a-z_]+)*\})?", ser)
        if m is None:
            errs.append("docs/STATS.md row %s: cannot read the series %r" % (key, ser))
            continue
        name = m.group(1)
        if typ == "histogram":
            fam = name[: -len("_bucket")]
            used.add(fam)
            f = fams.get(fam)
            if f is None or f["type"] != "histogram":
                errs.append("%s: no histogram family %s in /metrics" % (key, fam))
                continue
            h = j[key]
            got = {}
            for n, labels, v in f["samples"]:
                if set(labels) - {"le"} != {"role"}:
                    errs.append("%s: unexpected labels %s" % (n, labels))
                got[n + ("/" + labels["le"] if "le" in labels else "")] = v
            exp = {fam + "_sum": h["sum"], fam + "_count": h["count"]}
            for le, c in h["buckets"].items():
                exp[fam + "_bucket/" + le] = c
            if set(got) != set(exp):
                errs.append("%s: /metrics series %s, /stats %s" % (key, sorted(got), sorted(exp)))
            for k in set(got) & set(exp):
                if not near(got[k], exp[k]):
                    errs.append("%s: %s is %g in /metrics, %g in /stats" % (key, k, got[k], exp[k]))
        elif typ.startswith("gauge, one series") or typ.startswith("counter, one series"):
            used.add(name)
            f = fams.get(name)
            ptype = typ.split(",")[0]  # SERIES rows are gauges, CSERIES rows counters
            if f is None or f["type"] != ptype:
                errs.append("%s: no %s family %s in /metrics" % (key, ptype, name))
                continue
            got = sorted((tuple(sorted((k, x) for k, x in ls.items() if k != "role")), v) for _, ls, v in f["samples"])
            exp = sorted((tuple(sorted((k, str(x)) for k, x in o.items() if k != "value")), float(o["value"])) for o in j[key])
            if got != exp:
                errs.append("%s: /metrics %s, /stats %s" % (key, got, exp))
        else:
            used.add(name)
            f = fams.get(name)
            ptype = "counter" if typ == "counter" else "gauge"
            if f is None or f["type"] != ptype:
                errs.append("%s: no %s family %s in /metrics" % (key, ptype, name))
                continue
            want_labels = {"role": role}
            if m.group(2) is not None:
                want_labels[m.group(2)] = m.group(3)
            hits = [v for _, ls, v in f["samples"] if ls == want_labels]
            if len(hits) != 1:
                errs.append("%s: %d samples %s%s in /metrics, expected 1" % (key, len(hits), name, want_labels))
            elif not near(hits[0], float(j[key])):
                errs.append("%s: %s%s is %g in /metrics, %s in /stats" % (key, name, want_labels, hits[0], j[key]))
    extra = set(fams) - used
    if extra:
        errs.append("/metrics families not in docs/STATS.md's table: %s" % sorted(extra))
    return errs


def cmd_metrics(port, role, md, out):
    rows = table_rows(md)
    for attempt in range(5):
        j1 = get_stats(port, role)
        st, ct, text = fetch(port, "/metrics")
        j2 = get_stats(port, role)
        if st != 200:
            die("GET /metrics on admin port %s: status %d" % (port, st))
        if not re.match(r"text/plain; version=0\.0\.4(;|$)", ct):
            die("GET /metrics: Content-Type %r, expected text/plain; version=0.0.4" % ct)
        if dict(j1, time=0) == dict(j2, time=0):
            break
        time.sleep(0.2)  # something moved between the scrapes: take them again
    with open(out, "w") as f:
        f.write(text)
    errs, fams = parse_exposition(text, role)
    if not errs:
        errs = cross_check(j2, fams, rows, role)
    if errs:
        die("%s /metrics (%s):\n  %s" % (role, out, "\n  ".join(errs[:40])))
    print("%s /metrics: %d families, %d samples, strict 0.0.4 parse and /stats agree"
          % (role, len(fams), sum(len(f["samples"]) for f in fams.values())))


def cmd_selftest():
    """The parser must refuse what it is meant to refuse (else a lax parser passes anything)."""
    ok = ('# HELP a_total A.\n# TYPE a_total counter\na_total{role="edge"} 1\n'
          '# HELP h H.\n# TYPE h histogram\nh_bucket{role="edge",le="1"} 1\nh_bucket{role="edge",le="+Inf"} 2\n'
          'h_sum{role="edge"} 0.5\nh_count{role="edge"} 2\n')
    errs, _ = parse_exposition(ok, "edge")
    if errs:
        die("selftest: a valid text was refused: %s" % errs)
    bad = {
        "no HELP": ok.replace("# HELP a_total A.\n", ""),
        "two TYPE": ok.replace("# TYPE a_total counter\n", "# TYPE a_total counter\n# TYPE a_total counter\n"),
        "TYPE after samples": ok.replace("# TYPE a_total counter\na_total{role=\"edge\"} 1\n",
                                         "a_total{role=\"edge\"} 1\n# TYPE a_total counter\n"),
        "counter without _total": ok.replace("a_total", "a"),
        "no labels": ok.replace('a_total{role="edge"} 1', "a_total 1"),
        "other role": ok.replace('a_total{role="edge"}', 'a_total{role="regional"}'),
        "no role": ok.replace('a_total{role="edge"}', 'a_total{x="y"}'),
        "bad value": ok.replace('a_total{role="edge"} 1', 'a_total{role="edge"} one'),
        "timestamp": ok.replace('a_total{role="edge"} 1', 'a_total{role="edge"} 1 1700000000'),
        "bad escape": ok.replace('a_total{role="edge"}', 'a_total{role="edge",x="\\q"}'),
        "not cumulative": ok.replace('le="+Inf"} 2', 'le="+Inf"} 0').replace('h_count{role="edge"} 2', 'h_count{role="edge"} 0'),
        "+Inf != count": ok.replace('h_count{role="edge"} 2', 'h_count{role="edge"} 3'),
        "no +Inf": ok.replace('h_bucket{role="edge",le="+Inf"} 2\n', ""),
        "family split": ok + 'a_total{role="edge",k="v"} 2\n',
        "duplicate series": ok.replace('a_total{role="edge"} 1\n', 'a_total{role="edge"} 1\na_total{role="edge"} 1\n'),
        "no final line feed": ok[:-1],
        "empty line": ok.replace("\n# HELP h", "\n\n# HELP h"),
        "stray comment": ok.replace("# HELP h H.\n", "# hello\n# HELP h H.\n"),
        "untyped": ok.replace("# TYPE a_total counter", "# TYPE a_total untyped"),
    }
    for what, text in bad.items():
        errs, _ = parse_exposition(text, "edge")
        if not errs:
            die("selftest: the parser accepted a text with %s" % what)


def cmd_json(file, *pairs):
    """The JSON object in file has each KEY=VALUE (VALUE compared with the member's str())."""
    try:
        with open(file) as f:
            j = json.load(f, object_pairs_hook=no_dup_keys)
    except ValueError as e:
        die("not JSON (%s): %s" % (e, open(file).read()[:500]))
    for p in pairs:
        k, v = p.split("=", 1)
        if not isinstance(j, dict) or k not in j or str(j[k]) != v:
            die("%s: expected %r, got %r in %s" % (k, v, j.get(k) if isinstance(j, dict) else None, json.dumps(j)))


if __name__ == "__main__":
    cmds = {"snap": cmd_snap, "expect": cmd_expect, "metrics": cmd_metrics, "selftest": cmd_selftest,
            "json": cmd_json}
    cmds[sys.argv[1]](*sys.argv[2:])
PYEOF

# role_of NAME: the role of node NAME (the edges here are named edge*)
role_of() {
    case "$1" in
    regional) echo regional ;;
    *) echo edge ;;
    esac
}

# stats_base NAME...: snapshot each NAME's /stats into $T/NAME.base.json (the base of stats_expect's deltas)
stats_base() {
    local n args=()
    for n in "$@"; do
        args+=("$(port_of "$n" admin)" "$(role_of "$n")" "$T/$n.base.json")
    done
    "$PY" "$T/stats.py" snap "${args[@]}" || fail "snapshot of the /stats of $*"
}

# stats_expect NAME WHAT EXPECTATION...: NAME's /stats meets every EXPECTATION within 5 s (see the top)
stats_expect() {
    local name=$1 what=$2
    shift 2
    "$PY" "$T/stats.py" expect "$(port_of "$name" admin)" "$(role_of "$name")" "$T/$name.base.json" \
        "$what" "$@" || fail "counters of $name: $what"
}

# admin_req NAME METHOD TARGET [CURL_ARGS...]: a request to NAME's admin listener; sets ACODE (status)
# and ABODY (body, without its final newline); the head is in $T/ahead, the body in $T/abody.
admin_req() {
    local port
    port=$(port_of "$1" admin)
    rm -f "$T/ahead" "$T/abody"
    ACODE=$(curl -sS --max-time 10 -X "$2" -D "$T/ahead" -o "$T/abody" -w '%{http_code}' "${@:4}" \
        "http://127.0.0.1:$port$3") || fail "$2 $3 on $1's admin listener: curl exit $?"
    [ -f "$T/abody" ] || : >"$T/abody"
    ABODY=$(cat "$T/abody")
}

# json_has WHAT KEY=VALUE...: the JSON body in $T/abody has these members (VALUE as python's str())
json_has() {
    local what=$1
    shift
    "$PY" "$T/stats.py" json "$T/abody" "$@" || fail "$what"
}

# purge NAME URL STATUS PURGED: PURGE /URL on NAME's admin answers STATUS with {"url": URL, "purged": PURGED}
purge() {
    admin_req "$1" PURGE "/$2"
    assert_eq "$ACODE" "$3" "status of PURGE $2 on $1's admin"
    assert_match "$(tr -d '\r' <"$T/ahead" | grep -i '^content-type:')" '[Cc]ontent-[Tt]ype: application/json' \
        "Content-Type of PURGE $2 on $1"
    json_has "answer to PURGE $2 on $1" "url=$2" "purged=$4"
}

# add_admin FILE: the admin listener on 127.0.0.1, a free port (the ports file's "admin" line)
add_admin() {
    echo 'admin: {port: 0}' >>"$1"
}

"$PY" "$T/stats.py" selftest || fail "the Prometheus parser's self-test"

# --- origin, regional and edge, both tiers caching, both with an admin listener ----------------------
pki
DOCROOT=$T/docroot
mkdir -p "$DOCROOT"
start_origin_docroot "$DOCROOT"
regional_config "$T/regional.yaml"
cache_config "$T/regional.yaml" regional
add_admin "$T/regional.yaml"
start_node regional regional "$T/regional.yaml"
REGIONAL_PORT=$(port_of regional https)
edge_config "$T/edge.yaml" "$REGIONAL_PORT"
cache_config "$T/edge.yaml" edge
add_admin "$T/edge.yaml"
start_node edge edge "$T/edge.yaml"
EDGE_PORT=$(port_of edge https)
EDGE=https://127.0.0.1:$EDGE_PORT
[ "$(port_of edge admin)" != "$EDGE_PORT" ] || fail "the edge's admin port is its public port"

# --- /healthz, /readyz, unknown paths and methods; admin requests are not counted ----------------------
stats_base edge regional
for n in edge regional; do
    admin_req "$n" GET /healthz
    assert_eq "$ACODE" 200 "status of GET /healthz on $n"
    assert_eq "$ABODY" ok "body of GET /healthz on $n"
    admin_req "$n" GET /readyz
    assert_eq "$ACODE" 200 "status of GET /readyz on $n (serving)"
    assert_eq "$ABODY" ready "body of GET /readyz on $n"
    admin_req "$n" GET /healthz?x=1
    assert_eq "$ACODE" 200 "status of GET /healthz?x=1 on $n (the query is ignored)"
    for p in /nope /stats/x /healthzz /; do
        admin_req "$n" GET "$p"
        assert_eq "$ACODE" 404 "status of GET $p on $n's admin (unknown path)"
    done
    admin_req "$n" POST /stats
    assert_eq "$ACODE" 405 "status of POST /stats on $n"
    assert_match "$(tr -d '\r' <"$T/ahead" | grep -i '^allow:')" '[Aa]llow: GET, HEAD' "Allow of a 405 on $n"
    admin_req "$n" PURGE /ftp://cdn.test/x
    assert_eq "$ACODE" 400 "status of PURGE of a non-http URL on $n"
done
stats_expect edge "admin requests only" d:requests==0 d:connections==0 d:responses_2xx+responses_4xx==0
stats_expect regional "admin requests only" d:requests==0 d:connections==0 d:responses_2xx+responses_4xx==0

# --- a miss, then a fresh hit at the edge: exactly these counters move ------------------------------------
stats_base edge regional
o=$(origin_count)
fetch "/bytes/1000?$MA"
assert_eq "$CODE" 200 "status of the first GET /bytes/1000"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of the first GET /bytes/1000"
settle
fetch "/bytes/1000?$MA"
assert_eq "$CODE" 200 "status of the second GET /bytes/1000"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "the edge's Cache-Status member of the second GET /bytes/1000"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 1000)" "body of the hit"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after a miss and a hit"
stats_expect edge "a miss then a hit of 1000 bytes" \
    d:requests==2 d:cache_miss==1 d:cache_hit_fresh==1 d:responses_2xx==2 \
    d:responses_1xx+responses_3xx+responses_4xx+responses_5xx==0 \
    d:cache_hit_stale+cache_revalidated+cache_collapsed+cache_uncacheable==0 \
    v:cache_hit_ratio==0.5 v:cache_byte_hit_ratio==0.5 \
    d:bytes_from_cache==1000 d:bytes_from_upstream==1000 \
    d:request_duration_seconds.count==2  \
    d:connections==2 d:tls_handshakes==2 v:connections_active==0 \
    d:upstream_requests==1 d:upstream_conns_opened==1 d:upstream_conns_reused==0 \
    d:upstream_response_seconds.count==1 \
    d:upstream_errors_connect+upstream_errors_tls+upstream_errors_timeout+upstream_errors_protocol==0 \
    v:cache_objects==1 'v:cache_bytes>=1000' v:cache_capacity_bytes==67108864
stats_expect regional "the edge's miss" \
    d:requests==1 d:cache_miss==1 d:cache_hit_fresh==0 d:responses_2xx==1 \
    d:bytes_from_upstream==1000 d:bytes_from_cache==0 \
    d:upstream_requests==1 'd:upstream_conns_opened>=1' 'v:upstream_conns_opened>=1' \
    d:connections==1 d:tls_handshakes==1 d:client_certs_verified==1 d:client_certs_refused==0 \
    v:cache_objects==1
# ... the hit ratio is the same computed from the deltas (the edge had no other cache request)
stats_expect edge "hit ratio from the deltas" \
    d:cache_hit_fresh+cache_hit_stale+cache_revalidated+cache_collapsed-cache_miss-cache_uncacheable==0

# --- a second miss on another URL reuses the pooled edge->regional connection ---------------------------
# Both requests on one client connection, so one edge worker (pools are per worker) serves both.
stats_base edge regional
out=$(ecurl -o /dev/null -o /dev/null -w '%{http_code} %{num_connects};' \
    "$EDGE/bytes/2000?$MA" "$EDGE/bytes/3000?$MA") || fail "two misses on one connection: curl exit $?"
assert_eq "$out" "200 1;200 0;" "statuses and new client connections of two GETs on one connection"
stats_expect edge "two misses on one client connection" \
    d:requests==2 d:cache_miss==2 d:connections==1 d:upstream_requests==2 \
    'd:upstream_conns_reused>=1' d:upstream_conns_opened+upstream_conns_reused==2
stats_expect regional "two more misses from the edge" \
    d:requests==2 d:cache_miss==2 d:upstream_requests==2

# --- TLS counters at the regional: no client certificate, a certificate of another CA --------------------
stats_base regional
if curl -sS --max-time 10 --cacert "$PKI/ca.crt" -o /dev/null "https://127.0.0.1:$REGIONAL_PORT/bytes/10" \
    2>"$T/nocert.err"; then
    fail "a client without a certificate got an answer from the regional"
fi
stats_expect regional "a client without a certificate" \
    d:tls_failed_no_certificate==1 d:client_certs_refused==1 d:connections==1 \
    d:tls_handshakes==0 d:client_certs_verified==0 d:requests==0 \
    d:tls_failed_unknown_ca+tls_failed_protocol+tls_failed_other==0
stats_base regional
if curl -sS --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/other-client.crt" --key "$PKI/other-client.key" \
    -o /dev/null "https://127.0.0.1:$REGIONAL_PORT/bytes/10" 2>"$T/otherca.err"; then
    fail "a client with a certificate from another CA got an answer from the regional"
fi
stats_expect regional "a client certificate from another CA" \
    d:tls_failed_unknown_ca==1 d:client_certs_refused==1 d:connections==1 \
    d:tls_handshakes==0 d:client_certs_verified==0 d:requests==0 \
    d:tls_failed_no_certificate+tls_failed_protocol+tls_failed_other==0
# every handshake the regional completed was one of the edge's connections, each with a verified certificate
stats_expect regional "handshakes so far" 'v:client_certs_verified>=1' v:client_certs_verified-tls_handshakes==0 \
    v:tls_failed_no_certificate==1 v:tls_failed_unknown_ca==1 v:client_certs_refused==2
stats_expect edge "no client certificates at the edge" v:client_certs_verified+client_certs_refused==0

# --- /metrics: strict Prometheus text 0.0.4, equal to /stats, promtool ---------------------------------
for n in edge regional; do
    "$PY" "$T/stats.py" metrics "$(port_of "$n" admin)" "$n" "$E2E_SRC/docs/STATS.md" "$T/metrics-$n.txt" ||
        fail "/metrics of $n"
    if command -v promtool >/dev/null 2>&1; then
        promtool check metrics <"$T/metrics-$n.txt" >"$T/promtool-$n.out" 2>&1 ||
            fail "promtool check metrics on $n's /metrics: $(cat "$T/promtool-$n.out")"
    else
        echo "promtool not installed: skipping promtool check metrics"
    fi
done

# --- the admin is not reachable through the public listeners --------------------------------------------
for p in /stats /metrics /healthz; do
    # Host 127.0.0.1:PORT: no remap rule -> 404 from the proxy, nothing from the admin
    code=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" -o "$T/pub" -w '%{http_code}' "$EDGE$p") ||
        fail "GET $p on the edge's public port: curl exit $?"
    assert_eq "$code" 404 "status of GET $p on the edge's public port (no remap rule for its Host)"
    assert_not_contains "$(cat "$T/pub")" '"role"' "body of GET $p on the edge's public port"
    assert_not_contains "$(cat "$T/pub")" 'cdn_requests_total' "body of GET $p on the edge's public port"
    code=$(curl -sS --max-time 10 --cacert "$PKI/ca.crt" --cert "$PKI/edge-client.crt" --key "$PKI/edge-client.key" \
        -o "$T/pub" -w '%{http_code}' "https://127.0.0.1:$REGIONAL_PORT$p") ||
        fail "GET $p on the regional's public port: curl exit $?"
    assert_eq "$code" 404 "status of GET $p on the regional's public port (no remap rule for its Host)"
    assert_not_contains "$(cat "$T/pub")" '"role"' "body of GET $p on the regional's public port"
done
# Host cdn.test: remapped like any path, so it is the origin that answers
fetch /stats
assert_eq "$CODE" 200 "status of GET /stats with Host: cdn.test"
assert_eq "$(cat "$T/body")" "origin: /stats" "GET /stats with Host: cdn.test is proxied to the origin"

# --- PURGE ----------------------------------------------------------------------------------------------
P="/bytes/777?$MA&purge=1"
fetch "$P"
assert_match "$LAST_CS" "cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" "first GET $P"
settle
fetch "$P"
assert_match "$LAST_CS" "cdn-node-edge; hit; ttl=$TTL" "second GET $P"
o=$(origin_count)
r=$(access_count regional)
stats_base edge
purge edge "https://$EDGE_HOST$P" 200 1
settle
stats_expect edge "PURGE of a cached object" d:cache_objects==-1 d:requests==0
# the edge misses, the regional still has it
fetch "$P"
assert_eq "$CODE" 200 "status of GET $P after PURGE at the edge"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 777)" "body of GET $P after PURGE at the edge"
assert_match "$CS" "cdn-node-regional; hit; ttl=$TTL, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of GET $P after PURGE at the edge (an edge miss, a regional hit)"
assert_eq "$(origin_count)" "$o" "requests at the origin after PURGE at the edge"
assert_eq "$(access_count regional)" $((r + 1)) "requests at the regional after PURGE at the edge"
settle
# a second PURGE of the same URL is a 404 once it is gone; a never-cached URL too
purge edge "https://$EDGE_HOST$P" 200 1
settle
purge edge "https://$EDGE_HOST$P" 404 0
purge edge "https://$EDGE_HOST/never-cached-96" 404 0
purge regional "https://$REGIONAL_HOST/never-cached-96" 404 0
# the regional's copy, purged by the regional's public URL: the next request reaches the origin
purge regional "https://$REGIONAL_HOST$P" 200 1
settle
fetch "$P"
assert_eq "$(sha256_of "$T/body")" "$(pattern_sha256 777)" "body of GET $P after PURGE at both tiers"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL, cdn-node-edge; fwd=uri-miss; fwd-status=200; stored; ttl=$TTL" \
    "Cache-Status of GET $P after PURGE at both tiers"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after PURGE at both tiers"
# the cache key URL forms: the regional's key is the origin URL, the edge's the regional's URL
# (the edge's purged with DELETE /purge?url=<percent-encoded>)
Q="/bytes/555?$MA&purge=2"
fetch "$Q"
settle
o=$(origin_count)
purge regional "http://127.0.0.1:$ORIGIN_PORT$Q" 200 1
enc=$("$PY" -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "https://$REGIONAL_HOST$Q")
admin_req edge DELETE "/purge?url=$enc"
assert_eq "$ACODE" 200 "status of DELETE /purge?url=<the edge's cache key URL>"
json_has "answer to DELETE /purge on the edge" "url=https://$REGIONAL_HOST$Q" purged=1
settle
fetch "$Q"
assert_match "$CS" "cdn-node-regional; fwd=uri-miss; .*, cdn-node-edge; fwd=uri-miss; .*" \
    "Cache-Status of GET $Q after purging both tiers by cache key URL"
assert_eq "$(origin_count)" $((o + 1)) "requests at the origin after purging both tiers by cache key URL"

# --- an upstream that refuses connections: 502 and upstream_errors_connect ------------------------------
start_dead_upstream dead closed
edge_config "$T/edge-dead.yaml" "$(port_of dead tcp)"
cache_config "$T/edge-dead.yaml" edge-dead
add_admin "$T/edge-dead.yaml"
start_node edge-dead edge "$T/edge-dead.yaml"
stats_base edge-dead
FETCH_BASE=https://127.0.0.1:$(port_of edge-dead https) fetch "/bytes/10?$MA"
assert_eq "$CODE" 502 "status through an edge whose upstream port is closed"
assert_match "$CS" "cdn-node-edge-dead; fwd=uri-miss|[a-z-]+; fwd=uri-miss" "Cache-Status of the edge's own 502"
stats_expect edge-dead "an upstream connect refused" \
    d:upstream_errors_connect==1 d:upstream_errors_tls+upstream_errors_timeout+upstream_errors_protocol==0 \
    d:requests==1 d:responses_5xx==1 d:responses_2xx==0 d:upstream_requests==0 d:upstream_conns_opened==1
admin_req edge-dead GET /readyz
assert_eq "$ACODE" 200 "status of /readyz on an edge whose upstream is down (it still serves)"

# --- certificate expiry: every loaded certificate has a series, with the seconds it has left ------------
for n in edge regional; do
    admin_req "$n" GET /metrics
    assert_contains "$ABODY" "cdn_reload_last_success{role=\"$n\"} 1" "reload_last_success on the $n"
    for kind in server ca; do
        line=$(printf '%s\n' "$ABODY" | grep "^cdn_certificate_expiry_seconds{role=\"$n\",kind=\"$kind\"" | head -1)
        [ -n "$line" ] || fail "no certificate_expiry_seconds series of kind $kind on the $n"
        left=${line##* }
        [ "$left" -gt 86400 ] || fail "$n: $kind certificate expiry $left s: the dev PKI lasts 825 days"
    done
done
admin_req edge GET /metrics
printf '%s\n' "$ABODY" | grep -q 'kind="client",file="[^"]*pki/edge-client.crt"' ||
    fail "no series for the edge's client certificate"

stop_all
