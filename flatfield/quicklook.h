// PNG quicklooks written with GDAL (only quicklook.cpp includes GDAL): panels of 2-D maps with a
// viridis-like colour scale, a colour bar, and the scale's range and panel titles written in a
// small built-in 5x7 bitmap font.
#pragma once

#include <string>
#include <vector>

namespace csst {

struct QuicklookPanel {
  std::string title;  // e.g. "3375 A"
  int width = 0, height = 0;
  std::vector<double> values;  // row-major, row 0 at the top
};

// All panels share one colour range [lo, hi] (from the data when lo >= hi). Returns false (and
// writes nothing) when the build has no GDAL.
bool WriteQuicklookPng(const std::string& path, const std::string& title,
                       const std::vector<QuicklookPanel>& panels, double lo = 0, double hi = 0);

}  // namespace csst
