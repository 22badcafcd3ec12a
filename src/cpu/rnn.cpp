// The CPU twin of the recurrent kernels: the embedding lookup and its scatter-add, one LSTM layer forward
// and backward, the sum of squares of gradient clipping (contracts: src/kernels.inc).
//
// LSTM forward. The input part of the gates of the whole sequence is one product [T*B, I] x [I, 4H]
// (cpu::gemm, split across threads). Then, inside one parallel region for the whole sequence, each thread
// owns a band of hidden units [j0, j1) and, per step, computes the recurrent product for the four gate
// columns of its units (h_{t-1} w_hh[q H + j0 .. q H + j1)^T, q = i, f, g, o), then the gates, c and h of
// those units. No other thread touches them, so one barrier per step (h_t complete before step t+1 reads
// it) is all the synchronisation. Backward mirrors it: per step each thread turns dh, dc of its units into
// the four gate gradients dA_t of its units; a barrier; then it computes its columns of dh_{t-1} = dA_t w_hh,
// which are the only ones its next step reads. After the loop three large products give gx, gw_ih, gw_hh.
//
// The gate pass of a row: f32 at the AVX2 and AVX-512 levels, the level's kernels (isa::Math::lstm_cell and its
// backward, vectorised exp-based sigmoid and tanh); else Eigen's vectorised logistic and tanh (for f32: rational
// approximations within a few ulp; for f64: exp-based and std::tanh).
#include <omp.h>

#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../internal.hpp"
#include "cpu.hpp"
#include "parallel.hpp"
#include "sgemm.hpp"

