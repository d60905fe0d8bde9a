#!/usr/bin/env python3
"""Guard mutations (issues #29, #31): removes one guard at a time, rebuilds, runs the ctest entry that
should catch it, and restores the source. Every guard must make its test fail.

  python3 tools/guard_mutations.py [BUILD_DIR] [NAME_FILTER]

Takes ~2 min per guard on 2 cores (a rebuild each); leaves the tree as it found it.
"""
import os, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
ONLY = sys.argv[2] if len(sys.argv) > 2 else ""

# (guard, source file, guard text, text without the guard, ctest -R pattern of the test that catches it)
M = [
 ("BOM strip", "io/catalogue.cpp", "line.erase(0, 3);", ";", "CSV: byte-order mark"),
 ("one YAML document", "pipeline/config.cpp", "if (docs.size() > 1) {", "if (false) {", "config rules: one document"),
 ("sidecar range", "network/model_io.cpp", "if (!(std::isfinite(v) && v >= lo && v <= hi)) {", "if (!std::isfinite(v)) {", "model sidecars with impossible numbers"),
 ("off-detector row", "io/observations.cpp", "if (!(e.x[k] >= -0.5 && e.x[k] <= nx - 0.5 && e.y[k] >= -0.5 && e.y[k] <= ny - 0.5)) {", "if (false) {", "extracted spectra: rows that cannot be physical"),
 ("content hash", "pipeline/store.cpp", "if (HashPath(PathOf(out)) != it->second.hash) {", "if (false) {", "a product edited in place with its size and time kept"),
 ("column case", "io/catalogue.cpp", "if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i]))) return false;", "if (a[i] != b[i]) return false;", "catalogue columns in any case"),
 ("text numbers", "io/fits.cpp", "  return used == t.size();", "  return true;", "catalogue columns in any case"),
 ("VLA", "io/fits.cpp", "if (type < 0) return VariableRowLength(", "if (false) return VariableRowLength(", "FITS reader takes variable-length"),
 ("spectra folder as output", "pipeline/config.cpp", "if (fs::weakly_canonical(c.output.dir, ec) == fs::weakly_canonical(c.ingest.spectra_dir, ec)) {", "if (false) {", "runs that cannot give a product"),
 ("no slice fitted", "stages/flat_stages.cpp", "if (fitted_detectors == 0) {", "if (false) {", "runs that cannot give a product"),
 ("not FITS", "io/fits.cpp", "if (in && !compressed && (got < 9 || std::memcmp(head, \"SIMPLE  =\", 9) != 0)) {", "if (false) {", "FITS reader errors name the file"),
 ("cube WMIN<WMAX", "flatfield/products.cpp", "if (!(std::isfinite(wmin_) && std::isfinite(wmax_) && wmin_ > 0 && wmin_ < wmax_)) {", "if (false) {", "flat products that contradict their own header"),
 ("one OBSID one file", "io/ingest.cpp", "    const auto [it, fresh] = index.emplace(id, p.string());\n    if (!fresh) {", "    const auto [it, fresh] = index.emplace(id, p.string());\n    if (false) {", "duplicate identities are errors"),
 ("--from after --to", "pipeline/engine.cpp", "if (from >= 0 && to >= 0 && from > to) {", "if (false) {", "from, to and only select stages"),
 ("run memory", "pipeline/config.cpp", "CheckRunMemory(c, 0.5 * PhysicalMemoryBytes());", ";", "sizes whose memory would not fit"),
 ("label grid twin nodes", "simulation/label_grid.cpp", "    if (nodes[i + 1] - nodes[i] < twin) {", "    if (false) {", "label grid does not interpolate across"),
 ("LAMOST difference kernel", "simulation/lamost_sim.cpp", "  return NoiselessLamostWith(spectrum, r_in, star, o);", "  return NoiselessLamostWith(spectrum, 0.0, star, o);", "label grid: exact at nodes"),
]
failed = False
for name, f, old, new, test in M:
    if ONLY and ONLY not in name:
        continue
    p = os.path.join(ROOT, f)
    src = open(p).read()
    if old not in src:
        print(f"{name}: guard text not found in {f} (update this list)", flush=True)
        failed = True
        continue
    open(p, "w").write(src.replace(old, new, 1))
    try:
        b = subprocess.run(["cmake", "--build", BUILD, "-j2"], capture_output=True, text=True)
        if b.returncode != 0:
            print(f"{name}: build failed without the guard", flush=True)
            continue
        t = subprocess.run(["ctest", "-R", test], cwd=BUILD, capture_output=True, text=True)
        caught = t.returncode != 0
        print(f"{name}: guard removed -> '{test}' {'FAILS (caught)' if caught else 'PASSES (NOT caught)'}", flush=True)
        failed = failed or not caught
    finally:
        open(p, "w").write(src)
subprocess.run(["cmake", "--build", BUILD, "-j2"], capture_output=True)
print("sources restored and rebuilt", flush=True)
sys.exit(1 if failed else 0)
