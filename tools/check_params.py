#!/usr/bin/python3
"""No library function takes more than six parameters (issue #28 item 4).

Usage: tools/check_params.py [ROOT]
Reads every header of the layers (core, io, instrument, simulation, network, flatfield, validation, stages,
pipeline) and prints each function declared there with more than six parameters, as FILE:LINE: NAME takes N
parameters; exits 1 if there is one. Several parameters of one kind belong in an options or input struct.
"""
import os
import re
import sys

LAYERS = ("core", "io", "instrument", "simulation", "network", "flatfield", "validation", "stages", "pipeline")
LIMIT = 6
# A declaration: return type, name, parameter list (one level of nested parentheses), then ; { const or ->.
DECL = re.compile(r"(?:^|\n)[ \t]*(?:[\w:<>,*&~ ]+?)[ \t*&]([A-Za-z_]\w*)\(([^()]*(?:\([^()]*\)[^()]*)*)\)\s*"
                  r"(?:const\s*)?(?:override\s*)?(?:;|\{|->|=)")


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
    return re.sub(r"//[^\n]*", "", text)


def main(argv):
    root = argv[0] if argv else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found, headers = [], 0
    for layer in LAYERS:
        for dirpath, _, files in os.walk(os.path.join(root, layer)):
            for f in sorted(files):
                if not f.endswith(".h"):
                    continue
                headers += 1
                path = os.path.join(dirpath, f)
                text = strip_comments(open(path, errors="replace").read())
                for m in DECL.finditer(text):
                    name, n = m.group(1), count(m.group(2))
                    if name in ("if", "for", "while", "switch", "return", "sizeof") or n <= LIMIT:
                        continue
                    line = text.count("\n", 0, m.start(1)) + 1
                    found.append("%s:%d: %s takes %d parameters (at most %d)" % (
                        os.path.relpath(path, root), line, name, n, LIMIT))
    for f in found:
        print(f)
    print("check_params: %d header(s), %d function(s) over %d parameters" % (headers, len(found), LIMIT))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
