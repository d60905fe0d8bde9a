#include "network/folded.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace csst::net {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The convolution loops are compiled twice, for x86-64 with AVX2 and FMA and for the baseline, and
// the loader picks the clone the CPU supports (GCC function multi-versioning).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define CSST_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define CSST_CLONES
#endif

// Eight floats; GCC lowers operations on it to one AVX register or two SSE registers. Every
// function taking or returning one is inlined into a clone, so the ABI note GCC gives for such
// signatures in the portable build (-Wpsabi) does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float V8 __attribute__((vector_size(32)));
__attribute__((always_inline)) inline V8 Load(const float* p) {
  V8 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

// Four output channels at LB x 8 positions from l: accumulators stay in registers while each input
// value is loaded once per block. `valid` < 8 stores only the first lanes of the last vector (the
// loads may read up to 7 floats past a row: the scratch rows have slack).
template <int CIN, bool RELU, int LB>
__attribute__((always_inline)) inline void Block4(const float* t0, const float* t1, const float* t2,
                                                  int cs, int l, const float* w, const float* b,
                                                  float* y, int ys, int valid) {
  V8 acc[4][LB];
  for (int o = 0; o < 4; ++o)
    for (int j = 0; j < LB; ++j) acc[o][j] = V8{} + b[o];
#pragma GCC unroll 16
  for (int c = 0; c < CIN; ++c) {
    V8 x[3][LB];
    for (int j = 0; j < LB; ++j) {
      x[0][j] = Load(t0 + c * cs + l + 8 * j);
      x[1][j] = Load(t1 + c * cs + l + 8 * j);
      x[2][j] = Load(t2 + c * cs + l + 8 * j);
    }
    for (int o = 0; o < 4; ++o)
      for (int k = 0; k < 3; ++k) {
        const float wk = w[(o * CIN + c) * 3 + k];
        for (int j = 0; j < LB; ++j) acc[o][j] += wk * x[k][j];
      }
  }
  for (int o = 0; o < 4; ++o)
    for (int j = 0; j < LB; ++j) {
      V8 v = acc[o][j];
      if (RELU) v = v > V8{} ? v : V8{};
      float* dst = y + o * ys + l + 8 * j;
      if (valid == 8) {
        __builtin_memcpy(dst, &v, sizeof v);
      } else {
        for (int i = 0; i < valid; ++i) dst[i] = v[i];
      }
    }
}

// y[o][l] = b[o] + sum_c (w[o][c][0] t0[c][l] + w[o][c][1] t1[c][l] + w[o][c][2] t2[c][l]), l <
// len, channel c of tap k at tk + c * cs; optionally ReLU. Output channel o at y + o * ys, whose
// neighbours y[o][-1] and y[o][len] are set to 0 (the next convolution's padding). Stride 1: tk = x
// + k - 1 on a padded row; stride 2: t0 = even[l], t1 = odd[l], t2 = even[l + 1].
template <int CIN, int COUT, bool RELU>
CSST_CLONES void Conv3(const float* t0, const float* t1, const float* t2, int cs, int len,
                       const float* w, const float* b, float* y, int ys) {
  static_assert(COUT % 4 == 0, "output channels in blocks of 4");
  for (int o0 = 0; o0 < COUT; o0 += 4) {
    const float* wb = w + o0 * CIN * 3;
    float* yb = y + o0 * ys;
    int l = 0;
    for (; l + 16 <= len; l += 16) Block4<CIN, RELU, 2>(t0, t1, t2, cs, l, wb, b + o0, yb, ys, 8);
    for (; l < len; l += 8)
      Block4<CIN, RELU, 1>(t0, t1, t2, cs, l, wb, b + o0, yb, ys, std::min(8, len - l));
    for (int o = 0; o < 4; ++o) yb[o * ys - 1] = yb[o * ys + len] = 0.0f;
  }
}

typedef int V8i __attribute__((vector_size(32)));

// exp on eight floats: Cephes' expf (as Eigen's pexp): x = n ln2 + r, |r| <= ln2 / 2, a degree-6
// polynomial for e^r, 2^n from the exponent bits; relative error ~1e-7. Written on V8 so that the
// AVX2 clone gets it (Eigen's own is chosen at compile time, SSE2 in a portable build).
__attribute__((always_inline)) inline V8 Exp8(V8 x) {
  x = x < 88.3762626647949f ? x : V8{} + 88.3762626647949f;
  x = x > -87.3365447504f ? x : V8{} - 87.3365447504f;  // e^x stays a normal float
  const V8 t = x * 1.44269504088896341f + 0.5f;
  V8 fx = __builtin_convertvector(__builtin_convertvector(t, V8i), V8);
  fx = fx > t ? fx - 1.0f : fx;  // floor
  const V8 r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
  V8 y = V8{} + 1.9875691500e-4f;
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * (r * r) + r + 1.0f;
  const V8i bits = (__builtin_convertvector(fx, V8i) + 127) << 23;
  V8 scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return y * scale;
}

// out = m sigmoid(q) = m / (1 + e^-q) over n values.
CSST_CLONES void GateInto(const float* m, const float* q, float* out, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 v = Load(m + i) / (Exp8(-Load(q + i)) + 1.0f);
    __builtin_memcpy(out + i, &v, sizeof v);
  }
  for (; i < n; ++i) out[i] = m[i] / (std::exp(-q[i]) + 1.0f);
}

