#!/usr/bin/env bash
# The MSRV check of the locked dependencies (README, "Minimum Rust version"): fails when
# a crate in Cargo.lock that builds for Linux, macOS or Windows (a normal, build or dev
# dependency of any workspace crate) declares a rust-version above the workspace's, or
# when a workspace crate does not declare the workspace's. Our own code is checked by
# clippy's incompatible_msrv lint, which reads the same rust-version. Together they stand
# in for a build with that toolchain, which this CI cannot install.
#
#   scripts/msrv.sh            check; prints the dependencies closest to the MSRV
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# cfg(...) dependencies are judged as rustc sees each target: a crate only behind a cfg
# no build sets (loom's, say) is not built, so it does not count.
TARGETS=(x86_64-unknown-linux-gnu aarch64-apple-darwin x86_64-pc-windows-msvc)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for target in "${TARGETS[@]}"; do
    cargo metadata --format-version 1 --locked --filter-platform "$target" > "$tmp/$target.json"
done

python3 - "$tmp"/*.json <<'EOF'
import json
import sys


def version(text):
    return tuple(int(part) for part in text.split("."))


msrv = None
needed = {}  # "name version" -> rust-version, for every dependency that declares one
too_new = {}  # "name version" -> (rust-version, how it is pulled in, {targets})
for path in sys.argv[1:]:
    target = path.rsplit("/", 1)[-1][: -len(".json")]
    metadata = json.load(open(path))
    packages = {p["id"]: p for p in metadata["packages"]}
    members = set(metadata["workspace_members"])
    declared = {packages[m]["name"]: packages[m]["rust_version"] for m in members}
    if msrv is None:
        values = set(declared.values())
        if len(values) != 1 or None in values:
            sys.exit(f"every workspace crate must inherit one rust-version; found {declared}")
        msrv = values.pop()
    nodes = {n["id"]: n for n in metadata["resolve"]["nodes"]}
    # Who pulls each crate in (and whether as a dev or build dependency), for the report.
    parent = {m: None for m in members}
    stack = list(members)
    while stack:
        node = stack.pop()
        for dep in nodes[node]["deps"]:
            if dep["pkg"] not in parent:
                kinds = {k["kind"] for k in dep["dep_kinds"]} - {None}
                parent[dep["pkg"]] = (node, "/".join(sorted(kinds)))
                stack.append(dep["pkg"])
    for pkg_id in parent:
        package = packages[pkg_id]
        needs = package["rust_version"]
        if pkg_id in members or needs is None:
            continue
        label = f"{package['name']} {package['version']}"
        needed[label] = needs
        if version(needs) > version(msrv):
            chain, at = [], pkg_id
            while parent[at] is not None:
                up, kind = parent[at]
                chain.append(packages[at]["name"] + (f" ({kind})" if kind else ""))
                at = up
            chain.append(packages[at]["name"])
            entry = too_new.setdefault(label, (needs, " <- ".join(chain), set()))
            entry[2].add(target)

highest = sorted(needed.items(), key=lambda kv: version(kv[1]), reverse=True)[:3]
print(f"MSRV {msrv}; the locked dependencies needing the newest Rust: "
      + ", ".join(f"{name} ({needs})" for name, needs in highest))
if too_new:
    print(f"locked dependencies that need a newer Rust than the declared {msrv}:")
    for label, (needs, chain, targets) in sorted(too_new.items()):
        print(f"  {label} needs {needs}: {chain} [{', '.join(sorted(targets))}]")
    print("raise rust-version in Cargo.toml (and say why there), or lock older versions")
    sys.exit(1)
EOF
