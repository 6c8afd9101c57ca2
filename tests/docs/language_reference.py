#!/usr/bin/env python3
"""docs/language.md stays a complete and accurate reference of what the compiler accepts.

Usage: language_reference.py MTLC SOURCE_DIR WORK_DIR

1. Every name semantic analysis accepts is named in the reference: layers, expert blocks, losses,
   metrics, optimizers, weightings, train settings, data sources and their fields, pipeline source
   functions, every argument name, the reserved words and binding operators of grammar/MTL.g4, and
   every subcommand and option of compiler/driver/Options.cpp. The names are read from the
   vocabulary table (spec/Vocabulary.def) and the compiler's own tables (compiler/sema/*.cpp), so a
   name added there without documentation fails.
2. Every layer, block, optimizer, weighting and source has a signature in a code span,
   `name(arg, opt=default, ...)`, naming all of its arguments (optional ones as `arg=`).
3. The tables of layers, blocks, losses, metrics, optimizers, weightings (and schedules) agree with
   spec/Vocabulary.def: one row per vocabulary row, in its order, each with its signature and the
   vocabulary's defaults.
4. Every fenced ```mtl block is a whole program that `mtlc` compiles (exit 0, no diagnostics), and
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


def split_args(text):
    """The top-level comma-separated parts of a macro's argument text."""
    parts, depth, cur, quoted = [], 0, "", False
    for i, ch in enumerate(text):
        if ch == '"' and (i == 0 or text[i - 1] != "\\"):
            quoted = not quoted
        elif not quoted and ch in "([":
            depth += 1
        elif not quoted and ch in ")]":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def macro_calls(text, names):
    """[(macro, [arguments])] of every call of one of `names` in `text`, in order."""
    calls = []
    for m in re.finditer(r"\b(" + "|".join(names) + r")\(", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append((m.group(1), split_args(text[m.end():i - 1])))
    return calls


def unquote(s):
    return s[1:-1] if s.startswith('"') else s


def vocabulary(src_dir):
    """The rows of spec/Vocabulary.def: {kind: [{name, args: [(arg, required, default)]}]}.

    A default is a float, or a string for a derived default shown in words (MTLC_INT_SHOWN) or a
    true/false (MTLC_BOOL); a list (MTLC_INT_LIST) is required; the word of a choice (MTLC_CHOICE).
    """
    text = read(os.path.join(src_dir, "spec/Vocabulary.def"))
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith(("//", "#")))
    layout = {  # macro: (table, index of the name, index of the arguments or None)
        "MTLC_LAYER": (None, 1, 5), "MTLC_BLOCK_FORM": ("block", 0, 4), "MTLC_LOSS": ("loss", 1, None),
        "MTLC_METRIC": ("metric", 1, None), "MTLC_OPTIMIZER": ("optimizer", 1, 4),
        "MTLC_WEIGHTING": ("weighting", 1, 5), "MTLC_SCHEDULE": ("schedule", 1, 4),
    }
    rows = {k: [] for k in ("layer", "block", "loss", "metric", "optimizer", "weighting", "schedule")}
    for macro, parts in macro_calls(text, list(layout)):
        table, at, args_at = layout[macro]
        if table is None:
            table = "block" if parts[2] == "Block" else "layer"
        args = []
        if args_at is not None:
            arg_macros = ["MTLC_INT_SHOWN", "MTLC_INT_LIST", "MTLC_INT", "MTLC_REAL", "MTLC_BOOL", "MTLC_CHOICE"]
            for arg_macro, a in macro_calls(parts[args_at], arg_macros):
                if arg_macro in ("MTLC_INT_SHOWN", "MTLC_CHOICE"):
                    args.append((unquote(a[0]), False, unquote(a[1])))
                elif arg_macro == "MTLC_INT_LIST":
                    args.append((unquote(a[0]), True, None))
                elif arg_macro == "MTLC_BOOL":
                    args.append((unquote(a[0]), False, a[1].strip()))
                else:
                    args.append((unquote(a[0]), a[1] == "Required", float(a[2])))
        rows[table].append({"name": unquote(parts[at]), "args": args})
    return rows


