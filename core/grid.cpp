#include "core/grid.h"

#include <cmath>
#include <sstream>

#include "core/errors.h"

namespace csst {

WavelengthGrid::WavelengthGrid(GridKind kind, double first_edge, double last_edge, int n)
    : kind_(kind), first_(first_edge), last_(last_edge), n_(n) {
  if (!(n > 0) || !(first_edge > 0) || !(last_edge > first_edge)) {
    throw Error("invalid wavelength grid: need n > 0 and 0 < first_edge < last_edge, got n = " +
                std::to_string(n) + ", edges " + std::to_string(first_edge) + ".." +
                std::to_string(last_edge));
  }
  step_ = kind == GridKind::kLog ? std::log(last_ / first_) / n : (last_ - first_) / n;
}

double WavelengthGrid::Edge(int i) const {
  if (i == n_) return last_;
  return kind_ == GridKind::kLog ? first_ * std::exp(step_ * i) : first_ + step_ * i;
}

double WavelengthGrid::Centre(int i) const {
  return kind_ == GridKind::kLog ? first_ * std::exp(step_ * (i + 0.5))
                                 : first_ + step_ * (i + 0.5);
}

std::vector<double> WavelengthGrid::Centres() const {
  std::vector<double> c(n_);
  for (int i = 0; i < n_; ++i) c[i] = Centre(i);
  return c;
}

std::vector<double> WavelengthGrid::Edges() const {
  std::vector<double> e(n_ + 1);
  for (int i = 0; i <= n_; ++i) e[i] = Edge(i);
  return e;
}

double WavelengthGrid::PixelFromWavelength(double lambda) const {
  return kind_ == GridKind::kLog ? std::log(lambda / first_) / step_ - 0.5
                                 : (lambda - first_) / step_ - 0.5;
}

bool WavelengthGrid::operator==(const WavelengthGrid& o) const {
  return kind_ == o.kind_ && n_ == o.n_ && std::abs(first_ - o.first_) < 1e-9 * first_ &&
         std::abs(last_ - o.last_) < 1e-9 * last_;
}

std::string WavelengthGrid::Describe() const {
  std::ostringstream s;
  s.precision(10);
  s << (kind_ == GridKind::kLog ? "log" : "linear") << " " << first_ << "-" << last_ << " A, " << n_
    << " px";
  return s.str();
}

const WavelengthGrid& InputGrid() {
  static const WavelengthGrid g(GridKind::kLog, 4000.0, 7000.0, 2238);
  return g;
}

const WavelengthGrid& OutputGrid() {
  static const WavelengthGrid g(GridKind::kLog, 2500.0, 10500.0, 574);
  return g;
}

const WavelengthGrid& TruthGrid() {
  static const WavelengthGrid g(GridKind::kLog, 2400.0, 10600.0, 2970);
  return g;
}

}  // namespace csst
