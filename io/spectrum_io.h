// Readers (and, for LAMOST, writers) of the spectrum formats users hold. All readers return
// vacuum wavelengths [A], per-A flux, 1-sigma errors (0 where the format has none) and mask bits,
// and throw IoError/FitsError naming the file and the problem for: missing/truncated files,
// missing HDU, column or keyword, wrong dimensions, non-monotonic wavelengths, NaN/Inf values and
// all-zero inverse variance.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "core/spectrum.h"
#include "io/fits.h"

namespace csst {

// ---- LAMOST low-resolution spectra ------------------------------------------------------------
// DR1-DR7: primary image 5 x N (rows flux, inverse variance, wavelength, andmask, ormask).
// DR8+: primary header plus binary table COADD with FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK
// (one row of N-vectors, or N rows).
enum class LamostLayout { kDr7, kDr8 };

struct LamostHeader {
  int64_t obsid = 0;
  std::string designation, object_class = "STAR", subclass;
  double ra = 0, dec = 0, z = 0, z_err = 0;
  std::array<double, 5> snr{};  // SNRU, SNRG, SNRR, SNRI, SNRZ
  std::array<double, 7> mag{};  // MAG1..MAG7
  bool vacuum = true;
};

struct LamostSpectrum {
  LamostHeader header;
  LamostLayout layout = LamostLayout::kDr7;
  Spectrum spectrum;  // err = 1/sqrt(ivar) (0 where ivar = 0); mask: kMaskBad where andmask != 0
                      // or ivar = 0 (ormask too if requested)
  std::vector<int32_t> andmask, ormask;
};

LamostSpectrum ReadLamost(const std::string& path, bool use_ormask = false);
// Identity of a spectrum's data (wavelengths, fluxes, errors; not its header, whose DATE changes
// between writes): 16 hex digits. Joins ingested stars to the truth of the sample that wrote them.
std::string SpectrumDataHash(const Spectrum& s);
// Writes either layout. The spectrum's wavelengths must be log-linear (COEFF0/COEFF1 are derived
// from the first two pixels); flux/ivar are written as float32 as LAMOST does.
void WriteLamost(const std::string& path, const LamostSpectrum& s, LamostLayout layout,
                 const Provenance& provenance);

// ---- empirical libraries and models ---------------------------------------------------------
struct LibrarySpectrum {
  Spectrum spectrum;
  std::string name;
  double teff = 0, logg = 0, feh = 0;  // NaN where the file does not give them
  double fwhm = 0;                     // A, instrumental resolution where known (0 = unknown)
};

// MILES v9.1: 1-D image, linear CRVAL1/CDELT1 (CRPIX1), air wavelengths (converted to vacuum),
// relative flux, FWHM 2.5 A. Parameters come from paramsMILES_v9.1.txt (ReadMilesParams).
LibrarySpectrum ReadMiles(const std::string& path);
struct MilesParams {
  std::string name;
  int miles_id = 0;
  double teff = 0, logg = 0, feh = 0;
};
std::vector<MilesParams> ReadMilesParams(const std::string& path);

// STELIB v3.2: 1-D float image, linear CRVAL1/CDELT1, absolute flux [erg/s/cm2/A], TEFF, LOG_G,
// FE_H in the header ('-' = unknown -> NaN); zero-padded ends are masked (kMaskNoCoverage); air
// wavelengths converted to vacuum.
LibrarySpectrum ReadStelib(const std::string& path);

// CALSPEC: binary table WAVELENGTH [A, vacuum],
// FLUX [erg/s/cm2/A], STATERROR, SYSERROR (errors added in quadrature).
LibrarySpectrum ReadCalspec(const std::string& path);
// NGSL (HST/STIS Next Generation Spectral Library, as distributed by MAST): binary table with
// WAVELENGTH [A, vacuum] and FLUX plus an error column (STAT_ERROR, STATERROR or ERROR).
LibrarySpectrum ReadNgsl(const std::string& path);
// BOSZ model spectra (Bohlin et al. 2017): FITS binary table with Wavelength and
// SpecificIntensity (surface flux, per A; the 2017 files name it so) or Flux columns, or a
// whitespace-separated ASCII file (optionally .gz not supported) of wavelength and flux columns.
// Model wavelengths are vacuum.
LibrarySpectrum ReadBosz(const std::string& path);

// Kurucz (1993) ATLAS9 models as distributed by STScI CDBS (grid/k93models, kpXX_<Teff>.fits):
// binary table with WAVELENGTH [A] and one flux column per log g (g00 .. g50, F_lambda); returns
// the column of `logg` between 1500 and 13000 A. Throws IoError naming the file and column.
LibrarySpectrum ReadKurucz93(const std::string& path, double logg);
// The R = 200 SED of a Kurucz model on the output grid, scaled at 5526-5586 A.
Spectrum Kurucz93Sed(const std::string& kp00_dir, double teff, double logg);

// Any supported format, detected from the file: LAMOST (OBSID keyword; either layout), MILES or
// STELIB (1-D image; STELIB when BUNIT is absolute flux or the name says so), CALSPEC / NGSL /
// BOSZ tables (by columns), BOSZ ASCII (other extensions). `z` is the redshift to remove (LAMOST
// Z keyword; 0 for libraries and models).
struct AnySpectrum {
  Spectrum spectrum;
  std::string format;  // lamost-dr7, lamost-dr8, miles, stelib, calspec, ngsl, bosz
  std::string name;
  int64_t id = 0;
  double z = 0;
  double teff = 0, logg = 0, feh = 0;  // NaN where unknown
};
AnySpectrum ReadAnySpectrum(const std::string& path);

}  // namespace csst
