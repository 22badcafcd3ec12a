// Convolution and batch norm through cuDNN (contracts: src/kernels.inc). One handle on the backend's stream;
// descriptors are RAII; each convolution geometry keeps its descriptors and, per pass (forward, backward data,
// backward filter), the algorithm chosen the first time it ran: cuDNN's heuristics (cudnnGet*Algorithm_v7) by
// default, a timed search (cudnnFind*AlgorithmEx) with TG_CUDNN_FIND=1. The workspace comes from the caching
// allocator. f32 runs with FMA math (exact FP32) unless tapegrad::set_allow_tf32(true) (then cuDNN's default,
// TF32 tensor cores); f64 is exact. With tapegrad::set_deterministic(true) only CUDNN_DETERMINISTIC algorithms
// are chosen (backward data and filter have atomics-based ones). Pooling is in dnn_kernels.cu.
#include <climits>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "../internal.hpp"
#include "dnn.hpp"
#include "runtime.hpp"

namespace tapegrad::cuda {

cudnnHandle_t dnn_handle() {
  static cudnnHandle_t h = [] {
    require_device("cudnn");
    cudnnHandle_t c;
    TG_CUDNN_CHECK(cudnnCreate(&c));
    TG_CUDNN_CHECK(cudnnSetStream(c, stream()));
    return c;
  }();
  return h;
}

namespace {

cudnnDataType_t data_type(DType d) { return d == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT; }

// cuDNN's alpha and beta: host values of the compute type (double for f64 data, float otherwise).
struct Scale {
  float f;
  double d;
  const void* as(DType t) const { return t == DType::F64 ? static_cast<const void*>(&d) : &f; }
};
constexpr Scale kOne{1.0f, 1.0}, kZero{0.0f, 0.0};

int to_int(int64_t v, const char* op, const char* what) {
  TG_CHECK(v >= 0 && v <= INT_MAX, op, ": ", what, " = ", v, " does not fit cuDNN's int (at most ", INT_MAX, ")");
  return static_cast<int>(v);
}

// ---- RAII descriptors -------------------------------------------------------------------------------

// One cuDNN descriptor, created and destroyed with its owner; converts to the handle cuDNN's calls take.
template <typename H, cudnnStatus_t (*Create)(H*), cudnnStatus_t (*Destroy)(H)>
struct Descriptor {
  H d = nullptr;
  Descriptor() { TG_CUDNN_CHECK(Create(&d)); }
  ~Descriptor() { Destroy(d); }
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  operator H() const { return d; }
};

struct TensorDesc : Descriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor> {
  // A packed NCHW tensor.
  void set(const char* op, int64_t n, int64_t c, int64_t h, int64_t w, DType t) {
    TG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, data_type(t), to_int(n, op, "N"),
                                              to_int(c, op, "C"), to_int(h, op, "H"), to_int(w, op, "W")));
  }
};
using FilterDesc = Descriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    Descriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