// y = max(x s + b, 0) over n values.
CSST_CLONES void AffineRelu(const float* x, float s, float b, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = std::max(x[i] * s + b, 0.0f);
}

CSST_CLONES void AbsInto(const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] = std::abs(x[i]);
}

CSST_CLONES void AddInto(const float* x, float* y, int n) {
  for (int i = 0; i < n; ++i) y[i] += x[i];
}

// mean of max(x s + b, 0) over n values.
CSST_CLONES float AffineReluMean(const float* x, float s, float b, int n) {
  V8 acc = V8{};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const V8 v = Load(x + i) * s + b;
    acc += v > V8{} ? v : V8{};
  }
  float sum = 0.0f;
  for (int k = 0; k < 8; ++k) sum += acc[k];
  for (; i < n; ++i) sum += std::max(x[i] * s + b, 0.0f);
  return sum / static_cast<float>(n);
}

// RB rows x LB * 8 outputs of y = x W^T + b, with W^T stored [in][out] (wt, row stride `out`):
// the accumulators stay in registers over the whole input; `valid` < 8 stores only the first lanes
// of the last vector (the weight loads may read 7 floats past a row: wt has slack).
template <int RB, int LB>
__attribute__((always_inline)) inline void DenseBlock(const float* x, int xs, int in,
                                                      const float* wt, int out, const float* b,
                                                      int o, float* y, int ys, int valid) {
  V8 acc[RB][LB];
  for (int j = 0; j < LB; ++j) {
    const V8 bj = Load(b + o + 8 * j);
    for (int r = 0; r < RB; ++r) acc[r][j] = bj;
  }
  for (int i = 0; i < in; ++i) {
    V8 w[LB];
    for (int j = 0; j < LB; ++j) w[j] = Load(wt + static_cast<size_t>(i) * out + o + 8 * j);
    for (int r = 0; r < RB; ++r) {
      const float xi = x[r * xs + i];
      for (int j = 0; j < LB; ++j) acc[r][j] += xi * w[j];
    }
  }
  for (int r = 0; r < RB; ++r)
    for (int j = 0; j < LB; ++j) {
      float* dst = y + r * ys + o + 8 * j;
      if (valid == 8) {
        __builtin_memcpy(dst, &acc[r][j], sizeof(V8));
      } else {
        for (int k = 0; k < valid; ++k) dst[k] = acc[r][j][k];
      }
    }
}

// y (m x out, row stride ys) = x (m x in, row stride xs) W^T + b; wt = W^T [in][out], b with slack.
CSST_CLONES void DenseInto(const float* x, int xs, int m, int in, const float* wt, const float* b,
                           int out, float* y, int ys) {
  int r = 0;
  for (; r + 4 <= m; r += 4) {
    int o = 0;
    for (; o + 16 <= out; o += 16)
      DenseBlock<4, 2>(x + r * xs, xs, in, wt, out, b, o, y + r * ys, ys, 8);
    for (; o < out; o += 8)
      DenseBlock<4, 1>(x + r * xs, xs, in, wt, out, b, o, y + r * ys, ys, std::min(8, out - o));
  }
  for (; r < m; ++r) {
    int o = 0;
    for (; o + 16 <= out; o += 16)
      DenseBlock<1, 2>(x + r * xs, xs, in, wt, out, b, o, y + r * ys, ys, 8);
    for (; o < out; o += 8)
      DenseBlock<1, 1>(x + r * xs, xs, in, wt, out, b, o, y + r * ys, ys, std::min(8, out - o));
  }
}