namespace tapegrad::cpu {

namespace {


template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Stride = Eigen::OuterStride<>;
template <class T>
using Arr = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <class T>
using CArr = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// A tensor of shape s over t's storage from element `offset` on (no copy, no history).
Tensor at_offset(const Tensor& t, int64_t offset, const Shape& s) {
  Tensor v = alias(t, s);
  v.impl().offset += offset;
  return v;
}

// c[B, n] (row stride ldc) += a[B, k] (row stride lda) w[n, k]^T (row stride ldw): one thread's slice of a
// step's recurrent product.
template <class T>
void gemm_nt_acc(int64_t B, int64_t n, int64_t k, const T* a, int64_t lda, const T* w, int64_t ldw, T* c,
                 int64_t ldc) {
  Eigen::Map<const MatR<T>, 0, Stride> A(a, B, k, Stride(lda)), W(w, n, k, Stride(ldw));
  Eigen::Map<MatR<T>, 0, Stride> C(c, B, n, Stride(ldc));
  C.noalias() += A * W.transpose();
}
// c[B, n] (row stride ldc) = a[B, k] (row stride lda) w[k, n] (row stride ldw).
template <class T>
void gemm_nn(int64_t B, int64_t n, int64_t k, const T* a, int64_t lda, const T* w, int64_t ldw, T* c, int64_t ldc) {
  Eigen::Map<const MatR<T>, 0, Stride> A(a, B, k, Stride(lda)), W(w, k, n, Stride(ldw));
  Eigen::Map<MatR<T>, 0, Stride> C(c, B, n, Stride(ldc));
  C.noalias() = A * W;
}

// The band of hidden units of thread t among nt: multiples of 16 units (whole cache lines of f32), the last
// band taking the rest.
void unit_band(int64_t H, int nt, int t, int64_t& j0, int64_t& j1) {
  const int64_t per = ((H + nt - 1) / nt + 15) / 16 * 16;
  j0 = std::min(H, t * per);
  j1 = std::min(H, j0 + per);
}

// Threads for a recurrence whose steps each move `work` multiply-adds: one below a size where the per-step
// barrier costs more than it saves.
int recurrence_threads(int64_t work) { return work < 64 * 64 * 64 ? 1 : omp_get_max_threads(); }

}  // namespace

// ---- embedding -------------------------------------------------------------------------------

void embedding_forward(const Tensor& weight, const Tensor& indices, Tensor& y) {
  const int64_t V = weight.size(0), E = weight.size(1), N = indices.numel();
  const int64_t* idx = ptr<int64_t>(indices);
  for (int64_t n = 0; n < N; ++n)
    TG_CHECK(idx[n] >= 0 && idx[n] < V, "embedding: index ", idx[n], " at position ", n, " is out of range [0, ", V,
             ") for weight ", weight.shape());
  const size_t row = static_cast<size_t>(E) * size_of(weight.dtype());
  const char* w = static_cast<const char*>(weight.raw_data());
  char* out = static_cast<char*>(y.raw_data());
  parallel_for(N, [&](int64_t b, int64_t e) {
    for (int64_t n = b; n < e; ++n) std::memcpy(out + n * row, w + idx[n] * row, row);
  }, std::max<int64_t>(1, kGrain / std::max<int64_t>(E, 1)));
}

// Each thread owns a band of columns of gweight and adds every gy row's part in token order: the sums do
// not depend on the thread count.
void embedding_backward(const Tensor& gy, const Tensor& indices, Tensor& gweight) {
  dispatch_float(gy.dtype(), "embedding_backward", [&]<class T>() {
    const int64_t E = gweight.size(1), N = indices.numel();
    const int64_t* idx = ptr<int64_t>(indices);
    const T* g = ptr<T>(gy);
    T* gw = ptr<T>(gweight);
    parallel_for(gweight.numel(), [&](int64_t b, int64_t e) { std::fill(gw + b, gw + e, T(0)); });
    parallel_for(E, [&](int64_t c0, int64_t c1) {
      for (int64_t n = 0; n < N; ++n) {
        T* dst = gw + idx[n] * E;
        const T* src = g + n * E;
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
      }
    }, N * E >= kGrain ? 16 : E + 1);
  });
}

// ---- LSTM ------------------------------------------------------------------------------------

void lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, Tensor& y, Tensor& hT,
                  Tensor& cT, Tensor& reserve) {
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2), H = w.w_hh.size(1), G4 = 4 * H;
  reserve = make_tensor({T_ * B * 5 * H}, x.dtype(), x.device());
  // a [T*B, 4H] = x w_ih^T + (b_ih + b_hh): the whole sequence's input part in one product.
  Tensor gates = at_offset(reserve, 0, {T_ * B, G4}), bias;
  if (w.b_ih.defined()) {
    bias = make_tensor({G4}, x.dtype(), x.device());
    cpu::binary(Binary::Add, w.b_ih, w.b_hh, bias);
  }
  cpu::linear_forward(alias(x, {T_ * B, I}), w.w_ih, bias, gates);
  dispatch_float(x.dtype(), "lstm_forward", [&]<class T>() {
    T* A = ptr<T>(gates);
    T* C = A + T_ * B * G4;  // cell states [T, B, H]
    T* Y = ptr<T>(y);
    const T* Whh = ptr<T>(w.w_hh);
    const T* H0 = ptr<T>(h0);
    const T* C0 = ptr<T>(c0);
    const int nt = recurrence_threads(B * G4 * H);
#pragma omp parallel num_threads(nt)
    {
      int64_t j0, j1;
      unit_band(H, omp_get_num_threads(), omp_get_thread_num(), j0, j1);
      const int64_t n = j1 - j0;
      // f32 with a micro-kernel (sgemm::available()): this thread's four bands of w_hh^T packed once for the
      // whole sequence.
      constexpr bool fast = std::is_same_v<T, float>;
      thread_local sgemm::PackedB packed[4];  // kept between calls: no allocation per sequence
      if constexpr (fast)
        if (sgemm::available() && n > 0)
          for (int64_t q = 0; q < 4; ++q) sgemm::pack(true, H, n, Whh + (q * H + j0) * H, H, packed[q]);
      for (int64_t t = 0; t < T_; ++t) {
        T* At = A + t * B * G4;
        const T* hprev = t > 0 ? Y + (t - 1) * B * H : H0;
        if (n > 0 && hprev != nullptr)
          for (int64_t q = 0; q < 4; ++q) {  // a[:, q H + j0 .. q H + j1) += h_{t-1} w_hh[q H + j0 .., :]^T
            if constexpr (fast)
              if (sgemm::available()) {
                sgemm::gemm(false, B, hprev, H, packed[q], 1.0f, 1.0f, At + q * H + j0, G4);
                continue;
              }
            gemm_nt_acc<T>(B, n, H, hprev, H, Whh + (q * H + j0) * H, H, At + q * H + j0, G4);
          }
        for (int64_t b = 0; n > 0 && b < B; ++b) {
          T* a = At + b * G4;
          const T* cp = t > 0 ? C + ((t - 1) * B + b) * H + j0 : C0 ? C0 + b * H + j0 : nullptr;
          if constexpr (fast)
            if (isa::math().lstm_cell) {  // f32 at the AVX2 and AVX-512 levels
              isa::math().lstm_cell(a + j0, H, cp, C + (t * B + b) * H + j0, Y + (t * B + b) * H + j0, n);
              continue;
            }
          Arr<T> gi(a + j0, n), gf(a + H + j0, n), gg(a + 2 * H + j0, n), go(a + 3 * H + j0, n);
          gi = gi.logistic();
          gf = gf.logistic();
          gg = gg.tanh();
          go = go.logistic();
          Arr<T> c(C + (t * B + b) * H + j0, n), h(Y + (t * B + b) * H + j0, n);
          if (cp) c = gf * CArr<T>(cp, n) + gi * gg;
          else c = gi * gg;
          h = go * c.tanh();
        }
#pragma omp barrier
      }
    }
    std::memcpy(ptr<T>(hT), Y + (T_ - 1) * B * H, sizeof(T) * B * H);
    std::memcpy(ptr<T>(cT), C + (T_ - 1) * B * H, sizeof(T) * B * H);
  });
}

