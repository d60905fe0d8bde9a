#!/usr/bin/python3
"""No library function takes more than six parameters (issue #28 item 4).

Usage: tools/check_params.py [ROOT]
Reads every source of the layers (core, io, instrument, simulation, network, flatfield, validation, stages,
pipeline), headers and the file-local helpers of the .cpp files alike, and prints each function declared or
defined there with more than six parameters, as FILE:LINE: NAME takes N parameters; exits 1 if there is one.
Several parameters of one kind belong in an options or input struct. EXEMPT names the functions allowed more,
with the reason.
"""
import os
import re
import sys

LAYERS = ("core", "io", "instrument", "simulation", "network", "flatfield", "validation", "stages", "pipeline")
LIMIT = 6
# The folded engine's register-blocked kernels take raw pointers, strides and sizes in the BLAS convention
# (sgemm takes 13): a struct would only rename them, in the innermost loop.
EXEMPT = {("network/folded.cpp", "Conv3"), ("network/folded.cpp", "DenseInto")}
# A declaration: return type, name, parameter list (one level of nested parentheses), then ; { const or ->.
DECL = re.compile(r"(?:^|\n)[ \t]*((?:[\w:<>,~]+[ \t*&]+)+)([A-Za-z_]\w*)\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*"
                  r"(?:const\s*)?(?:override\s*)?(?:;|\{|->|=)")
NOT_TYPES = ("return", "else", "case", "new", "delete", "throw", "co_return", "goto")


def count(params):
    if not params.strip() or params.strip() == "void":
        return 0
    depth, n = 0, 1
    for ch in params:
        if ch in "<({[":
            depth += 1
        elif ch in ">)}]":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:[^"\\\n]|\\.)*"', '""', text)  # string literals: their commas are not parameters


def main(argv):
    root = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found, headers = [], 0
    for layer in LAYERS:
        for dirpath, _, files in os.walk(os.path.join(root, layer)):
            for f in sorted(files):
                if not f.endswith((".h", ".cpp")):
                    continue
                headers += 1
                path = os.path.join(dirpath, f)
                text = strip_comments(open(path, errors="replace").read())
                for m in DECL.finditer(text):
                    if m.group(1).split()[0] in NOT_TYPES:
                        continue
                    name, n = m.group(2), count(m.group(3))
                    rel = os.path.relpath(path, root)
                    if name in ("if", "for", "while", "switch", "return", "sizeof") or n <= LIMIT:
                        continue
                    if (rel, name) in EXEMPT:
                        continue
                    line = text.count("\n", 0, m.start(2)) + 1
                    found.append("%s:%d: %s takes %d parameters (at most %d)" % (rel, line, name, n, LIMIT))
    for f in found:
        print(f)
    print("check_params: %d source(s), %d function(s) over %d parameters (%d exempt kernels)" % (
        headers, len(found), LIMIT, len(EXEMPT)))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
