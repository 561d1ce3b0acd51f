#!/usr/bin/env python3
"""The architecture, checked: every module of src/ imports only from the layers below it
(docs/ARCHITECTURE.md), the files of an ordered folder (INNER) only from those before them,
and no two files import each other, directly or round a circle.

    python3 scripts/check-layers.py            # exit 1 and name each offence
    python3 scripts/check-layers.py --figures  # also: modules, unsafe blocks without a
                                               # SAFETY note, error!() calls, longest function
    python3 scripts/check-layers.py --figures --src OTHER/src   # the same of another tree

Imports are read as text (`crate::a::b`, `use crate::{a, b::c}`, `super::x`): cheap, and
enough for a crate that writes its paths out."""

import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
if "--src" in sys.argv:  # another checkout's src/, to compare figures
    ROOT = sys.argv[sys.argv.index("--src") + 1]

# Top-level modules of src/, bottom first. A module may import from a lower layer only;
# modules on the same layer may not import each other.
LAYERS = [
    ["pg"],                                  # PostgreSQL helpers: SPI, roles, errors, jsonb, clock
    ["settings"],                            # every cdc_health.* setting
    ["shmem"],                               # the shared-memory area and its lock
    ["slots"],                               # reading slots, creations, the per-slot view
    ["history", "outbox", "clickhouse", "server"],  # per slot; the outbox; the wrapper; the server
    ["open_alerts"],                         # the worker's copy of the open alerts
    ["alerts"],                              # raising, resolving, announcing
    ["monitor"],                             # one look at every slot, one pass
    ["mirrors", "delivery", "metrics"],      # the subsystems built on the pass and the alerts:
                                             # mirrors/ (checks, probes, their worker), delivery/,
                                             # metrics/
    ["worker"],                              # the slot (monitor) worker's loop
    ["api", "schema"],                       # the SQL functions
    ["released"],                            # what a release's install script must hold
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}
# Folders whose files are ordered too, bottom first: a file imports only from those before it.
INNER = {
    "mirrors": ["error", "store", "probe", "verify", "sql", "worker"],
    # One area, one lock (mod.rs: the header, the hooks, Locked); a file per concern.
    "shmem": ["worker", "tracks", "nudges", "reminders", "volume", "alerts_changes"],
}
# Not part of the product: the #[pg_test]s may reach anything.
EXEMPT = {"pg_tests"}


def sources():
    for folder, _, files in os.walk(ROOT):
        for f in sorted(files):
            if f.endswith(".rs"):
                yield os.path.relpath(os.path.join(folder, f), ROOT)


def module_path(rel):
    """src-relative file -> its module path, e.g. 'pg/role.rs' -> ['pg', 'role']."""
    parts = rel[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return parts


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def referenced_paths(text, own):
    """Module paths a file names: crate::a::b..., use crate::{...}, super::x."""
    code = strip_comments(text)
    paths = []
    for group in re.finditer(r"crate::\{([^}]*)\}", code):
        for item in group.group(1).split(","):
            item = item.strip().split(" as ")[0]
            if item:
                paths.append(item.split("::"))
    for m in re.finditer(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-zA-Z_][a-zA-Z0-9_]*)", code):
        paths.append(m.group(1).split("::"))
    parent = own[:-1]
    for m in re.finditer(r"(?<![:\w])super::((?:[a-z_][a-z0-9_]*::)*[a-zA-Z_][a-zA-Z0-9_]*)",
                         code):
        paths.append(parent + m.group(1).split("::"))
    return [p for p in paths if p and p[0] not in ("self",)]


def resolve(path, files):
    """The file a module path lands in: the longest prefix that is a file of src/."""
    for n in range(len(path), 0, -1):
        for candidate in (os.path.join(*path[:n]) + ".rs",
                          os.path.join(*path[:n], "mod.rs")):
            if candidate in files:
                return candidate
    return None