def extract(src_dir):
    sema = {f: read(os.path.join(src_dir, "compiler/sema", f))
            for f in os.listdir(os.path.join(src_dir, "compiler/sema")) if f.endswith(".cpp")}
    blocks_src, sema_src, data_src = sema["Blocks.cpp"], sema["Sema.cpp"], sema["DataBinding.cpp"]
    callees = {}  # name -> [(arg, required)]: everything that needs a signature

    vocab = vocabulary(src_dir)
    for table in vocab.values():
        for row in table:
            callees[row["name"]] = [(a, required) for a, required, _ in row["args"]]
    names_of = lambda table, at_least: need([r["name"] for r in vocab[table]], table + "s", at_least)
    layers, blocks = names_of("layer", 13), names_of("block", 4)
    losses, metrics = names_of("loss", 4), names_of("metric", 4)
    optimizers, weightings = names_of("optimizer", 2), names_of("weighting", 7)
    schedules = [r["name"] for r in vocab["schedule"]]

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

    arg_names = need(sorted({a for args in callees.values() for a, _ in args}), "argument names", 25)

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
        "weighting": weightings, "optimizer": optimizers, "schedule": schedules, "train setting": settings,
        "data source": sources, "source field": fields, "source argument value": choices,
        "pipeline source function": source_fns, "argument": arg_names, "reserved word": keywords,
        "binding operator": operators, "element type": need(dtypes, "element types", 1),
        "subcommand": subcommands, "command-line option": options,
    }
    signed = set(layers) | set(blocks) | set(optimizers) | set(weightings) | set(schedules) | set(sources)
    return names, {k: v for k, v in callees.items() if k in signed}, vocab


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


TABLE_HEADS = {"layer": "Layer", "block": "Block", "loss": "Loss", "metric": "Metric",
               "optimizer": "Optimizer", "weighting": "Weighting", "schedule": "Schedule"}


def doc_table(doc, head):
    """The first cells of the markdown table whose header row starts with `| head |`, or None."""
    m = re.search(r"^\| " + head + r" \|.*\n\|[- |]+\|\n((?:\|.*\n)*)", doc, re.M)
    if not m:
        return None
    return [row.split("|")[1].strip() for row in m.group(1).splitlines()]


def format_default(value):
    return value if isinstance(value, str) else repr(value)


def check_tables(doc, vocab):
    """docs/language.md has one table per kind of spec/Vocabulary.def, with one row per row of the
    vocabulary in its order, whose first cell spells the signature: every argument, the optional
    ones with the vocabulary's default (`conv2d(channels, kernel, stride=1, padding=0)`)."""
    for table, rows in vocab.items():
        cells = doc_table(doc, TABLE_HEADS[table])
        if cells is None:
            if rows:
                fail(f"docs/language.md has no table `| {TABLE_HEADS[table]} | ...` for the {len(rows)} "
                     f"{table}(s) of spec/Vocabulary.def")
            continue
        spans = [re.match(r"`([^`]*)`", c) for c in cells]
        documented = [re.match(r"\w+", m.group(1)).group(0) if m else c for m, c in zip(spans, cells)]
        wanted = [r["name"] for r in rows]
        if documented != wanted:
            fail(f"the {table} table of docs/language.md lists {documented}; spec/Vocabulary.def has "
                 f"{wanted} (one row each, in the table's order)")
            continue
        for row, m in zip(rows, spans):
            given = dict(re.findall(r"(\w+)=([^,)]+)", m.group(1)))
            for arg, required, default in row["args"]:
                if required:
                    continue
                doc_default = given.get(arg)
                ok = doc_default is not None and (
                    doc_default == default if isinstance(default, str) else
                    re.fullmatch(r"[-+0-9.e]+", doc_default) and float(doc_default) == default)
                if not ok:
                    fail(f"docs/language.md documents `{m.group(1)}`; spec/Vocabulary.def gives "
                         f"`{row['name']}` the argument `{arg}={format_default(default)}`")


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
    names, callees, vocab = extract(src_dir)
    total = sum(len(v) for v in names.values())
    print(f"checking {total} names and {len(callees)} signatures against docs/language.md")
    check_names(doc, names, callees)
    check_tables(doc, vocab)
    check_programs(doc, mtlc, src_dir, work)
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
