#include "flatfield/quicklook.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>

#include "build_config.h"
#include "core/errors.h"

#if CSST_HAVE_GDAL
#include <cpl_conv.h>
#include <gdal.h>
#endif

namespace csst {
namespace {

// 5x7 glyphs, one byte per row (low 5 bits, MSB = leftmost).
const std::map<char, std::array<uint8_t, 7>>& Font() {
  static const std::map<char, std::array<uint8_t, 7>> f = {
      {'0', {14, 17, 19, 21, 25, 17, 14}}, {'1', {4, 12, 4, 4, 4, 4, 14}},
      {'2', {14, 17, 1, 2, 4, 8, 31}},     {'3', {31, 2, 4, 2, 1, 17, 14}},
      {'4', {2, 6, 10, 18, 31, 2, 2}},     {'5', {31, 16, 30, 1, 1, 17, 14}},
      {'6', {6, 8, 16, 30, 17, 17, 14}},   {'7', {31, 1, 2, 4, 8, 8, 8}},
      {'8', {14, 17, 17, 14, 17, 17, 14}}, {'9', {14, 17, 17, 15, 1, 2, 12}},
      {'.', {0, 0, 0, 0, 0, 12, 12}},      {'-', {0, 0, 0, 31, 0, 0, 0}},
      {'+', {0, 4, 4, 31, 4, 4, 0}},       {'e', {0, 0, 14, 17, 31, 16, 14}},
      {' ', {0, 0, 0, 0, 0, 0, 0}},        {'A', {14, 17, 17, 31, 17, 17, 17}},
      {'G', {14, 17, 16, 23, 17, 17, 15}}, {'U', {17, 17, 17, 17, 17, 17, 14}},
      {'V', {17, 17, 17, 17, 17, 10, 4}},  {'I', {14, 4, 4, 4, 4, 4, 14}},
      {'F', {31, 16, 16, 30, 16, 16, 16}}, {'T', {31, 4, 4, 4, 4, 4, 4}},
      {'L', {16, 16, 16, 16, 16, 16, 31}}, {'R', {30, 17, 17, 30, 20, 18, 17}},
      {'E', {31, 16, 16, 30, 16, 16, 31}}, {'D', {28, 18, 17, 17, 17, 18, 28}},
      {'S', {15, 16, 16, 14, 1, 1, 30}},   {'M', {17, 27, 21, 21, 17, 17, 17}},
      {'N', {17, 25, 21, 19, 17, 17, 17}}, {'O', {14, 17, 17, 17, 17, 17, 14}},
      {'P', {30, 17, 17, 30, 16, 16, 16}}, {'C', {14, 17, 16, 16, 16, 17, 14}},
      {'(', {2, 4, 8, 8, 8, 4, 2}},        {')', {8, 4, 2, 2, 2, 4, 8}},
      {'/', {1, 1, 2, 4, 8, 16, 16}},      {'=', {0, 0, 31, 0, 31, 0, 0}},
      {':', {0, 12, 12, 0, 12, 12, 0}},    {'X', {17, 17, 10, 4, 10, 17, 17}},
      {'Y', {17, 17, 10, 4, 4, 4, 4}},     {'W', {17, 17, 17, 21, 21, 21, 10}},
      {'H', {17, 17, 17, 31, 17, 17, 17}}, {'B', {30, 17, 17, 30, 17, 17, 30}},
      {'K', {17, 18, 20, 24, 20, 18, 17}}, {'Z', {31, 1, 2, 4, 8, 16, 31}},
  };
  return f;
}

// A planar RGB image being drawn: rgb holds 3 planes of w x h bytes.
struct Canvas {
  std::vector<uint8_t>& rgb;
  int w, h;
};

void Text(const Canvas& canvas, int x0, int y0, const std::string& s, int scale = 1) {
  auto& [rgb, w, h] = canvas;
  int x = x0;
  for (char ch : s) {
    const char c = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    auto it = Font().find(c == 'E' && ch == 'e' ? 'e' : c);
    if (it == Font().end()) it = Font().find(' ');
    for (int r = 0; r < 7; ++r)
      for (int col = 0; col < 5; ++col)
        if (it->second[r] & (16 >> col))
          for (int a = 0; a < scale; ++a)
            for (int b = 0; b < scale; ++b) {
              const int px = x + col * scale + b, py = y0 + r * scale + a;
              if (px < 0 || py < 0 || px >= w || py >= h) continue;
              for (int k = 0; k < 3; ++k) rgb[(static_cast<size_t>(k) * h + py) * w + px] = 0;
            }
    x += 6 * scale;
  }
}

// Viridis-like ramp from 5 anchor colours.
void Colour(double t, uint8_t out[3]) {
  static const double c[5][3] = {
      {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  for (int k = 0; k < 3; ++k) out[k] = static_cast<uint8_t>(c[i][k] + f * (c[i + 1][k] - c[i][k]));
}

std::string Num(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.4g", v);
  return b;
}

}  // namespace

bool WriteQuicklookPng(const std::string& path, const std::string& title,
                       const std::vector<QuicklookPanel>& panels, double lo, double hi) {
#if !CSST_HAVE_GDAL
  (void)path, (void)title, (void)panels, (void)lo, (void)hi;
  return false;
#else
  if (panels.empty()) return false;
  if (!(lo < hi)) {
    lo = 1e300, hi = -1e300;
    for (const auto& p : panels)
      for (double v : p.values)
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!(lo < hi)) hi = lo + 1e-6;
  }
  const int scale = std::max(1, 256 / std::max(panels[0].width, panels[0].height));
  const int pw = panels[0].width * scale, ph = panels[0].height * scale;
  const int margin = 12, top = 30, bar_h = 14, bottom = 44;
  const int w = margin + static_cast<int>(panels.size()) * (pw + margin);
  const int h = top + ph + bottom;
  std::vector<uint8_t> rgb(static_cast<size_t>(3) * w * h, 255);
  const Canvas canvas{rgb, w, h};
  Text(canvas, margin, 8, title, 2);
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto& P = panels[p];
    const int x0 = margin + static_cast<int>(p) * (pw + margin);
    for (int y = 0; y < ph; ++y)
      for (int x = 0; x < pw; ++x) {
        const double v = P.values[static_cast<size_t>(y / scale) * P.width + x / scale];
        uint8_t c[3] = {200, 200, 200};
        if (std::isfinite(v)) Colour((v - lo) / (hi - lo), c);
        for (int k = 0; k < 3; ++k) rgb[(static_cast<size_t>(k) * h + top + y) * w + x0 + x] = c[k];
      }
    Text(canvas, x0, top + ph + 4, P.title);
  }
  // Colour bar with its range.
  const int by = top + ph + 16, bx0 = margin, bx1 = w - margin;
  for (int x = bx0; x < bx1; ++x) {
    uint8_t c[3];
    Colour(static_cast<double>(x - bx0) / (bx1 - bx0 - 1), c);
    for (int y = by; y < by + bar_h; ++y)
      for (int k = 0; k < 3; ++k) rgb[(static_cast<size_t>(k) * h + y) * w + x] = c[k];
  }
  Text(canvas, bx0, by + bar_h + 3, Num(lo));
  const std::string his = Num(hi);
  Text(canvas, bx1 - 6 * static_cast<int>(his.size()), by + bar_h + 3, his);
  CPLSetConfigOption("GDAL_PAM_ENABLED", "NO");  // no .aux.xml sidecars
  GDALAllRegister();
  GDALDriverH mem = GDALGetDriverByName("MEM");
  GDALDriverH png = GDALGetDriverByName("PNG");
  if (!mem || !png) throw IoError(path + ": GDAL has no MEM or PNG driver");
  GDALDatasetH ds = GDALCreate(mem, "", w, h, 3, GDT_Byte, nullptr);
  for (int k = 0; k < 3; ++k) {
    GDALRasterBandH band = GDALGetRasterBand(ds, k + 1);
    if (GDALRasterIO(band, GF_Write, 0, 0, w, h, &rgb[static_cast<size_t>(k) * w * h], w, h,
                     GDT_Byte, 0, 0) != CE_None) {
      GDALClose(ds);
      throw IoError(path + ": GDAL raster write failed");
    }
  }
  GDALDatasetH out = GDALCreateCopy(png, path.c_str(), ds, FALSE, nullptr, nullptr, nullptr);
  GDALClose(ds);
  if (!out) throw IoError(path + ": GDAL could not write the PNG");
  GDALClose(out);
  return true;
#endif
}

}  // namespace csst