// Device memory from the caching allocator for the duration of one call (the stream orders its reuse).
struct Workspace {
  void* p = nullptr;
  size_t bytes = 0;
  explicit Workspace(size_t n) : bytes(n) {
    if (n) p = allocate(n);
  }
  ~Workspace() {
    if (p) release(p, bytes);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
};

// ---- convolution: descriptors and algorithm choice, cached per geometry -----------------------------

enum class Pass { Forward, BackwardData, BackwardFilter };
const char* name(Pass p) {
  return p == Pass::Forward ? "conv2d_forward" : p == Pass::BackwardData ? "conv2d_backward_input" : "conv2d_backward_weight";
}

std::string describe(const Window2d& g, DType t) {
  return "x [" + std::to_string(g.N) + ", " + std::to_string(g.C) + ", " + std::to_string(g.H) + ", " +
         std::to_string(g.W) + "], w [" + std::to_string(g.K) + ", " + std::to_string(g.C) + ", " +
         std::to_string(g.R) + ", " + std::to_string(g.S) + "], stride " + std::to_string(g.stride_h) + "x" +
         std::to_string(g.stride_w) + ", padding " + std::to_string(g.pad_h) + "x" + std::to_string(g.pad_w) + ", " +
         tapegrad::name(t);
}

// TG_CUDNN_FIND=1: a timed search over every algorithm the first time a geometry runs (slower start, maybe
// faster steps); unset or 0: cuDNN's heuristics.
bool timed_search() {
  static const bool on = [] {
    const char* env = std::getenv("TG_CUDNN_FIND");
    const std::string v = env ? env : "";
    TG_CHECK(v.empty() || v == "0" || v == "1", "TG_CUDNN_FIND=", v, ": expected 0 (cuDNN's heuristics) or 1 (a timed ",
             "search per convolution geometry)");
    return v == "1";
  }();
  return on;
}

// The most workspace a timed search may give the algorithms it tries.
constexpr size_t kSearchWorkspace = size_t{1} << 30;

// What the heuristics or the search say of one algorithm.
struct Candidate {
  int algo;
  cudnnStatus_t status;
  cudnnDeterminism_t determinism;
  cudnnMathType_t math;
};
template <class Perf>
std::vector<Candidate> candidates(const Perf* p, int n) {
  std::vector<Candidate> out;
  for (int i = 0; i < n; ++i) out.push_back({static_cast<int>(p[i].algo), p[i].status, p[i].determinism, p[i].mathType});
  return out;
}

// The algorithm of one pass: how to run it.
struct Choice {
  int algo = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
  size_t workspace = 0;
};

// The memory of x, w and y of one call (each pass writes one of them: y, x or w).
struct Buffers {
  void *x, *w, *y;
};

// The descriptors of a geometry x [N,C,H,W], w [K,C,R,S], y [N,K,P,Q] (bias [1,K,1,1]) and its choices.
struct Conv {
  TensorDesc x, y, bias;
  FilterDesc w;
  ConvDesc conv;
  DType dtype;
  std::optional<Choice> choice[3];

