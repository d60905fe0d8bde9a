// Exception hierarchy of csst-flatcube. Messages say what failed, where (file, key, row) and with
// which value. Throw or log, never both; `main` catches once.
#pragma once

#include <stdexcept>
#include <string>

namespace csst {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad configuration or command-line usage (exit code 2).
class ConfigError : public Error {
 public:
  using Error::Error;
};

// File-system or format problems outside FITS (exit code 1).
class IoError : public Error {
 public:
  using Error::Error;
};

// A CFITSIO call failed; carries CFITSIO's own error text.
class FitsError : public IoError {
 public:
  using IoError::IoError;
};

// The user interrupted the run (SIGINT); exit code 130.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled by user") {}
};

}  // namespace csst