void lstm_backward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, const Tensor& y,
                   const Tensor& reserve, const Tensor& gy, const Tensor& ghT, const Tensor& gcT, Tensor& gx,
                   Tensor& gh0, Tensor& gc0, LstmWeights& gw) {
  const int64_t T_ = x.size(0), B = x.size(1), I = x.size(2), H = w.w_hh.size(1), G4 = 4 * H;
  Tensor dgates = make_tensor({T_ * B, G4}, x.dtype(), x.device());  // dA [T, B, 4H]
  dispatch_float(x.dtype(), "lstm_backward", [&]<class T>() {
    const T* A = ptr<T>(reserve);
    const T* C = A + T_ * B * G4;
    const T* GY = ptr<T>(gy);
    const T* Whh = ptr<T>(w.w_hh);
    const T* C0 = ptr<T>(c0);
    T* dA = ptr<T>(dgates);
    // dh and dc flowing from step t+1 into step t, [B, H] each; start from the final state's gradients.
    std::vector<T> dh(static_cast<size_t>(B * H), T(0)), dc(static_cast<size_t>(B * H), T(0));
    if (ghT.defined()) std::memcpy(dh.data(), ptr<T>(ghT), sizeof(T) * B * H);
    if (gcT.defined()) std::memcpy(dc.data(), ptr<T>(gcT), sizeof(T) * B * H);
    T* gH0 = ptr<T>(gh0);
    const int nt = recurrence_threads(B * G4 * H);
#pragma omp parallel num_threads(nt)
    {
      int64_t j0, j1;
      unit_band(H, omp_get_num_threads(), omp_get_thread_num(), j0, j1);
      const int64_t n = j1 - j0;
      for (int64_t t = T_ - 1; t >= 0; --t) {
        for (int64_t b = 0; n > 0 && b < B; ++b) {
          const int64_t r = t * B + b;
          const T* a = A + r * G4;
          const T* cp = t > 0 ? C + (r - B) * H + j0 : C0 ? C0 + b * H + j0 : nullptr;
          T* d = dA + r * G4;
          if constexpr (std::is_same_v<T, float>)
            if (isa::math().lstm_cell_backward) {  // f32 at the AVX2 and AVX-512 levels
              isa::math().lstm_cell_backward(a + j0, H, C + r * H + j0, cp, GY + r * H + j0, dh.data() + b * H + j0,
                                             dc.data() + b * H + j0, d + j0, n);
              continue;
            }
          CArr<T> gi(a + j0, n), gf(a + H + j0, n), gg(a + 2 * H + j0, n), go(a + 3 * H + j0, n);
          CArr<T> c(C + r * H + j0, n), gyr(GY + r * H + j0, n);
          Arr<T> dhr(dh.data() + b * H + j0, n), dcr(dc.data() + b * H + j0, n);
          Arr<T> di(d + j0, n), df(d + H + j0, n), dg(d + 2 * H + j0, n), dout(d + 3 * H + j0, n);
          const auto tc = c.tanh().eval();
          dhr += gyr;                                          // dh_t = gy_t + (dA_{t+1} w_hh)
          dcr += dhr * go * (T(1) - tc * tc);                  // dc_t = dc from t+1 + dh o (1 - tanh^2 c)
          dout = dhr * tc * go * (T(1) - go);                  // d a_o = dh tanh(c) o (1 - o)
          di = dcr * gg * gi * (T(1) - gi);                    // d a_i = dc g i (1 - i)
          dg = dcr * gi * (T(1) - gg * gg);                    // d a_g = dc i (1 - g^2)
          if (cp) df = dcr * CArr<T>(cp, n) * gf * (T(1) - gf);  // d a_f = dc c_{t-1} f (1 - f)
          else df.setZero();
          dcr *= gf;                                           // dc_{t-1} = dc f
        }
#pragma omp barrier
        // dh_{t-1}[:, j0:j1) = dA_t w_hh[:, j0:j1): the columns this thread's next step reads.
        T* out = t > 0 ? dh.data() : gH0;
        if (n > 0 && out != nullptr) {
          if constexpr (std::is_same_v<T, float>)
            if (sgemm::available()) {
              sgemm::gemm(false, false, B, n, G4, 1.0f, dA + t * B * G4, G4, Whh + j0, H, 0.0f, out + j0, H);
              continue;
            }
          gemm_nn<T>(B, n, G4, dA + t * B * G4, G4, Whh + j0, H, out + j0, H);
        }
      }
    }
    if (gc0.defined()) std::memcpy(ptr<T>(gc0), dc.data(), sizeof(T) * B * H);
  });
  // The whole sequence at once: gx = dA w_ih, gw_ih = dA^T x, gw_hh = dA_{1..}^T h_{0..T-2} + dA_0^T h0,
  // gbias = the column sums of dA.
  if (gx.defined()) gemm(false, false, 1, T_ * B, I, G4, 1.0, dgates, 0, w.w_ih, 0, 0.0, gx);
  if (gw.w_ih.defined()) gemm(true, false, 1, G4, I, T_ * B, 1.0, dgates, 0, x, 0, 0.0, gw.w_ih);
  if (gw.w_hh.defined()) {
    if (T_ > 1)
      gemm(true, false, 1, G4, H, (T_ - 1) * B, 1.0, at_offset(dgates, B * G4, {(T_ - 1) * B, G4}), 0, y, 0, 0.0,
           gw.w_hh);
    else
      fill(gw.w_hh, 0.0);
    if (h0.defined()) gemm(true, false, 1, G4, H, B, 1.0, dgates, 0, h0, 0, 1.0, gw.w_hh);
  }
  for (Tensor* gb : {&gw.b_ih, &gw.b_hh})
    if (gb->defined()) sum_rows(dgates, *gb);
}

// ---- gradient clipping -----------------------------------------------------------------------

// Fixed blocks per thread, combined in thread order: the same threads give the same sum. Within a block,
// chunks of 4096 elements are summed in T by Eigen (vectorised) and the chunk sums accumulated in f64.
void sum_squares(const Tensor& x, Tensor& out) {
  dispatch_float(x.dtype(), "sum_squares", [&]<class T>() {
    const T* p = ptr<T>(x);
    const int64_t n = x.numel();
    std::vector<double> part(static_cast<size_t>(omp_get_max_threads()), 0.0);
    parallel_for(n, [&](int64_t b, int64_t e) {
      double acc = 0;
      for (int64_t i = b; i < e; i += 4096)
        acc += static_cast<double>(CArr<T>(p + i, std::min<int64_t>(4096, e - i)).square().sum());
      part[static_cast<size_t>(omp_in_parallel() ? omp_get_thread_num() : 0)] = acc;
    });
    double total = 0;
    for (double v : part) total += v;
    *ptr<double>(out) = total;
  });
}

}  // namespace tapegrad::cpu