  Conv(const Window2d& g, DType t) : dtype(t) {
    const char* op = "conv2d";
    x.set(op, g.N, g.C, g.H, g.W, t);
    y.set(op, g.N, g.K, g.P, g.Q, t);
    bias.set(op, 1, g.K, 1, 1, t);
    TG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(w, data_type(t), CUDNN_TENSOR_NCHW, to_int(g.K, op, "K"),
                                              to_int(g.C, op, "C"), to_int(g.R, op, "R"), to_int(g.S, op, "S")));
    TG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, to_int(g.pad_h, op, "pad"), to_int(g.pad_w, op, "pad"),
                                                   to_int(g.stride_h, op, "stride"), to_int(g.stride_w, op, "stride"),
                                                   1, 1, CUDNN_CROSS_CORRELATION, data_type(t)));
  }

  // The math an f32 call may use: exact FP32 (FMA) unless TF32 is allowed.
  cudnnMathType_t requested_math() const {
    return dtype == DType::F32 && !allow_tf32() ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  }

  // The workspace algo needs in pass p with the descriptor's current math type; nothing when cuDNN rejects it.
  std::optional<size_t> workspace(Pass p, int algo) const {
    size_t n = 0;
    cudnnStatus_t s = CUDNN_STATUS_SUCCESS;
    if (p == Pass::Forward)
      s = cudnnGetConvolutionForwardWorkspaceSize(dnn_handle(), x, w, conv, y, static_cast<cudnnConvolutionFwdAlgo_t>(algo), &n);
    else if (p == Pass::BackwardData)
      s = cudnnGetConvolutionBackwardDataWorkspaceSize(dnn_handle(), w, y, conv, x,
                                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &n);
    else
      s = cudnnGetConvolutionBackwardFilterWorkspaceSize(dnn_handle(), x, y, conv, w,
                                                         static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), &n);
    if (s != CUDNN_STATUS_SUCCESS) return std::nullopt;
    return n;
  }

  // cuDNN's ranking of the algorithms of pass p, best first.
  std::vector<Candidate> heuristics(Pass p) const {
    cudnnHandle_t h = dnn_handle();
    int n = 0;
    if (p == Pass::Forward) {
      cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      TG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, x, w, conv, y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, r));
      return candidates(r, n);
    }
    if (p == Pass::BackwardData) {
      cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      TG_CUDNN_CHECK(
          cudnnGetConvolutionBackwardDataAlgorithm_v7(h, w, y, conv, x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &n, r));
      return candidates(r, n);
    }
    cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    TG_CUDNN_CHECK(
        cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, x, y, conv, w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &n, r));
    return candidates(r, n);
  }

  // Every algorithm of pass p run once on the call's buffers (its output is overwritten afterwards), fastest
  // first, with a workspace as large as the hungriest one needs (at most kSearchWorkspace).
  std::vector<Candidate> search(Pass p, const Buffers& b) const {
    const int count = p == Pass::Forward        ? int{CUDNN_CONVOLUTION_FWD_ALGO_COUNT}
                      : p == Pass::BackwardData ? int{CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT}
                                                : int{CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT};
    size_t most = 0;
    for (int a = 0; a < count; ++a)
      if (auto n = workspace(p, a); n && *n <= kSearchWorkspace) most = std::max(most, *n);
    Workspace ws(most);
    cudnnHandle_t h = dnn_handle();
    int n = 0;
    if (p == Pass::Forward) {
      cudnnConvolutionFwdAlgoPerf_t r[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      TG_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, x, b.x, w, b.w, conv, y, b.y, count, &n, r, ws.p, most));
      return candidates(r, n);
    }
    if (p == Pass::BackwardData) {
      cudnnConvolutionBwdDataAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      TG_CUDNN_CHECK(
          cudnnFindConvolutionBackwardDataAlgorithmEx(h, w, b.w, y, b.y, conv, x, b.x, count, &n, r, ws.p, most));
      return candidates(r, n);
    }
    cudnnConvolutionBwdFilterAlgoPerf_t r[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
    TG_CUDNN_CHECK(
        cudnnFindConvolutionBackwardFilterAlgorithmEx(h, x, b.x, y, b.y, conv, w, b.w, count, &n, r, ws.p, most));
    return candidates(r, n);
  }

  // The first candidate that cuDNN supports here, is deterministic when that is asked, and accepts the math
  // type (exact FP32 unless TF32 is allowed).
  Choice choose(Pass p, const Window2d& g, const Buffers& b) {
    const cudnnMathType_t want = requested_math();
    TG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, want));
    const bool det = deterministic();
    for (const Candidate& c : timed_search() ? search(p, b) : heuristics(p)) {
      if (c.status != CUDNN_STATUS_SUCCESS || (det && c.determinism != CUDNN_DETERMINISTIC)) continue;
      const cudnnMathType_t math = want == CUDNN_FMA_MATH ? CUDNN_FMA_MATH : c.math;
      TG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, math));
      if (auto n = workspace(p, c.algo)) return {c.algo, math, *n};
      TG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, want));
    }
    TG_FAIL(name(p), ": cuDNN offers no algorithm for ", describe(g, dtype), det ? " that is deterministic" : "",
            want == CUDNN_FMA_MATH ? " in exact FP32 math" : "",
            det ? " (tapegrad::set_deterministic(false) allows the others)" : "");
  }

  // Runs pass p: the output buffer = the pass's result (beta = 0).
  void run(Pass p, const Window2d& g, const Buffers& b) {
    std::optional<Choice>& c = choice[static_cast<int>(p)];
    if (!c) c = choose(p, g, b);
    TG_CUDNN_CHECK(cudnnSetConvolutionMathType(conv, c->math));
    Workspace ws(c->workspace);
    cudnnHandle_t h = dnn_handle();
    const void *one = kOne.as(dtype), *zero = kZero.as(dtype);
    if (p == Pass::Forward)
      TG_CUDNN_CHECK(cudnnConvolutionForward(h, one, x, b.x, w, b.w, conv, static_cast<cudnnConvolutionFwdAlgo_t>(c->algo),
                                             ws.p, ws.bytes, zero, y, b.y));
    else if (p == Pass::BackwardData)
      TG_CUDNN_CHECK(cudnnConvolutionBackwardData(h, one, w, b.w, y, b.y, conv,
                                                  static_cast<cudnnConvolutionBwdDataAlgo_t>(c->algo), ws.p, ws.bytes,
                                                  zero, x, b.x));
    else
      TG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(h, one, x, b.x, y, b.y, conv,
                                                    static_cast<cudnnConvolutionBwdFilterAlgo_t>(c->algo), ws.p,
                                                    ws.bytes, zero, w, b.w));
  }
};

