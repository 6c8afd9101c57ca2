#!/usr/bin/env python3
"""Lists the longest C++ functions of the tree, longest first.

Usage: tools/longest_functions.py [--top N] [--max LINES] [DIR ...]   (default: compiler runtime spec)

Function extents come from Universal Ctags (Debian's universal-ctags: its JSON output has each
function's first and last line). Lambdas count as part of the function that holds them, not as
functions of their own. With --max, exits 1 when a function is longer than LINES (the house rule
is ~120 lines), so it can guard a tree.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys

SOURCE_EXTENSIONS = (".cpp", ".h", ".hpp", ".cc")


def sources(dirs):
    for top in dirs:
        for root, _, files in os.walk(top):
            for f in sorted(files):
                if f.endswith(SOURCE_EXTENSIONS):
                    yield os.path.join(root, f)


def functions(paths):
    """(lines, 'path:first', name) of every function definition in `paths`."""
    cmd = ["ctags", "--output-format=json", "--fields=+ne", "--c++-kinds=f", "--language-force=C++",
           "-o", "-"] + list(paths)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        tag = json.loads(line)
        if tag.get("_type") != "tag" or "end" not in tag or tag["name"].startswith("__anon"):
            continue
        scope = re.sub(r"__anon\w+::", "", tag.get("scope", ""))  # anonymous namespaces
        name = f"{scope}::{tag['name']}" if tag.get("scopeKind") in ("class", "struct") else tag["name"]
        found.append((tag["end"] - tag["line"] + 1, f"{tag['path']}:{tag['line']}", name))
    return sorted(found, key=lambda f: (-f[0], f[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", default=["compiler", "runtime", "spec"])
    ap.add_argument("--top", type=int, default=10, help="how many to list (default 10)")
    ap.add_argument("--max", type=int, help="exit 1 when a function is longer than this")
    args = ap.parse_args()
    if not shutil.which("ctags"):
        print("longest_functions.py: needs Universal Ctags (apt-get install universal-ctags)", file=sys.stderr)
        return 2
    found = functions(sources(args.dirs))
    for lines, where, name in found[:args.top]:
        print(f"{lines:5d}  {where:48s} {name}")
    if args.max is not None:
        over = [f for f in found if f[0] > args.max]
        if over:
            print(f"{len(over)} function(s) longer than {args.max} lines", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
