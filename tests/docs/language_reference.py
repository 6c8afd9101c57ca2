#!/usr/bin/env python3
"""docs/language.md stays a complete and accurate reference of what the compiler accepts.

Usage: language_reference.py MTLC SOURCE_DIR WORK_DIR

1. Every name semantic analysis accepts is named in the reference: layers, expert blocks, losses,
   metrics, optimizers, weightings, train settings, data sources and their fields, pipeline source
   functions, every argument name, the reserved words and binding operators of grammar/MTL.g4, and
   every subcommand and option of compiler/driver/Options.cpp. The names are read from the
   compiler's own tables (compiler/sema/*.cpp), so a name added there without documentation fails.
2. Every layer, block, optimizer, weighting and source has a signature in a code span,
   `name(arg, opt=default, ...)`, naming all of its arguments (optional ones as `arg=`).
3. Every fenced ```mtl block is a whole program that `mtlc` compiles (exit 0, no diagnostics), and
   every ```mtl-rejected block (the "not yet implemented" forms) is refused with exit status 1 and
   an "unknown ..." error.
"""
import os
import re
import subprocess
import sys

failures = []


def fail(msg):
    failures.append(msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def need(found, what, at_least):
    """The extraction itself must work: a table whose shape changed must not pass silently."""
    if len(found) < at_least:
        fail(f"extracted only {len(found)} {what} from the compiler sources (expected at least "
             f"{at_least}); update tests/docs/language_reference.py to the new table layout")
    return found


def function_body(src, signature):
    """The text of the C++ function whose definition starts with `signature`, up to its closing brace."""
    start = src.find(signature)
    if start < 0:
        fail(f"cannot find `{signature}` in the compiler sources")
        return ""
    depth, i = 0, src.index("{", start)
    for j in range(i, len(src)):
        depth += {"{": 1, "}": -1}.get(src[j], 0)
        if depth == 0:
            return src[start:j + 1]
    return src[start:]


PARAM = r'(?:intParam|realParam|stringParam|unit)\("(\w+)",\s*([^,)]+)|[{,]\s*(\w+)\s*(?=[,}])'


def variables(text):
    """ParamDef variables defined in `text`: {variable: (argument name, required text)}."""
    return {v: (n, r.strip()) for v, n, r in
            re.findall(r'ParamDef (\w+) = \w+\("(\w+)",\s*([^,)]+)', text)}


def params_of(text, callee, names):
    """[(argument, required)] of the ParamDefs built or listed (as variables) in `text`.

    `required` is the second argument of intParam/realParam/stringParam: `true`, `false`, or an
    expression such as `c.name == "sgd"` (required for that callee only); unit(...) is optional.
    """
    out = {}
    for m in re.finditer(PARAM, text):
        name, req = (m.group(1), m.group(2)) if m.group(1) else names.get(m.group(3), (None, None))
        if name and name not in out:
            req = req.strip()
            out[name] = req == "true" or ("==" in req and f'"{callee}"' in req)
    return list(out.items())


def braced(text, at):
    """The balanced {...} block of `text` that starts at or after index `at`."""
    i = text.index("{", at)
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j + 1]
    return text[i:]


def branches(fn_text, subject):
    """{callee: its branch} for every `if (SUBJECT.name == "callee") { ... }` of a function."""
    return {m.group(1): braced(fn_text, m.end() - 1)
            for m in re.finditer(r'if \(' + subject + r'\.name == "(\w+)"\) \{', fn_text)}