// The geometries seen so far. The choice depends on the flags too (TF32, determinism), so they are in the key.
// One lock for lookup and call: the handle and a Conv's descriptor are not to be used by two threads at once.
std::mutex g_conv_mutex;
std::map<std::vector<int64_t>, std::unique_ptr<Conv>> g_convs;

Conv& conv_for(const Window2d& g, DType t) {
  std::vector<int64_t> key{g.N,        g.C,        g.H,     g.W,     g.K,
                           g.R,        g.S,        g.stride_h, g.stride_w, g.pad_h,
                           g.pad_w,    static_cast<int64_t>(t), allow_tf32(), deterministic()};
  auto& c = g_convs[key];
  if (!c) c = std::make_unique<Conv>(g, t);
  return *c;
}

void check_conv_dtype(const Tensor& t, const char* op) {
  TG_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F64, op, ": dtype ", t.dtype(),
           " on cuda (expected f32 or f64)");
}

}  // namespace

// ---- convolution ----------------------------------------------------------------------------

void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Window2d& g, Tensor& y) {
  check_conv_dtype(x, "conv2d_forward");
  if (g.N * g.K * g.P * g.Q == 0) return;
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  Conv& c = conv_for(g, x.dtype());
  c.run(Pass::Forward, g, {x.raw_data(), w.raw_data(), y.raw_data()});
  if (bias.defined())  // y += bias [1, K, 1, 1], broadcast
    TG_CUDNN_CHECK(cudnnAddTensor(dnn_handle(), kOne.as(c.dtype), c.bias, bias.raw_data(), kOne.as(c.dtype), c.y,
                                  y.raw_data()));
}

void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Window2d& g, Tensor& gx) {
  check_conv_dtype(gy, "conv2d_backward_input");
  if (g.N * g.C * g.H * g.W == 0) return;
  if (g.K * g.P * g.Q == 0) return fill(gx, 0.0);
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  conv_for(g, gy.dtype()).run(Pass::BackwardData, g, {gx.raw_data(), w.raw_data(), gy.raw_data()});
}

void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Window2d& g, Tensor& gw, Tensor& gbias) {
  check_conv_dtype(gy, "conv2d_backward_weight");
  if (g.N * g.P * g.Q == 0) {  // an empty batch: zero gradients
    if (gw.defined()) fill(gw, 0.0);
    if (gbias.defined()) fill(gbias, 0.0);
    return;
  }
  std::lock_guard<std::mutex> lock(g_conv_mutex);
  Conv& c = conv_for(g, gy.dtype());
  if (gw.defined()) c.run(Pass::BackwardFilter, g, {x.raw_data(), gw.raw_data(), gy.raw_data()});
  if (gbias.defined())  // gbias [1, K, 1, 1] = gy summed over N, P, Q
    TG_CUDNN_CHECK(cudnnConvolutionBackwardBias(dnn_handle(), kOne.as(c.dtype), c.y, gy.raw_data(),
                                                kZero.as(c.dtype), c.bias, gbias.raw_data()));
}

// ---- batch norm (spatial: per channel over N and the inner dims) ------------------------------------
//
// cuDNN's conventions are the facade's: the running statistics move by exponentialAverageFactor = momentum
// towards the batch mean and the unbiased batch variance; it saves the batch mean and 1/sqrt(var + eps).

namespace {

// x [N, C, inner] as the 4-D tensor [N, C, inner, 1] and the per-channel descriptor cuDNN derives from it.
struct BatchNormDescs {
  TensorDesc x, param;
  int64_t N, C, inner;
  BatchNormDescs(const Tensor& t, const char* op)
      : N(t.size(0)), C(t.size(1)), inner(t.numel() / std::max<int64_t>(1, t.size(0) * t.size(1))) {
    x.set(op, N, C, inner, 1, t.dtype());
    TG_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(param, x, CUDNN_BATCHNORM_SPATIAL));
  }
};

// t, or a [C] tensor filled with value when t is undefined (weight 1, bias 0).
Tensor or_filled(const Tensor& t, int64_t C, DType d, double value) {
  if (t.defined()) return t;
  Tensor f = make_tensor({C}, d, Device::CUDA);
  fill(f, value);
  return f;
}