using ConvFn = void (*)(const float*, const float*, const float*, int, int, const float*,
                        const float*, float*, int);

template <bool RELU>
ConvFn PickConv(int in, int out) {
  if (in == 1 && out == 4) return Conv3<1, 4, RELU>;
  if (in == 4 && out == 4) return Conv3<4, 4, RELU>;
  if (in == 4 && out == 8) return Conv3<4, 8, RELU>;
  if (in == 8 && out == 8) return Conv3<8, 8, RELU>;
  if (in == 8 && out == 16) return Conv3<8, 16, RELU>;
  if (in == 16 && out == 16) return Conv3<16, 16, RELU>;
  throw std::logic_error("FoldedEnsemble: no kernel for " + std::to_string(in) + " -> " +
                         std::to_string(out) + " channels");
}

// Row layout: channel c of an activation of length len at base + c * (len + 2) + 1, zero at -1 and
// len.
int RowStride(int len) { return len + 2; }
// Output length of a k = 3, padding 1 convolution.
int OutLength(int len, int stride) { return (len - 1) / stride + 1; }

// A stride-2 convolution reads its input de-interleaved: even[j] = xp[2j], odd[j] = xp[2j + 1] of
// the padded row xp (xp[0] = 0, xp[i + 1] = x[i], xp[len + 1] = 0), j <= OutLength(len, 2).
struct Taps {
  const float *t0, *t1, *t2;
  int cs;
};

std::vector<float> Get(torch::nn::Module& m, const std::string& name) {
  torch::Tensor t;
  for (const auto& p : m.named_parameters(true))
    if (p.key() == name) t = p.value();
  for (const auto& p : m.named_buffers(true))
    if (p.key() == name) t = p.value();
  if (!t.defined()) throw std::logic_error("FoldedEnsemble: the network has no tensor " + name);
  t = t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  return std::vector<float>(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
}

// BatchNorm (eval) as y = x s + b.
void BnAffine(torch::nn::Module& m, const std::string& bn, std::vector<float>* s,
              std::vector<float>* b) {
  double eps = -1;
  for (const auto& sub : m.named_modules("", false))
    if (sub.key() == bn)
      if (auto* impl = dynamic_cast<torch::nn::BatchNorm1dImpl*>(sub.value().get()))
        eps = impl->options.eps();
  if (eps < 0) throw std::logic_error("FoldedEnsemble: the network has no BatchNorm " + bn);
  const auto g = Get(m, bn + ".weight"), be = Get(m, bn + ".bias"),
             mean = Get(m, bn + ".running_mean"), var = Get(m, bn + ".running_var");
  s->resize(g.size());
  b->resize(g.size());
  for (size_t c = 0; c < g.size(); ++c) {
    const double sc = g[c] / std::sqrt(static_cast<double>(var[c]) + eps);
    (*s)[c] = static_cast<float>(sc);
    (*b)[c] = static_cast<float>(be[c] - mean[c] * sc);
  }
}

FoldedEnsemble::Conv GetConv(torch::nn::Module& m, const std::string& name, int in, int out,
                             int stride) {
  FoldedEnsemble::Conv c;
  c.in = in;
  c.out = out;
  c.stride = stride;
  c.w = Get(m, name + ".weight");
  c.b = Get(m, name + ".bias");
  if (c.w.size() != static_cast<size_t>(in * out * 3) || c.b.size() != static_cast<size_t>(out))
    throw std::logic_error("FoldedEnsemble: unexpected shape of " + name);
  return c;
}

// conv followed by BatchNorm y = x s + b: w' = w s[o], b' = b s[o] + b_bn[o].
void FoldBn(FoldedEnsemble::Conv* c, const std::vector<float>& s, const std::vector<float>& b) {
  for (int o = 0; o < c->out; ++o) {
    for (int k = 0; k < c->in * 3; ++k) c->w[static_cast<size_t>(o * c->in * 3 + k)] *= s[o];
    c->b[o] = c->b[o] * s[o] + b[o];
  }
}

FoldedEnsemble::Dense GetDense(torch::nn::Module& m, const std::string& name, int in, int out) {
  FoldedEnsemble::Dense d;
  d.in = in;
  d.out = out;
  const auto w = Get(m, name + ".weight");
  d.b = Get(m, name + ".bias");
  if (w.size() != static_cast<size_t>(in) * out || d.b.size() != static_cast<size_t>(out))
    throw std::logic_error("FoldedEnsemble: unexpected shape of " + name);
  d.wt.assign(static_cast<size_t>(in) * out + 8, 0.0f);  // W^T [in][out], + slack for 8-float loads
  for (int o = 0; o < out; ++o)
    for (int i = 0; i < in; ++i)
      d.wt[static_cast<size_t>(i) * out + o] = w[static_cast<size_t>(o) * in + i];
  d.b.resize(static_cast<size_t>(out) + 8, 0.0f);
  return d;
}

// Y = X W^T + b (rows of X: spectra).
void Apply(const FoldedEnsemble::Dense& d, const RowMat& x, RowMat* y) {
  y->resize(x.rows(), d.out);
  DenseInto(x.data(), static_cast<int>(x.cols()), static_cast<int>(x.rows()), d.in, d.wt.data(),
            d.b.data(), d.out, y->data(), d.out);
}

void Relu(RowMat* m) { *m = m->cwiseMax(0.0f); }

// Per-thread rows for one spectrum: the largest activation is 4 x (1119 + 2) floats.
struct Scratch {
  static constexpr int kFloats = 4608;  // + slack for the 8-float loads past a row's end
  std::vector<float> buf[7];
  Scratch() {
    for (auto& b : buf) b.assign(kFloats, 0.0f);
  }
};

}  // namespace

