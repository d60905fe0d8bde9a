#!/usr/bin/python3
"""Unit tests of tools/docs_tables.py on fixture runs (tests/data/docs_tables): every expected cell below was
formatted by hand from the fixture's numbers, not by the generator."""
import os
import shutil
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))
import docs_tables  # noqa: E402

FIXTURES = os.path.join(REPO, "tests", "data", "docs_tables")


class Generators(unittest.TestCase):
    def setUp(self):
        docs_tables.ROOT = FIXTURES

    def test_study(self):
        self.assertEqual(docs_tables.generate("study", ["A=run_a"])[2],
                         "| A | 400 | 20 | 0.053 / 0.0029 / 0.0028 | 0.045 / 0.0022 / 0.0027 | "
                         "-0.024 / +0.00011 / -0.00011 | 0.546 / 0.563 / 0.714 |")

    def test_shipped(self):
        self.assertEqual(docs_tables.generate("shipped", ["A=run_a"])[2],
                         "| A | 0.056 / 0.0014 / 0.0027 | -0.029 / +0.00025 / -0.0015 | 0.642 / 0.837 / 0.801 | "
                         "0.05 / 0.0013 / 0.0022 | 0.014 / 0.00042 / 0.001 |")

    def test_sed_bias(self):
        self.assertEqual(docs_tables.generate("sed_bias", ["A=run_a"])[2], "| A | -0.003 / -0.00067 / +0.0012 |")
        rows = docs_tables.generate("sed_bias_rows", ["run_a"])
        self.assertEqual(rows[2:], ["| all | 400 | -0.003 / -0.00067 / +0.0012 |",
                                    "| Teff 5000-5750 K | 174 | +0.041 / -4.9e-06 / +0.0004 |"])

    def test_precision(self):
        self.assertEqual(docs_tables.generate("precision", ["none at all=run_a"])[2],
                         "| none at all | 20 | 0.053 | 0.0029 | 0.0028 |")

    def test_scaling(self):
        md = docs_tables.generate("scaling", ["scaling"])
        self.assertEqual(md[0], "| stars | absolute GU | absolute GV | absolute GI | GU x sqrt(N/400) | "
                                "GV x sqrt(N/400) | GI x sqrt(N/400) |")
        self.assertEqual(md[2], "| 400 | 4.00e-02 | 1.20e-03 | 2.00e-03 | 4.00e-02 | 1.20e-03 | 2.00e-03 |")
        self.assertEqual(md[3], "| 1600 | 2.00e-02 | 6.00e-04 | 1.00e-03 | 4.00e-02 | 1.20e-03 | 2.00e-03 |")
        self.assertEqual(md[7], "| 400 | 4.00e-02 | 1.20e-03 | 2.00e-03 | 1163 | sample 10, validate 20 |")
        self.assertEqual(md[8], "| 1600 | 4.90e-03 | 6.00e-04 | 1.00e-03 | - | - |")
        self.assertEqual(md[10], "Smallest N whose relative precision reaches the paper's ideal-case numbers (GU "
                                 "0.005, GV 0.0003, GI 0.0005): GU N = 1600; GV not reached up to N = 1600; GI not "
                                 "reached up to N = 1600.")

    def test_evaluation(self):
        self.assertEqual(docs_tables.generate("evaluation", ["evaluation.json", "6000:20"])[2],
                         "| 6000 | 20 | -0.031 / 0.26 | -0.00023 / 0.0098 | +0.0016 / 0.017 |")
        with self.assertRaises(SystemExit):  # a cell the evaluation does not have
            docs_tables.generate("evaluation", ["evaluation.json", "8000:20"])
        self.assertEqual(docs_tables.generate("coverage", ["evaluation.json"])[2],
                         "| evaluation.json | 0.699 / 0.717 / 0.710 | 0.942 / 0.957 / 0.953 | 0.0564 |")
        md = docs_tables.generate("wavelengths", ["80", "evaluation.json"])
        self.assertEqual(md[0], "| evaluation, SNR 80 | σ at 3600 / 4500 Å | median there | 1σ coverage there |")
        self.assertEqual(md[2], "| evaluation.json | 0.074 / 0.020 | -0.001 / -0.005 | 0.75 / 0.64 |")

    def test_stages_and_bench(self):
        self.assertEqual(docs_tables.generate("stages", ["A=run_a"]),
                         ["| stage | A |", "|---|---|", "| sample | 9.3 s (12 CPU s), 1.19 GB |",
                          "| ingest | 0.4 s |", "| fit | 0.4 s (1.6 CPU s), 0.22 GB |"])
        self.assertEqual(docs_tables.generate("bench", ["bench.json", "mpi"])[2:], ["| mpi | mpi validate | 1.75x |"])
        self.assertEqual(len(docs_tables.generate("bench", ["bench.json"])), 4)

    def test_missing_source(self):
        with self.assertRaises(docs_tables.Missing):
            docs_tables.generate("study", ["A=no_such_run"])


class Pages(unittest.TestCase):
    def setUp(self):
        docs_tables.ROOT = FIXTURES
        self.dir = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def page(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_refresh_rewrites_a_stale_table_and_check_finds_it(self):
        path = self.page("results.md", "# R\n\n<!-- table: sed_bias A=run_a -->\n| config | x |\n|---|---|\n"
                                       "| A | hand-written |\n<!-- end table -->\n\nprose\n")
        text, problems, refreshed, kept = docs_tables.process(path, "check", False)
        self.assertEqual(len(problems), 1)
        self.assertIn("differs", problems[0])
        self.assertEqual(text, "# R\n\n<!-- table: sed_bias A=run_a -->\n"
                               "| config | sample's mean SED error (mu/SED - 1) |\n|---|---|\n"
                               "| A | -0.003 / -0.00067 / +0.0012 |\n<!-- end table -->\n\nprose\n")
        self.page("results.md", text)
        self.assertEqual(docs_tables.process(path, "check", False)[1], [])

    def test_indented_table_in_a_list_item(self):
        path = self.page("products.md", "- item\n\n  <!-- table: sed_bias A=run_a -->\n  | stale |\n"
                                        "  <!-- end table -->\n")
        text = docs_tables.process(path, "refresh", False)[0]
        self.assertEqual(text, "- item\n\n  <!-- table: sed_bias A=run_a -->\n"
                               "  | config | sample's mean SED error (mu/SED - 1) |\n  |---|---|\n"
                               "  | A | -0.003 / -0.00067 / +0.0012 |\n  <!-- end table -->\n")

    def test_common_error(self):
        self.assertEqual(docs_tables.generate("common_error", ["M=evaluation.json"])[2],
                         "| M | 0.037 / - / 0.009 | 0.012 / - / - | - / - / - |")

    def test_lint(self):
        path = self.page("results.md", "| a | b |\n|---|---|\n\n<!-- table: nonsense x -->\n<!-- end table -->\n"
                                       "<!-- table: study A=no_such_run -->\n| old |\n<!-- end table -->\n"
                                       "<!-- table: text -->\n| a description |\n<!-- end table -->\n"
                                       "```\n| in code |\n```\n<!-- table: study A=run_a -->\n")
        text, problems, refreshed, kept = docs_tables.process(path, "check", False)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("outside", problems[0])
        self.assertIn("unknown table kind 'nonsense'", problems[1])
        self.assertIn("without its", problems[2])
        self.assertEqual(len(kept), 1)  # the missing run keeps its table as written
        self.assertIn("| old |", text)
        # A page that is not a results page may hold free tables.
        other = self.page("products.md", "| a | b |\n|---|---|\n")
        self.assertEqual(docs_tables.process(other, "check", False)[1], [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
