#!/usr/bin/env bash
# Mechanical checks of the README's claims (no build):
# * every `cargo run|test|bench|build -p PKG [--bin BIN] [--example EX]` names a workspace package
#   and a target it has; every `cargo install --path DIR [--bin BIN]` a package directory and bin;
# * every `repliq SUBCOMMAND` is a subcommand of the CLI, `repliq-reader` is the Python reader's
#   script, and every file a shell command or a link names exists;
# * no word of the project's history that users do not know ("seed"), no `--cfg loom`.
# With `--loom`: runs the README's loom command and fails unless it ran at least one model.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo metadata --no-deps --format-version 1 > "${TMPDIR:-/tmp}/repliq-metadata.$$.json"
trap 'rm -f "${TMPDIR:-/tmp}/repliq-metadata.$$.json"' EXIT

python3 - README.md "${TMPDIR:-/tmp}/repliq-metadata.$$.json" <<'PY'
import json, os, re, shlex, sys

readme, meta = sys.argv[1], json.load(open(sys.argv[2]))
text = open(readme, encoding="utf-8").read()
root = os.getcwd()
packages = {}
for p in meta["packages"]:
    kinds = {}
    for t in p["targets"]:
        for k in t["kind"]:
            kinds.setdefault(k, set()).add(t["name"])
    packages[p["name"]] = (os.path.relpath(os.path.dirname(p["manifest_path"]), root), kinds)
by_dir = {d: name for name, (d, _) in packages.items()}
problems = []

def bins(pkg):
    return packages[pkg][1].get("bin", set())

# Shell lines: the sh/console code blocks, and inline `code` that starts with a command.
blocks = re.findall(r"```(?:sh|console|bash)\n(.*?)```", text, re.S)
lines = [l for b in blocks for l in b.splitlines()]
lines += re.findall(r"`((?:cargo|bash|repliq|repliq-reader|pip|python3|RUSTFLAGS=|NODE_NAME=)[^`]*)`", text)
commands = []
for line in lines:
    line = line.strip()
    if line.startswith("$ "):
        line = line[2:]
    line = line.split(" #", 1)[0].strip()
    if not line or line.startswith("#"):
        continue
    for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
        try:
            words = shlex.split(part)
        except ValueError:
            continue
        while words and re.match(r"^[A-Z_]+=", words[0]):
            words = words[1:]
        if words:
            commands.append(words)

def opt(words, name):
    """The values of option `name`, leaving out placeholders such as NAME."""
    return [words[i + 1] for i, w in enumerate(words[:-1])
            if w == name and not re.fullmatch(r"[A-Z_]+", words[i + 1])]

cli = open("repliqd/src/bin/repliq.rs", encoding="utf-8").read()
enum = re.search(r"enum Command \{(.*?)\n\}", cli, re.S).group(1)
subcommands = {re.sub(r"(?<!^)([A-Z])", r"-\1", v).lower()
               for v in re.findall(r"^    ([A-Z][A-Za-z]*)\b", enum, re.M)}
pyproject = open("clients/python/pyproject.toml", encoding="utf-8").read()
checked = 0
for w in commands:
    checked += 1
    if w[0] == "cargo" and len(w) > 1 and w[1] in ("run", "test", "bench", "build", "install"):
        if w[1] == "install":
            for d in opt(w, "--path"):
                if d not in by_dir:
                    problems.append("`%s`: no workspace package in %s" % (" ".join(w), d))
                    continue
                for b in opt(w, "--bin"):
                    if b not in bins(by_dir[d]):
                        problems.append("`%s`: %s has no bin %s" % (" ".join(w), by_dir[d], b))
            continue
        pkgs = opt(w, "-p") + opt(w, "--package")
        for pkg in pkgs:
            if pkg not in packages:
                problems.append("`%s`: no workspace package %s" % (" ".join(w), pkg))
                continue
            for b in opt(w, "--bin"):
                if b not in bins(pkg):
                    problems.append("`%s`: %s has no bin %s" % (" ".join(w), pkg, b))
            for e in opt(w, "--example"):
                if e not in packages[pkg][1].get("example", set()):
                    problems.append("`%s`: %s has no example %s" % (" ".join(w), pkg, e))
            for t in opt(w, "--test"):
                if t not in packages[pkg][1].get("test", set()):
                    problems.append("`%s`: %s has no test %s" % (" ".join(w), pkg, t))
        if w[1] == "run" and not pkgs:
            problems.append("`%s`: names no package (-p)" % " ".join(w))
    elif w[0] == "repliq" and len(w) > 1 and not w[1].startswith("-"):
        if w[1] not in subcommands:
            problems.append("`%s`: the CLI has no subcommand %s (has %s)"
                            % (" ".join(w), w[1], ", ".join(sorted(subcommands))))
    elif w[0] == "repliq-reader":
        if not re.search(r"^repliq-reader\s*=", pyproject, re.M):
            problems.append("`%s`: clients/python/pyproject.toml has no such script" % " ".join(w))
    elif w[0] == "bash":
        if len(w) < 2 or not os.path.isfile(w[1]):
            problems.append("`%s`: no such script" % " ".join(w))
    elif w[0] == "pip" and len(w) > 2 and w[1] == "install":
        for spec in w[2:]:
            path = spec.split("[", 1)[0]
            if "/" in path and not os.path.isfile(os.path.join(path, "pyproject.toml")):
                problems.append("`%s`: %s has no pyproject.toml" % (" ".join(w), path))

# Files named by links and by file-looking code spans.
for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
    if not re.match(r"^[a-z]+://", target) and not os.path.exists(target):
        problems.append("link to a missing file: %s" % target)
for path in re.findall(r"`((?:\.ci|deploy|docs|benches|tests|clients|repliq|repliqd|repliq-derive|repliq-codegen|schemas|examples)/[^`\s*]*)`", text):
    if not os.path.exists(path.rstrip("/")):
        problems.append("names a missing path: %s" % path)

for word, why in ((r"\bseed\b", "a word users do not know"), (r"--cfg loom\b", "the cfg is repliq_loom")):
    for m in re.finditer(word, text):
        line = text.count("\n", 0, m.start()) + 1
        problems.append("README.md:%d: `%s` (%s)" % (line, m.group(0), why))

if problems:
    print("readme-check: %d problem(s):" % len(problems))
    for p in problems:
        print("  " + p)
    sys.exit(1)
print("readme-check: %d commands and every named file checked" % checked)
PY

if [ "${1:-}" = --loom ]; then
    cmd=$(grep -m1 -o 'RUSTFLAGS="--cfg repliq_loom"[^#]*' README.md | sed 's/ *$//')
    [ -n "$cmd" ] || { echo "readme-check: the README has no loom command"; exit 1; }
    echo "readme-check: running the README's loom command: $cmd"
    out=$(mktemp)
    bash -c "$cmd" 2>&1 | tee "$out" | grep -E '^(test |test result)' || true
    ran=$(sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' "$out" | awk '{s += $1} END {print s + 0}')
    failed=$(grep -c '^test result: FAILED' "$out" || true)
    rm -f "$out"
    if [ "$failed" != 0 ] || [ "$ran" -lt 1 ]; then
        echo "readme-check: the loom command ran $ran model(s), $failed failing result(s)"
        exit 1
    fi
    echo "readme-check: the loom command ran $ran model(s)"
fi