FoldedEnsemble::FoldedEnsemble(Ensemble& model) {
  for (int k = 0; k < model->size(); ++k) {
    auto net = model->member(k);
    torch::nn::Module& m = *net;
    Member mb;
    mb.stem = GetConv(m, "stem", 1, 4, 2);
    for (int i = 0; i < 6; ++i) {
      const std::string u = "unit" + std::to_string(i) + ".";
      Unit& un = mb.units[i];
      un.in = static_cast<int>(kSubUnits[i].in);
      un.out = static_cast<int>(kSubUnits[i].out);
      un.stride = static_cast<int>(kSubUnits[i].stride);
      BnAffine(m, u + "bn1", &un.s1, &un.b1);
      un.c[0] = GetConv(m, u + "c1", un.in, un.out, un.stride);
      for (int j = 1; j < 4; ++j)
        un.c[j] = GetConv(m, u + "c" + std::to_string(j + 1), un.out, un.out, 1);
      for (int j = 0; j < 3; ++j) {
        std::vector<float> s, b;
        BnAffine(m, u + "bn" + std::to_string(j + 2), &s, &b);
        FoldBn(&un.c[j], s, b);
      }
      for (int j = 0; j < 3; ++j)
        un.a[j] = GetConv(m, u + "a" + std::to_string(j + 1), un.out, un.out, 1);
      for (auto& v : un.a[2].w) v = -v;  // 1 - sigmoid(a) = sigmoid(-a)
      for (auto& v : un.a[2].b) v = -v;
    }
    BnAffine(m, "bn_out", &mb.s_out, &mb.b_out);
    const int pca = static_cast<int>(net->pca_components());
    for (int j = 0; j < 4; ++j) {
      const int out = j == 3 && pca > 0 ? pca : static_cast<int>(kSedWidths[j + 1]);
      mb.fc[j] = GetDense(m, "fc" + std::to_string(j + 1), static_cast<int>(kSedWidths[j]), out);
    }
    if (pca > 0) {  // W^T = the components [K][574], b = the mean
      mb.basis.in = pca;
      mb.basis.out = static_cast<int>(kOutputPixels);
      mb.basis.wt = Get(m, "pca_basis");
      mb.basis.wt.resize(mb.basis.wt.size() + 8, 0.0f);
      mb.basis.b = Get(m, "pca_mean");
      mb.basis.b.resize(mb.basis.b.size() + 8, 0.0f);
    }
    mb.u[0] = GetDense(m, "u1", static_cast<int>(kInputPixels), 16);
    mb.u[1] = GetDense(m, "u2", 32, 64);
    mb.u[2] = GetDense(m, "u3", 64, static_cast<int>(kOutputPixels));
    members_.push_back(std::move(mb));
  }
}

