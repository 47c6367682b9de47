#!/usr/bin/env python3
"""The public API of the josefine crate, one line per item: `KIND PATH`, sorted by path.

    python3 scripts/public_api.py          rewrites docs/public-api.txt
    python3 scripts/public_api.py --check  fails if docs/public-api.txt differs

Reads rustdoc's JSON output (built here with the default features; RUSTC_BOOTSTRAP=1
lets a stable toolchain emit it) and walks the crate from its root as a user can name
it: modules, re-exports, types with their public fields, variants and inherent methods,
traits with their items, trait impls (not blanket or auto-trait ones). It also fails
when a public signature names a type of ours that no public path reaches, or a
kafka_protocol type (its `=` pin must not become our semver).
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTING = os.path.join(ROOT, "docs", "public-api.txt")
# Formats this script was written against; a newer rustdoc must be checked by hand
# (the fields read below) and added here.
KNOWN_FORMATS = {57}
# Trait impls that say nothing about the API (derive(PartialEq) adds this marker).
NOISE = (["core", "marker", "StructuralPartialEq"],)


def build():
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    cmd = ["cargo", "rustdoc", "-q", "-p", "josefine", "--lib", "--locked", "--",
           "-Z", "unstable-options", "--output-format", "json"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    meta = subprocess.run(["cargo", "metadata", "-q", "--format-version", "1", "--no-deps"],
                          cwd=ROOT, check=True, capture_output=True, text=True)
    return os.path.join(json.loads(meta.stdout)["target_directory"], "doc", "josefine.json")


def listing(doc):
    if doc.get("format_version") not in KNOWN_FORMATS:
        sys.exit(f"public_api.py: rustdoc JSON format {doc.get('format_version')} is not one "
                 f"of {sorted(KNOWN_FORMATS)}: check the script against it and add it")
    index, paths = doc["index"], doc["paths"]
    crates = {int(k): v["name"] for k, v in doc["external_crates"].items()}
    lines, reached, signatures, impls = set(), set(), [], []
    public = {}  # our items' shortest public path

    def path_of(id_):
        if id_ in public:
            return public[id_]
        p = paths.get(str(id_))
        return "::".join(p["path"]) if p else "?"

    def ty(t):
        """A type, written compactly (enough to tell trait impls apart)."""
        if not isinstance(t, dict):
            return "_"
        (k, v), = t.items()
        if k == "resolved_path":
            args = v.get("args") or {}
            inner = [ty(a["type"]) for a in args.get("angle_bracketed", {}).get("args", [])
                     if isinstance(a, dict) and "type" in a]
            return path_of(v["id"]) + (f"<{', '.join(inner)}>" if inner else "")
        if k in ("primitive", "generic"):
            return v
        if k == "borrowed_ref":
            return "&" + ("mut " if v["is_mutable"] else "") + ty(v["type"])
        if k == "slice":
            return f"[{ty(v)}]"
        if k == "tuple":
            return f"({', '.join(ty(x) for x in v)})"
        return "_"

    def name_of(id_):  # a `use` item's name is the name it gives
        item = index[str(id_)]
        return item["name"] or item["inner"].get("use", {}).get("name", "")

    def non_exhaustive(item):
        return any("non_exhaustive" in (a if isinstance(a, str) else json.dumps(a))
                   for a in item["attrs"])

    def emit(kind, path, item):
        if non_exhaustive(item):
            kind = "#[non_exhaustive] " + kind
        lines.add((path, kind))
        reached.add(item["id"])
        if len(path) < len(public.get(item["id"], path + " ")):
            public[item["id"]] = path
        signatures.append((path, item["inner"]))

    def walk(id_, path, stack=()):
        item = index.get(str(id_))
        if item is None or id_ in stack:
            return
        (kind, inner), = item["inner"].items()
        stack = stack + (id_,)
        if kind == "use":
            target = index.get(str(inner["id"])) if inner["id"] is not None else None
            if target is None:  # an external crate or item, re-exported
                lines.add((path, f"use {inner['source']} as"))
            elif inner["is_glob"]:
                for child in target["inner"]["module"]["items"]:
                    walk(child, path.rsplit("::", 1)[0] + "::" + name_of(child), stack)
            else:
                walk(inner["id"], path, stack)
            return
        if kind == "module":
            emit("mod", path, item)
            for child in inner["items"]:
                walk(child, f"{path}::{name_of(child)}", stack)
            return
        emit({"function": "fn", "constant": "const", "type_alias": "type",
              "assoc_const": "const", "assoc_type": "type", "struct_field": "field",
              "static": "static", "macro": "macro"}.get(kind, kind), path, item)
        if kind == "struct":
            fields = inner["kind"]
            fields = (fields.get("plain", {}).get("fields") or fields.get("tuple") or []) \
                if isinstance(fields, dict) else []
            for n, f in enumerate(fields):
                if f is not None:
                    walk(f, f"{path}::{index[str(f)]['name'] if 'plain' in inner['kind'] else n}", stack)
        if kind == "variant" and isinstance(inner["kind"], dict) and "struct" in inner["kind"]:
            for f in inner["kind"]["struct"]["fields"]:
                walk(f, f"{path}::{index[str(f)]['name']}", stack)
        if kind == "enum":
            for v in inner["variants"]:
                walk(v, f"{path}::{index[str(v)]['name']}", stack)
        if kind == "trait":
            for t in inner["items"]:
                walk(t, f"{path}::{index[str(t)]['name']}", stack)
        for i in inner.get("impls", []) if kind in ("struct", "enum", "union") else []:
            imp = index[str(i)]["inner"]["impl"]
            if imp["is_synthetic"] or imp["blanket_impl"] is not None:
                continue
            if imp["trait"] is None:
                for m in imp["items"]:
                    if index[str(m)]["visibility"] == "public":
                        walk(m, f"{path}::{index[str(m)]['name']}", stack)
            elif paths.get(str(imp["trait"]["id"]), {}).get("path") not in NOISE:
                impls.append((path, imp))

    walk(doc["root"], "josefine")
    for path, imp in impls:  # after the walk, which found our traits' public paths
        trait = ty({"resolved_path": imp["trait"]})
        lines.add((path, ("impl !" if imp["is_negative"] else "impl ") + trait + " for"))
        signatures.append((path, {"trait": imp["trait"], "for": imp["for"]}))

    # Types named by public signatures: ours must be reachable, kafka_protocol's not named.
    leaks = set()

    def scan(where, node):
        if isinstance(node, dict):
            if isinstance(node.get("id"), int) and "path" in node and "args" in node:
                p = paths.get(str(node["id"]))
                if p and p["crate_id"] == 0 and node["id"] not in reached \
                        and p["kind"] in ("struct", "enum", "trait", "union", "type_alias"):
                    leaks.add(f"{where} names {'::'.join(p['path'])}, which no public path reaches")
                if p and crates.get(p["crate_id"]) == "kafka_protocol":
                    leaks.add(f"{where} names {'::'.join(p['path'])}")
            for v in node.values():
                scan(where, v)
        elif isinstance(node, list):
            for v in node:
                scan(where, v)

    for where, inner in signatures:
        if "module" not in inner:
            scan(where, inner)
    return [f"{kind} {path}" for path, kind in sorted(lines)], sorted(leaks)


def main():
    check = sys.argv[1:] == ["--check"]
    if sys.argv[1:] not in ([], ["--check"]):
        sys.exit(__doc__)
    with open(build()) as f:
        lines, leaks = listing(json.load(f))
    for leak in leaks:
        print(f"public_api.py: {leak}", file=sys.stderr)
    text = "".join(line + "\n" for line in lines)
    if check:
        with open(LISTING) as f:
            old = f.read()
        if old != text:
            new = LISTING + ".new"
            with open(new, "w") as f:
                f.write(text)
            subprocess.run(["diff", "-u", LISTING, new])
            os.remove(new)
            sys.exit("public_api.py: the public API differs from docs/public-api.txt; "
                     "if the change is meant, run python3 scripts/public_api.py and commit "
                     "docs/public-api.txt")
    else:
        with open(LISTING, "w") as f:
            f.write(text)
        print(f"{len(lines)} items written to docs/public-api.txt")
    if leaks:
        sys.exit(1)


if __name__ == "__main__":
    main()
