// Wavelength grids. Wavelengths are in Angstrom (vacuum). A grid has n pixels with n + 1 edges;
// log-linear grids have constant d(ln lambda) per pixel and centres at the geometric mean of their
// edges, linear grids constant d(lambda) and centres at the arithmetic mean.
#pragma once

#include <string>
#include <vector>

namespace csst {

enum class GridKind { kLinear, kLog };

class WavelengthGrid {
 public:
  // Pixels span [first_edge, last_edge] exactly.
  WavelengthGrid(GridKind kind, double first_edge, double last_edge, int n);

  int size() const { return n_; }
  GridKind kind() const { return kind_; }
  double first_edge() const { return first_; }
  double last_edge() const { return last_; }
  // Pixel step: d(ln lambda) for log grids, d(lambda) [A] for linear grids.
  double step() const { return step_; }
  double Centre(int i) const;
  double Edge(int i) const;  // i in [0, n]
  std::vector<double> Centres() const;
  std::vector<double> Edges() const;
  // Fractional pixel index of a wavelength (centre of pixel i -> i).
  double PixelFromWavelength(double lambda) const;
  bool operator==(const WavelengthGrid& o) const;
  std::string Describe() const;

 private:
  GridKind kind_;
  double first_, last_;
  int n_;
  double step_;
};

// The network's input grid (paper Sec. 2, "LAMOST-like"): 4000-7000 A, 2238 log-lambda pixels,
// d ln(lambda) = ln(7000/4000)/2238 = 2.5005e-4 (R = 2000 sampled at two pixels per element).
const WavelengthGrid& InputGrid();
// The network's output grid ("CSST-like"): 2500-10500 A, 574 log-lambda pixels,
// d ln(lambda) = ln(10500/2500)/574 = 2.5001e-3 (R = 200 at two pixels per element).
const WavelengthGrid& OutputGrid();

// Grid of the stored true SEDs: 2400-10600 A, 2970 log-lambda pixels (d ln lambda = 5.0e-4),
// holding SEDs degraded to R = 1000 so that any instrument resolution R <= 500 can be applied
// later.
const WavelengthGrid& TruthGrid();
constexpr double kTruthResolution = 1000.0;

// The SED scaling window of the paper: mean flux in 5526-5586 A (free of strong lines).
constexpr double kScaleWindowMin = 5526.0;
constexpr double kScaleWindowMax = 5586.0;

}  // namespace csst