def extract(src_dir):
    sema = {f: read(os.path.join(src_dir, "compiler/sema", f))
            for f in os.listdir(os.path.join(src_dir, "compiler/sema")) if f.endswith(".cpp")}
    shapes, blocks_src, sema_src, data_src = (sema["ShapeInference.cpp"], sema["Blocks.cpp"],
                                              sema["Sema.cpp"], sema["DataBinding.cpp"])
    callees = {}  # name -> [(arg, required)]: everything that needs a signature

    # Layers: {"dense", LayerKind::Dense, {intParam("units", true)}, "dense(64)"},
    table = function_body(shapes, "const std::vector<LayerInfo> &layerTable()")
    entries = re.split(r'\{"(\w+)", LayerKind::', table)[1:]
    layers = need(entries[0::2], "layers", 13)
    for name, body in zip(entries[0::2], entries[1::2]):
        callees[name] = params_of(body, name, variables(table))

    # Expert blocks: knownBlocks() and checkBlock's `call.name == "..."` branches.
    blocks = need(re.findall(r'"(\w+)"', function_body(shapes, "const std::vector<std::string> &knownBlocks()")),
                  "expert blocks", 4)
    check_block = function_body(blocks_src, "std::optional<Shape> Analyzer::checkBlock(")
    for name, body in branches(check_block, "call").items():
        callees[name] = params_of(body, name, variables(check_block))
    for b in blocks:
        callees.setdefault(b, [])

    def listed(fn, what, at_least):
        return need(re.findall(r'"(\w+)"', function_body(sema_src, fn)), what, at_least)

    losses = listed("const std::vector<std::string> &knownLosses()", "losses", 4)
    weightings = listed("const std::vector<std::string> &knownWeightings()", "weightings", 7)
    metrics = listed("const std::vector<std::string> &knownMetrics()", "metrics", 4)
    check_weighting = function_body(sema_src, "void Analyzer::checkWeighting(")
    for w in weightings:
        callees[w] = []
    for name, body in branches(check_weighting, "c").items():
        callees[name] = params_of(body, name, variables(check_weighting))

    # Optimizers: each branch passes its parameter list (variables of the function and calls) to
    # bindArgs.
    check_opt = function_body(sema_src, "void Analyzer::checkOptimizer(")
    opt_branches = branches(check_opt, "c")
    optimizers = need(list(opt_branches), "optimizers", 2)
    for name, body in opt_branches.items():
        callees[name] = params_of(body, name, variables(check_opt))

    check_train = function_body(sema_src, "void Analyzer::checkTrain()")
    settings = need(re.findall(r'"(\w+)"', re.search(r'settings = \{(.*?)\};', check_train, re.S).group(1)),
                    "train settings", 8)

    # Sources: {"csv", Family::Csv, {stringParam("path", true)}, true, "csv(\"data.csv\")", {}},
    table = function_body(data_src, "const std::vector<SourceInfo> &sourceTable()")
    entries = re.split(r'\{"(\w+)", Family::', table)[1:]
    sources = need(entries[0::2], "data sources", 5)
    fields, choices = [], []
    for name, body in zip(entries[0::2], entries[1::2]):
        callees[name] = params_of(body, name, variables(table))
        fields += re.findall(r'\{"(\w+)", (?:\d+|kFashionPixels)', body)
        for c in re.findall(r'stringParam\("\w+", \w+, \{(.*?)\}\)', body):
            choices += re.findall(r'"(\w+)"', c)
    need(fields, "source fields", 8)

    # Pipeline sources other than a plain name: gate(...) is grammar; column, concat are sema's.
    block_source = function_body(blocks_src, "std::optional<Shape> Analyzer::resolveBlockSource(")
    source_fns = need(sorted(set(re.findall(r'ap\.source == "(\w+)"', block_source))), "source functions", 2)

    arg_names = need(sorted({n for text in sema.values() for n, _ in params_of(text, "", variables(text))}),
                     "argument names", 25)

    grammar = read(os.path.join(src_dir, "grammar/MTL.g4"))
    keywords = need(re.findall(r"^[A-Z]+\s*: '([a-z]+)' ;", grammar, re.M), "reserved words", 12)
    binop = re.search(r"^binOp\s*\n\s*:(.*?);", grammar, re.M | re.S).group(1)
    operators = need(re.findall(r"'([^']+)'", binop), "binding operators", 10)
    dtypes = re.findall(r'd->dtype != "(\w+)"', sema_src)

    options_src = read(os.path.join(src_dir, "compiler/driver/Options.cpp"))
    subcommands = need(re.findall(r'add_subcommand\(\s*"(\w+)"', options_src), "subcommands", 4)
    options = []
    for spec in re.findall(r'add_(?:option|flag)\("(-[^"]+)"', options_src):
        forms = spec.split(",")
        longs = [f for f in forms if f.startswith("--")]
        options.append(longs[0] if longs else forms[0])
    options = need(sorted(set(options)), "command-line options", 20)

    names = {
        "layer": layers, "expert block": blocks, "loss": losses, "metric": metrics,
        "weighting": weightings, "optimizer": optimizers, "train setting": settings,
        "data source": sources, "source field": fields, "source argument value": choices,
        "pipeline source function": source_fns, "argument": arg_names, "reserved word": keywords,
        "binding operator": operators, "element type": need(dtypes, "element types", 1),
        "subcommand": subcommands, "command-line option": options,
    }
    signed = set(layers) | set(blocks) | set(optimizers) | set(weightings) | set(sources)
    return names, {k: v for k, v in callees.items() if k in signed}


