#!/usr/bin/env python3
"""Architecture checks anyone can rerun: file sizes and dependencies between top-level modules.

Usage: scripts/check-layout.py [--max-lines N] [--src DIR]

1. Lists every top-level module under src/ (src/x.rs or src/x/) with the non-test line count of
   each of its files: the lines before the file's `#[cfg(test)]` test module. Test-only files
   (tests.rs, and files declared as `#[cfg(test)] mod name;`) are listed apart and not counted.
   Fails when a file has more than --max-lines (800) non-test lines.
2. Builds the graph of references between top-level modules, from `use crate::x`,
   `crate::x::...` and `crate::{x, y}` in non-test code, prints its edges (with the files that
   make them), and fails on any cycle, printing each one.

Exits 0 when both hold, 1 otherwise.
"""
import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CFG_TEST = re.compile(r"^\s*#\[cfg\(test\)\]")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([A-Za-z_][A-Za-z0-9_]*)\s*([;{])")
PATH_ATTR = re.compile(r'^\s*#\[path\s*=\s*"([^"]+)"\]')
CRATE_PATH = re.compile(r"(?<![$\w])crate::([A-Za-z_][A-Za-z0-9_]*)")
CRATE_GROUP = re.compile(r"(?<![$\w])crate::\{")


def strip_comment(line):
    """The line without a trailing // comment (a `//` inside a string literal is rare enough
    here to accept the imprecision)."""
    i = line.find("//")
    return line if i < 0 else line[:i]


def test_module_start(lines):
    """Index of the line opening the file's `#[cfg(test)] mod x {`, or None."""
    for i, l in enumerate(lines):
        if not CFG_TEST.match(l):
            continue
        j = i + 1
        while j < len(lines) and (lines[j].strip().startswith("#[") or not lines[j].strip()):
            j += 1
        if j < len(lines):
            m = MOD_DECL.match(lines[j])
            if m and m.group(2) == "{":
                return i
    return None


def declared_test_files(path, lines):
    """Files that `path` declares as `#[cfg(test)] mod name;` (test-only modules)."""
    out = []
    base = path.parent if path.name in ("mod.rs", "main.rs", "lib.rs") else path.with_suffix("")
    for i, l in enumerate(lines):
        if not CFG_TEST.match(l):
            continue
        custom = None
        j = i + 1
        while j < len(lines) and lines[j].strip().startswith("#["):
            m = PATH_ATTR.match(lines[j])
            if m:
                custom = m.group(1)
            j += 1
        if j < len(lines):
            m = MOD_DECL.match(lines[j])
            if m and m.group(2) == ";":
                if custom:
                    out.append((path.parent / custom).resolve())
                else:
                    out += [(base / f"{m.group(1)}.rs").resolve(), (base / m.group(1) / "mod.rs").resolve()]
    return out


def references(lines):
    """Top-level names referred to as crate::name in these lines."""
    text = "\n".join(strip_comment(l) for l in lines)
    names = set(CRATE_PATH.findall(text))
    for m in CRATE_GROUP.finditer(text):
        depth, i, item, items = 1, m.end(), "", []
        while i < len(text) and depth:
            c = text[i]
            if c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            if depth == 1 and c == ",":
                items.append(item)
                item = ""
            elif depth >= 1 and not (depth == 1 and c in "{}"):
                item += c
            i += 1
        items.append(item)
        for it in items:
            m2 = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", it)
            if m2 and m2.group(1) != "self":
                names.add(m2.group(1))
    return names


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def one_cycle(graph, comp):
    """A concrete cycle through the component's first module, as a list of modules."""
    start, members = comp[0], set(comp)
    path, seen = [start], {start}

    def dfs(v):
        for w in sorted(graph.get(v, ())):
            if w == start and len(path) > 1:
                return True
            if w in members and w not in seen:
                seen.add(w)
                path.append(w)
                if dfs(w):
                    return True
                path.pop()
        return False

    dfs(start)
    return path + [start]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-lines", type=int, default=800)
    ap.add_argument("--src", default=str(REPO / "src"))
    a = ap.parse_args()
    src = Path(a.src).resolve()
    files = sorted(p.resolve() for p in src.rglob("*.rs"))
    texts = {p: p.read_text(errors="replace").splitlines() for p in files}
    test_files = {p for p in files if p.name == "tests.rs" or p.name.endswith("_tests.rs")}
    for p, lines in texts.items():
        test_files.update(q for q in declared_test_files(p, lines) if q in texts)

    def top(p):
        rel = p.relative_to(src)
        return rel.parts[0] if len(rel.parts) > 1 else rel.stem

    failed = False
    by_module = defaultdict(list)
    for p in files:
        by_module[top(p)].append(p)
    modules = set(by_module)
    print(f"== non-test lines per file (limit {a.max_lines})")
    over = []
    for mod in sorted(by_module):
        rows, total = [], 0
        for p in by_module[mod]:
            rel = p.relative_to(REPO) if p.is_relative_to(REPO) else p
            if p in test_files:
                rows.append(f"    {str(rel):<44} {'test file':>9}")
                continue
            lines = texts[p]
            t = test_module_start(lines)
            n = len(lines) if t is None else t
            total += n
            mark = ""
            if n > a.max_lines:
                mark = f"  OVER by {n - a.max_lines}"
                over.append((str(rel), n))
            rows.append(f"    {str(rel):<44} {n:>9}{mark}")
        print(f"  {mod} ({total} non-test lines)")
        print("\n".join(rows))

    edges = defaultdict(lambda: defaultdict(set))  # from -> to -> {files}
    for p in files:
        if p in test_files:
            continue
        lines = texts[p]
        t = test_module_start(lines)
        here = top(p)
        for name in references(lines if t is None else lines[:t]):
            if name in modules and name != here:
                edges[here][name].add(str(p.relative_to(src)))
    graph = {k: set(v) for k, v in edges.items()}
    print("\n== references between top-level modules (from -> to: files)")
    for f in sorted(edges):
        for t in sorted(edges[f]):
            print(f"  {f} -> {t}: {', '.join(sorted(edges[f][t]))}")

    comps = cycles(graph)
    print()
    if over:
        failed = True
        print(f"FAIL: {len(over)} file(s) over {a.max_lines} non-test lines:")
        for rel, n in over:
            print(f"  {rel}: {n}")
    else:
        print(f"ok: no file over {a.max_lines} non-test lines")
    if comps:
        failed = True
        print(f"FAIL: {len(comps)} dependency cycle(s) between top-level modules:")
        for comp in comps:
            cyc = one_cycle(graph, comp)
            print(f"  cycle: {' -> '.join(cyc)}   (modules in it: {', '.join(comp)})")
            for x, y in zip(cyc, cyc[1:]):
                print(f"    {x} -> {y}: {', '.join(sorted(edges[x][y]))}")
    else:
        print("ok: no cycle between top-level modules")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
