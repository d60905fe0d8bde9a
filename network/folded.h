// The UaRA-net ensemble for CPU inference, folded at load (internal to network/).
//
// LibTorch runs the network as ~150 separate kernels per member, each a pass over memory, and its
// oneDNN convolutions reach 2-27 GMAC/s on the net's 4-16 channel rows (measured in
// tools/uara_python.py's profile: 48% of the time in convolution, 30% in element-wise passes and
// BatchNorm). FoldedEnsemble computes the same function with
//   * each BatchNorm that follows a convolution folded into that convolution's weights and bias
//     (bn2 into c1, bn3 into c2, bn4 into c3); bn1 and bn_out become one per-channel affine map;
//   * the shrinkage sign(M) max(|M| - sigmoid(a) |M|, 0) written as M sigmoid(-a), exact because
//     0 < sigmoid(a) < 1 (the negation folded into a3's weights);
//   * a whole sub-unit (convolutions, activations, attention, shortcut) run for one spectrum on
//   rows
//     that stay in the core's L1/L2 cache, the k = 3 convolutions as register-blocked loops over
//     the row (compiled for AVX2/FMA where the CPU has them, chosen at run time), stride 2 on
//     de-interleaved rows;
//   * the fully connected layers as register-blocked products over a tile of spectra (the weights
//     stored transposed at load, so nothing is packed per call);
//   * tiles of spectra spread over TBB threads.
// Outputs agree with the LibTorch forward pass to float rounding (tests/network/folded_test.cpp).
#pragma once

#include <tbb/task_arena.h>

#include <array>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "network/model.h"

namespace csst::net {

class FoldedEnsemble {
 public:
  // Copies (and folds) the weights of an ensemble; the ensemble itself is not used afterwards.
  explicit FoldedEnsemble(Ensemble& model);

  int members() const { return static_cast<int>(members_.size()); }

  // n spectra (row-major n x 2238 flux and err) -> ensemble mean mu and total relative sigma
  // (before calibration), n x 574 each, as EnsemblePredict computes them. `threads` TBB threads (0
  // = all).
  void Predict(const float* flux, const float* err, size_t n, int threads, float* mu,
               float* sigma) const;

  // One member's mu and sigma (n x 574), for tests.
  void PredictMember(int member, const float* flux, const float* err, size_t n, float* mu,
                     float* sigma) const;

  struct Conv {  // k = 3, padding 1: weight [out][in][3], bias [out]
    int in = 0, out = 0, stride = 1;
    std::vector<float> w, b;
  };
  struct Unit {
    int in = 0, out = 0, stride = 1;
    std::vector<float> s1, b1;  // bn1 as x s1 + b1 per input channel
    Conv c[4], a[3];            // c1..c4 (bn2..bn4 folded into c1..c3), a1, a2, -a3
  };
  struct Dense {  // y = x W^T + b
    int in = 0, out = 0;
    std::vector<float> wt, b;  // W^T [in][out] and b, each with 8 floats of slack
  };
  struct Member {
    Conv stem;
    std::array<Unit, 6> units;
    std::vector<float> s_out, b_out;  // bn_out
    Dense fc[4], u[3];
    // PCA output basis (model.h): mu = exp(basis(fc4(.))), basis: K -> 574 with the components as
    // weights and the mean as bias; out == 0 when the member has 574 output pixels.
    Dense basis;
  };

 private:
  // Tile of m spectra starting at row `first`: per-member mu and sigma into mu_k / sig_k (m x 574).
  void Tile(const Member& mb, const float* flux, const float* err, size_t m, float* mu_k,
            float* sig_k) const;

  std::vector<Member> members_;
  // One TBB arena per thread count asked for, made on first use and kept (a new arena per call
  // costs its workers' start-up on every batch).
  tbb::task_arena& Arena(int threads) const;
  mutable std::mutex arena_mutex_;
  mutable std::map<int, std::unique_ptr<tbb::task_arena>> arenas_;
};

}  // namespace csst::net