def code_of(doc):
    """The inline code spans and fenced blocks of a markdown text, as one list of strings."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", doc, re.M | re.S)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", doc, flags=re.M | re.S)
    inline = re.findall(r"`([^`\n]+)`", prose)
    return inline, fenced


def check_names(doc, names, callees):
    # What the compiler accepts must be documented outside the "Not yet implemented" section.
    doc = re.sub(r"^## Not yet implemented\n.*?(?=^## |\Z)", "", doc, flags=re.M | re.S)
    inline, fenced = code_of(doc)
    code = inline + fenced
    for kind, values in names.items():
        for v in values:
            word = re.compile(r"(?<![\w-])" + re.escape(v) + r"(?![\w-])")
            if not any(word.search(c) for c in code):
                fail(f"docs/language.md never names the {kind} `{v}` in code")
    for name, params in sorted(callees.items()):
        spans = [c.strip() for c in inline if re.match(re.escape(name) + r"(\(|\s|$)", c.strip())]
        if not spans:
            fail(f"docs/language.md has no signature span for `{name}` (e.g. `{name}(...)` or `{name}`)")
            continue

        def complete(span):
            for arg, required in params:
                pattern = (r"[(,]\s*" + re.escape(arg) + r"\s*[,)]") if required else \
                          (r"[(,]\s*" + re.escape(arg) + r"\s*=")
                if not re.search(pattern, span):
                    return False
            return True
        if not any(complete(s) for s in spans):
            want = ", ".join(a if r else a + "=..." for a, r in params)
            fail(f"no signature of `{name}` in docs/language.md names all its arguments: "
                 f"`{name}({want})` (have: {', '.join('`' + s + '`' for s in spans)})")


def check_programs(doc, mtlc, src_dir, work):
    # The programs are written to WORK/docs/ beside a link WORK/examples -> the source's examples/,
    # so a path such as "../examples/tabular.csv" resolves as it does from docs/language.md.
    work_docs = os.path.join(work, "docs")
    os.makedirs(work_docs, exist_ok=True)
    link = os.path.join(work, "examples")
    if os.path.islink(link):
        os.unlink(link)
    os.symlink(os.path.join(os.path.abspath(src_dir), "examples"), link)
    blocks = re.findall(r"^```(mtl|mtl-rejected)\n(.*?)^```", doc, re.M | re.S)
    good = [b for k, b in blocks if k == "mtl"]
    if len(good) < 5:
        fail(f"docs/language.md has {len(good)} ```mtl programs; expected at least 5")
    for i, (kind, text) in enumerate(blocks, 1):
        path = os.path.join(work_docs, f"block{i}.mtl")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        r = subprocess.run([mtlc, "--color=never", path], capture_output=True, text=True, timeout=300)
        first = text.strip().splitlines()[0]
        if kind == "mtl" and (r.returncode != 0 or "error" in r.stderr or "warning" in r.stderr):
            fail(f"```mtl block {i} ({first}) does not compile (exit {r.returncode}):\n{r.stderr}")
        if kind == "mtl-rejected" and (r.returncode != 1 or "error: unknown" not in r.stderr):
            fail(f"```mtl-rejected block {i} ({first}) is no longer refused (exit {r.returncode}): "
                 f"document it as implemented\n{r.stderr}")
        print(f"block {i} ({kind}): exit {r.returncode}")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    mtlc, src_dir, work = sys.argv[1:]
    doc_path = os.path.join(src_dir, "docs/language.md")
    if not os.path.exists(doc_path):
        print("FAIL: docs/language.md does not exist")
        return 1
    doc = read(doc_path)
    names, callees = extract(src_dir)
    total = sum(len(v) for v in names.values())
    print(f"checking {total} names and {len(callees)} signatures against docs/language.md")
    check_names(doc, names, callees)
    check_programs(doc, mtlc, src_dir, work)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