void FoldedEnsemble::Tile(const Member& mb, const float* flux, const float* err, size_t m,
                          float* mu_k, float* sig_k) const {
  thread_local Scratch s;
  float *even = s.buf[0].data(), *odd = s.buf[1].data(), *x = s.buf[2].data(), *p = s.buf[3].data(),
        *q = s.buf[4].data(), *mm = s.buf[5].data(), *nx = s.buf[6].data();
  RowMat z(static_cast<Eigen::Index>(m), 16);
  const int n_in = static_cast<int>(kInputPixels);
  for (size_t r = 0; r < m; ++r) {
    // Stem: 1 -> 4 channels, stride 2, on the de-interleaved input.
    const float* f = flux + r * kInputPixels;
    int len = OutLength(n_in, 2);
    even[0] = 0.0f;
    for (int j = 0; j < len; ++j) {
      odd[j] = f[2 * j];
      even[j + 1] = 2 * j + 1 < n_in ? f[2 * j + 1] : 0.0f;
    }
    PickConv<false>(1, 4)(even, odd, even + 1, 0, len, mb.stem.w.data(), mb.stem.b.data(), x + 1,
                          RowStride(len));
    for (const Unit& u : mb.units) {
      const int rs_in = RowStride(len), lout = OutLength(len, u.stride), rs = RowStride(lout);
      // relu(bn1(x)), padded (stride 1) or de-interleaved (stride 2).
      Taps taps;
      if (u.stride == 1) {
        for (int c = 0; c < u.in; ++c) {
          const float* xc = x + c * rs_in + 1;
          float* pc = p + c * rs_in + 1;
          AffineRelu(xc, u.s1[c], u.b1[c], pc, len);
          pc[-1] = pc[len] = 0.0f;
        }
        taps = {p, p + 1, p + 2, rs_in};
      } else {
        const int es = lout + 1;  // even row: lout + 1 values
        for (int c = 0; c < u.in; ++c) {
          const float* xc = x + c * rs_in + 1;
          float* ec = even + c * es;
          float* oc = odd + c * es;
          const float sc = u.s1[c], bc = u.b1[c];
          ec[0] = 0.0f;
          for (int j = 0; j < lout; ++j) {
            oc[j] = std::max(xc[2 * j] * sc + bc, 0.0f);
            ec[j + 1] = 2 * j + 1 < len ? std::max(xc[2 * j + 1] * sc + bc, 0.0f) : 0.0f;
          }
        }
        taps = {even, odd, even + 1, es};
      }
      // Four convolutions (BatchNorms folded), M in mm.
      PickConv<true>(u.in, u.out)(taps.t0, taps.t1, taps.t2, taps.cs, lout, u.c[0].w.data(),
                                  u.c[0].b.data(), q + 1, rs);
      PickConv<true>(u.out, u.out)(q, q + 1, q + 2, rs, lout, u.c[1].w.data(), u.c[1].b.data(),
                                   p + 1, rs);
      PickConv<true>(u.out, u.out)(p, p + 1, p + 2, rs, lout, u.c[2].w.data(), u.c[2].b.data(),
                                   q + 1, rs);
      PickConv<false>(u.out, u.out)(q, q + 1, q + 2, rs, lout, u.c[3].w.data(), u.c[3].b.data(),
                                    mm + 1, rs);
      // Attention on |M|.
      const int nm = u.out * rs;
      AbsInto(mm, p, nm);
      PickConv<true>(u.out, u.out)(p, p + 1, p + 2, rs, lout, u.a[0].w.data(), u.a[0].b.data(),
                                   q + 1, rs);
      PickConv<true>(u.out, u.out)(q, q + 1, q + 2, rs, lout, u.a[1].w.data(), u.a[1].b.data(),
                                   p + 1, rs);
      PickConv<false>(u.out, u.out)(p, p + 1, p + 2, rs, lout, u.a[2].w.data(), u.a[2].b.data(),
                                    q + 1, rs);
      // M sigmoid(-a) + shortcut (input subsampled by the stride, new channels zero).
      GateInto(mm, q, nx, nm);
      for (int c = 0; c < u.in; ++c) {
        const float* xc = x + c * rs_in + 1;
        float* oc = nx + c * rs + 1;
        if (u.stride == 1) {
          AddInto(xc, oc, lout);
        } else {
          for (int l = 0; l < lout; ++l) oc[l] += xc[u.stride * l];
        }
      }
      for (int c = 0; c < u.out; ++c) nx[c * rs] = nx[c * rs + lout + 1] = 0.0f;
      std::swap(x, nx);
      len = lout;
    }
    // relu(bn_out(h)), averaged over the row.
    for (int c = 0; c < 16; ++c) {
      z(static_cast<Eigen::Index>(r), c) =
          AffineReluMean(x + c * RowStride(len) + 1, mb.s_out[c], mb.b_out[c], len);
    }
  }
  // Fully connected layers over the tile.
  RowMat a, b;
  Apply(mb.fc[0], z, &a);
  Relu(&a);
  Apply(mb.fc[1], a, &b);
  Relu(&b);
  Apply(mb.fc[2], b, &a);
  Relu(&a);
  Apply(mb.fc[3], a, &b);
  if (mb.basis.out > 0) {
    Apply(mb.basis, b, &a);
    Eigen::Map<RowMat>(mu_k, static_cast<Eigen::Index>(m), kOutputPixels) =
        a.array().exp().matrix();
  } else {
    Eigen::Map<RowMat>(mu_k, static_cast<Eigen::Index>(m), kOutputPixels) = b;
  }
  RowMat uc(static_cast<Eigen::Index>(m), 32);
  a.resize(static_cast<Eigen::Index>(m), 16);
  DenseInto(err, static_cast<int>(kInputPixels), static_cast<int>(m), mb.u[0].in, mb.u[0].wt.data(),
            mb.u[0].b.data(), mb.u[0].out, a.data(), 16);
  uc.leftCols(16) = a.cwiseMax(0.0f);
  uc.rightCols(16) = z;
  Apply(mb.u[1], uc, &a);
  Relu(&a);
  Apply(mb.u[2], a, &b);
  // softplus (beta 1, threshold 20, as torch) + 1e-4.
  const auto v = b.array();
  Eigen::Map<RowMat>(sig_k, static_cast<Eigen::Index>(m), kOutputPixels) =
      ((v > 20.0f).select(v, v.exp().log1p()) + 1e-4f).matrix();
}