// t, or scratch of shape s when t is undefined (an output cuDNN writes that nobody asked for).
Tensor or_scratch(const Tensor& t, const Shape& s, DType d) { return t.defined() ? t : make_tensor(s, d, Device::CUDA); }

void check_eps(double eps, const char* op) {
  TG_CHECK(eps >= CUDNN_BN_MIN_EPSILON, op, ": eps ", eps, " is below cuDNN's minimum ", CUDNN_BN_MIN_EPSILON);
}

}  // namespace

void batch_norm_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                 double momentum, Tensor& running_mean, Tensor& running_var, Tensor& y,
                                 Tensor& save_mean, Tensor& save_invstd) {
  const char* op = "batch_norm_forward_training";
  check_conv_dtype(x, op);
  check_eps(eps, op);
  if (x.numel() == 0) return;
  BatchNormDescs d(x, op);
  const DType t = x.dtype();
  Tensor w = or_filled(weight, d.C, t, 1.0), b = or_filled(bias, d.C, t, 0.0);
  TG_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      dnn_handle(), CUDNN_BATCHNORM_SPATIAL, kOne.as(t), kZero.as(t), d.x, x.raw_data(), d.x, y.raw_data(), d.param,
      w.raw_data(), b.raw_data(), momentum, running_mean.defined() ? running_mean.raw_data() : nullptr,
      running_var.defined() ? running_var.raw_data() : nullptr, eps, save_mean.raw_data(), save_invstd.raw_data()));
}

void batch_norm_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  const char* op = "batch_norm_forward_inference";
  check_conv_dtype(x, op);
  check_eps(eps, op);
  if (x.numel() == 0) return;
  BatchNormDescs d(x, op);
  const DType t = x.dtype();
  Tensor w = or_filled(weight, d.C, t, 1.0), b = or_filled(bias, d.C, t, 0.0);
  TG_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(
      dnn_handle(), CUDNN_BATCHNORM_SPATIAL, kOne.as(t), kZero.as(t), d.x, x.raw_data(), d.x, y.raw_data(), d.param,
      w.raw_data(), b.raw_data(), running_mean.raw_data(), running_var.raw_data(), eps));
}

// cudnnBatchNormalizationBackward computes all three gradients from the saved mean and invstd, treating them
// as the batch's. In evaluation (constant statistics) it still gives gweight and gbias (they do not depend on
// that), and gx = weight invstd gy is a kernel of its own.
void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& invstd, bool batch_stats, Tensor& gx, Tensor& gweight, Tensor& gbias) {
  const char* op = "batch_norm_backward";
  check_conv_dtype(x, op);
  if (x.numel() == 0) {  // empty sums
    if (gweight.defined()) fill(gweight, 0.0);
    if (gbias.defined()) fill(gbias, 0.0);
    return;
  }
  BatchNormDescs d(x, op);
  const DType t = x.dtype();
  const bool params = gweight.defined() || gbias.defined();
  if (params || (batch_stats && gx.defined())) {
    Tensor w = or_filled(weight, d.C, t, 1.0);
    Tensor dx = batch_stats ? or_scratch(gx, x.shape(), t) : make_tensor(x.shape(), t, Device::CUDA);
    Tensor dw = or_scratch(gweight, {d.C}, t), db = or_scratch(gbias, {d.C}, t);
    // epsilon is not used when the saved statistics are given (it must still be >= CUDNN_BN_MIN_EPSILON).
    constexpr double kUnusedEps = 1e-5;
    TG_CUDNN_CHECK(cudnnBatchNormalizationBackward(
        dnn_handle(), CUDNN_BATCHNORM_SPATIAL, kOne.as(t), kZero.as(t), kOne.as(t), kZero.as(t), d.x, x.raw_data(),
        d.x, gy.raw_data(), d.x, dx.raw_data(), d.param, w.raw_data(), dw.raw_data(), db.raw_data(), kUnusedEps,
        mean.raw_data(), invstd.raw_data()));
  }
  if (!batch_stats && gx.defined()) batch_norm_backward_constant_stats(gy, weight, invstd, d.N, d.C, d.inner, gx);
}

}  // namespace tapegrad::cuda
