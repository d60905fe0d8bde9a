#include "io/training_set.h"

#include "core/errors.h"
#include "core/grid.h"

namespace csst {

void WriteTrainingGrid(const std::string& path, const TrainingGrid& g, const Provenance& prov) {
  FitsWriter w(path);
  Provenance p = prov;
  p.descrip = "UaRA-net training grid: noiseless R=2000 normalised inputs and R=200 scaled SEDs";
  w.WritePrimary(p);
  w.WriteTable("GRID", {{"NAME", "", g.name},
                        {"TEFF", "K", g.teff},
                        {"LOGG", "dex", g.logg},
                        {"MH", "dex", g.mh},
                        {"ALPHA", "dex", g.alpha},
                        {"TEST", "", g.test},
                        {"INPUT", "", g.input, InputGrid().size()},
                        {"TARGET", "", g.target, OutputGrid().size()},
                        {"TMASK", "", g.target_mask, OutputGrid().size()}});
  w.Standard(p, "");
  w.Comment("INPUT: 2238 px 4000-7000 A log grid, R=2000, flux / 51-px moving average (noiseless)");
  w.Comment("TARGET: 574 px 2500-10500 A log grid, R=200, flux / mean flux in 5526-5586 A");
  w.Comment("TMASK: 1 = target pixel valid; TEST: 1 = held-out test star (3:1 split by star)");
  w.Close();
}

TrainingGrid ReadTrainingGrid(const std::string& path) {
  FitsReader r(path);
  r.MoveTo("GRID");
  TrainingGrid g;
  if (r.ColumnRepeat("INPUT") != InputGrid().size() ||
      r.ColumnRepeat("TARGET") != OutputGrid().size()) {
    throw IoError(path + ": INPUT/TARGET widths differ from the 2238/574-pixel grids");
  }
  g.name = r.ReadStringColumn("NAME");
  g.teff = r.ReadColumn("TEFF");
  g.logg = r.ReadColumn("LOGG");
  g.mh = r.ReadColumn("MH");
  g.alpha = r.ReadColumn("ALPHA");
  for (double v : r.ReadColumn("TEST")) g.test.push_back(static_cast<uint8_t>(v));
  for (double v : r.ReadColumn("INPUT")) g.input.push_back(static_cast<float>(v));
  for (double v : r.ReadColumn("TARGET")) g.target.push_back(static_cast<float>(v));
  for (double v : r.ReadColumn("TMASK")) g.target_mask.push_back(static_cast<uint8_t>(v));
  return g;
}

}  // namespace csst