void FoldedEnsemble::PredictMember(int member, const float* flux, const float* err, size_t n,
                                   float* mu, float* sigma) const {
  Tile(members_.at(static_cast<size_t>(member)), flux, err, n, mu, sigma);
}

void FoldedEnsemble::Predict(const float* flux, const float* err, size_t n, int threads, float* mu,
                             float* sigma) const {
  constexpr size_t kTile = 8;  // spectra per task: batch 64 gives each of 2 threads 4 tiles
  const size_t no = kOutputPixels, ni = kInputPixels, tiles = (n + kTile - 1) / kTile;
  const int k_members = members();
  auto run = [&] {
    tbb::parallel_for(tbb::blocked_range<size_t>(0, tiles, 1),
                      [&](const tbb::blocked_range<size_t>& range) {
                        std::vector<float> mk(kTile * no * k_members), sk(mk.size());
                        for (size_t t = range.begin(); t != range.end(); ++t) {
                          const size_t a = t * kTile, m = std::min(n, a + kTile) - a;
                          for (int k = 0; k < k_members; ++k)
                            Tile(members_[static_cast<size_t>(k)], flux + a * ni, err + a * ni, m,
                                 &mk[k * kTile * no], &sk[k * kTile * no]);
                          // Ensemble mean and total variance, as EnsemblePredict.
                          for (size_t i = 0; i < m * no; ++i) {
                            float sum = 0.0f, var = 0.0f;
                            for (int k = 0; k < k_members; ++k) {
                              sum += mk[k * kTile * no + i];
                              var += sk[k * kTile * no + i] * sk[k * kTile * no + i];
                            }
                            const float mean = sum / static_cast<float>(k_members);
                            var /= static_cast<float>(k_members);
                            if (k_members > 1) {
                              const float d = std::max(std::abs(mean), 1e-6f);
                              float spread = 0.0f;
                              for (int k = 0; k < k_members; ++k) {
                                const float rel = (mk[k * kTile * no + i] - mean) / d;
                                spread += rel * rel;
                              }
                              var += spread / static_cast<float>(k_members);
                            }
                            mu[a * no + i] = mean;
                            sigma[a * no + i] = std::sqrt(var);
                          }
                        }
                      });
  };
  if (threads > 0) {
    Arena(threads).execute(run);
  } else {
    run();
  }
}

tbb::task_arena& FoldedEnsemble::Arena(int threads) const {
  const std::lock_guard<std::mutex> lock(arena_mutex_);
  auto& arena = arenas_[threads];
  if (!arena) arena = std::make_unique<tbb::task_arena>(threads);
  return *arena;
}

}  // namespace csst::net