def cycles(graph):
    """Strongly connected components with more than one file (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def figures(files):
    """Counts a maintainer can compare before and after a change."""
    undocumented, unsafe_blocks, errors, longest, long = 0, 0, 0, (0, ""), []
    for rel in files:
        lines = open(os.path.join(ROOT, rel)).read().split("\n")
        for i, line in enumerate(lines):
            code = line.split("//")[0]
            if re.search(r"\bunsafe\s*\{", code):
                unsafe_blocks += 1
                window = "\n".join(lines[max(0, i - 6):i + 1])
                if "SAFETY:" not in window:
                    undocumented += 1
            errors += len(re.findall(r"\berror!\(", code))
            m = re.match(r"\s*(pub(\([a-z]+\))?\s+)?(unsafe\s+)?(extern\s+\"[^\"]+\"\s+)?fn\s+(\w+)",
                         line)
            if m and not code.rstrip().endswith(";"):
                depth, started = 0, False
                for j in range(i, len(lines)):
                    body = lines[j].split("//")[0]
                    depth += body.count("{") - body.count("}")
                    started = started or "{" in body
                    if started and depth <= 0:
                        if j - i + 1 > longest[0]:
                            longest = (j - i + 1, f"{rel}:{m.group(5)}")
                        if j - i + 1 > 100:
                            long.append(f"{rel}:{m.group(5)} {j - i + 1}")
                        break
    top = sorted({module_path(f)[0] for f in files if module_path(f)})
    return {"top-level modules": len(top), "unsafe blocks": unsafe_blocks,
            "unsafe blocks without a SAFETY note": undocumented, "error!() calls": errors,
            "longest function (lines)": f"{longest[0]} ({longest[1]})",
            "functions over 100 lines": ", ".join(long) or "none"}


def main():
    files = set(sources())
    graph, offences = {}, []
    for rel in sorted(files):
        own = module_path(rel)
        top = own[0] if own else None
        text = open(os.path.join(ROOT, rel)).read()
        for path in referenced_paths(text, own):
            target = resolve(path, files)
            if target is None or target == rel:
                continue
            graph.setdefault(rel, set()).add(target)
            other = module_path(target)[0] if module_path(target) else None
            inner = (own[1:2], module_path(target)[1:2])
            if top == other and top in INNER and all(inner):
                order, (mine, theirs) = INNER[top], (inner[0][0], inner[1][0])
                if mine not in order or theirs not in order:
                    offences.append(f"{rel}: file '{theirs if mine in order else mine}' of "
                                    f"{top}/ has no place in scripts/check-layers.py (INNER)")
                elif order.index(theirs) >= order.index(mine):
                    offences.append(f"{rel} imports {'::'.join(path)} ({target}): in {top}/ "
                                    f"'{theirs}' is not before '{mine}'")
            if top is None or other is None or top == other or top in EXEMPT:
                continue
            if other not in RANK or top not in RANK:
                offences.append(f"{rel}: module '{top if top not in RANK else other}' has no "
                                "layer in scripts/check-layers.py (LAYERS)")
            elif RANK[other] >= RANK[top]:
                offences.append(f"{rel} imports {'::'.join(path)} ({target}): '{other}' is on "
                                f"layer {RANK[other]}, not below '{top}' on layer {RANK[top]}")
    test_files = {f for f in files if module_path(f)[:1] == ["pg_tests"]}
    product = {k: v - test_files for k, v in graph.items() if k not in test_files}
    for comp in cycles(product):
        offences.append("files that import one another in a circle: " + ", ".join(comp))
    for o in sorted(set(offences)):
        print(o)
    if "--figures" in sys.argv:
        product_files = sorted(files - test_files - {"lib.rs"})
        for k, v in figures(product_files).items():
            print(f"{k}: {v}")
        print(f"cycles between files: {len(cycles(product))}")
    if offences:
        print(f"layering: {len(set(offences))} offence(s)", file=sys.stderr)
        return 1
    print(f"layering: {len(files)} files, every import points down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
