// One LSTM layer through cuDNN's RNN API: cudnnRNNForward (training or inference mode), then
// cudnnRNNBackwardData_v8 and cudnnRNNBackwardWeights_v8. Contracts: src/kernels.inc.
//
// The weights stay in PyTorch's layout in their tensors (w_ih [4H, I], w_hh [4H, H], b_ih, b_hh [4H], gate
// blocks i, f, g, o), so that a checkpoint is the same file on both devices. Each forward packs them into
// cuDNN's weight space, whose blocks cudnnGetRNNWeightParams locates: linLayerID 0-3 are the input matrices
// and biases of gates i, f, g (cuDNN's "c'", the new memory), o; 4-7 the recurrent ones in the same order.
// Backward adds the weight gradients into a zeroed weight space (CUDNN_WGRAD_MODE_ADD) and unpacks them
// through the same blocks.
//
// reserve, in training mode: [bytes / element size] of x's dtype on the device holding the packed weights
// (padded to 256 bytes), then cuDNN's reserve space; backward runs on the very weights of its forward.
// Inference (the op passes an empty reserve: nothing will be recorded): no reserve space, and reserve comes
// back undefined.
//
// f32 is exact FP32 (CUDNN_FMA_MATH) unless tapegrad::set_allow_tf32(true) (CUDNN_DEFAULT_MATH, which lets
// cuDNN use TF32 tensor cores); f64 is CUDNN_DEFAULT_MATH in double precision.
#include <climits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "../internal.hpp"
#include "common.hpp"
#include "cuda.hpp"
#include "dnn.hpp"
#include "runtime.hpp"

namespace tapegrad::cuda {

namespace {

constexpr size_t kAlign = 256;
size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

// What the descriptors depend on: sizes, dtype, biases, and the math mode of f32.
struct Key {
  int64_t I, H, T, B;
  DType dtype;
  bool bias, tf32;
  auto tie() const { return std::tie(I, H, T, B, dtype, bias, tf32); }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

// The descriptors of one Key, created once and kept (never destroyed, as the allocator's blocks), with the
// sizes cuDNN asked for and where each gate block lies in the weight space (byte offsets; bias -1: none).
struct Rnn {
  cudnnRNNDescriptor_t rnn = nullptr;
  cudnnDropoutDescriptor_t dropout = nullptr;
  cudnnRNNDataDescriptor_t xd = nullptr, yd = nullptr;  // [T, B, I], [T, B, H], every sequence T long
  cudnnTensorDescriptor_t hd = nullptr;                  // [1, B, H]: h and c
  int32_t* seq_lengths = nullptr;                        // device [B], all T
  size_t weight_bytes = 0, work_train = 0, reserve_bytes = 0, work_infer = 0;
  int64_t matrix_off[8] = {}, bias_off[8] = {};
};

cudnnDataType_t data_type(DType d) { return d == DType::F64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT; }

int to_int(int64_t v, const char* what, const Tensor& x) {
  TG_CHECK(v <= INT_MAX, "lstm: ", what, " ", v, " of input ", x.shape(), " is too large for cuDNN (int32)");
  return static_cast<int>(v);
}

// Number of elements a descriptor filled by cudnnGetRNNWeightParams describes.
int64_t elements(cudnnTensorDescriptor_t d) {
  cudnnDataType_t t;
  int n = 0, dims[8], strides[8];
  TG_CUDNN_CHECK(cudnnGetTensorNdDescriptor(d, 8, &t, &n, dims, strides));
  int64_t e = 1;
  for (int k = 0; k < n; ++k) e *= dims[k];
  return e;
}

// A workspace of `bytes` from the caching allocator (back to its free list when done, in stream order).
Tensor workspace(size_t bytes) {
  return make_tensor({static_cast<int64_t>((bytes + 7) / 8)}, DType::F64, Device::CUDA);
}

Rnn* create(const Key& k, const Tensor& x) {
  auto* r = new Rnn;
  const cudnnDataType_t dt = data_type(k.dtype);
  const int I = to_int(k.I, "input size", x), H = to_int(k.H, "hidden size", x), T = to_int(k.T, "length", x),
            B = to_int(k.B, "batch", x);
  cudnnHandle_t h = dnn_handle();
  // One layer: no dropout between layers, so the descriptor needs no random states (as PyTorch's
  // set_no_dropout).
  TG_CUDNN_CHECK(cudnnCreateDropoutDescriptor(&r->dropout));
  TG_CUDNN_CHECK(cudnnSetDropoutDescriptor(r->dropout, h, 0.0f, nullptr, 0, 0));
  const cudnnMathType_t math = k.dtype == DType::F32 && !k.tf32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  TG_CUDNN_CHECK(cudnnCreateRNNDescriptor(&r->rnn));
  TG_CUDNN_CHECK(cudnnSetRNNDescriptor_v8(r->rnn, CUDNN_RNN_ALGO_STANDARD, CUDNN_LSTM,
                                          k.bias ? CUDNN_RNN_DOUBLE_BIAS : CUDNN_RNN_NO_BIAS, CUDNN_UNIDIRECTIONAL,
                                          CUDNN_LINEAR_INPUT, dt, dt, math, I, H, /*projSize*/ H, /*numLayers*/ 1,
                                          r->dropout, CUDNN_RNN_PADDED_IO_DISABLED));
  // Sequence-major packed with every length T: exactly the contiguous [T, B, *] of the tensors.
  const std::vector<int> lengths(static_cast<size_t>(B), T);
  TG_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&r->xd));
  TG_CUDNN_CHECK(cudnnSetRNNDataDescriptor(r->xd, dt, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, B, I,
                                           lengths.data(), nullptr));
  TG_CUDNN_CHECK(cudnnCreateRNNDataDescriptor(&r->yd));
  TG_CUDNN_CHECK(cudnnSetRNNDataDescriptor(r->yd, dt, CUDNN_RNN_DATA_LAYOUT_SEQ_MAJOR_PACKED, T, B, H,
                                           lengths.data(), nullptr));
  const int hdims[3] = {1, B, H}, hstrides[3] = {B * H, H, 1};
  TG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&r->hd));
  TG_CUDNN_CHECK(cudnnSetTensorNdDescriptor(r->hd, dt, 3, hdims, hstrides));
  r->seq_lengths = static_cast<int32_t*>(allocate(sizeof(int32_t) * static_cast<size_t>(B)));
  copy(r->seq_lengths, true, lengths.data(), false, sizeof(int32_t) * static_cast<size_t>(B));

  TG_CUDNN_CHECK(cudnnGetRNNWeightSpaceSize(h, r->rnn, &r->weight_bytes));
  TG_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(h, r->rnn, CUDNN_FWD_MODE_TRAINING, r->xd, &r->work_train,
                                           &r->reserve_bytes));
  size_t unused = 0;
  TG_CUDNN_CHECK(cudnnGetRNNTempSpaceSizes(h, r->rnn, CUDNN_FWD_MODE_INFERENCE, r->xd, &r->work_infer, &unused));

  // The blocks' places: asked once against a scratch weight space, kept as offsets from its start.
  Tensor scratch = workspace(r->weight_bytes);
  char* base = static_cast<char*>(scratch.raw_data());
  cudnnTensorDescriptor_t md, bd;
  TG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&md));
  TG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&bd));
  for (int id = 0; id < 8; ++id) {
    void *m = nullptr, *b = nullptr;
    TG_CUDNN_CHECK(cudnnGetRNNWeightParams(h, r->rnn, 0, r->weight_bytes, base, id, md, &m, bd, &b));
    const int64_t cols = id < 4 ? k.I : k.H;
    TG_CHECK(m != nullptr && elements(md) == k.H * cols, "lstm: cuDNN's weight block ", id, " has ", elements(md),
             " elements, expected [", k.H, ", ", cols, "]");
    r->matrix_off[id] = static_cast<char*>(m) - base;
    r->bias_off[id] = -1;
    if (k.bias) {
      TG_CHECK(b != nullptr && elements(bd) == k.H, "lstm: cuDNN's bias block ", id, " has ",
               b ? elements(bd) : 0, " elements, expected ", k.H);
      r->bias_off[id] = static_cast<char*>(b) - base;
    }
  }
  cudnnDestroyTensorDescriptor(bd);
  cudnnDestroyTensorDescriptor(md);
  return r;
}

// The descriptors for this call's sizes (created on first use). Backward looks them up again with the
// current allow_tf32(): it must not change between a forward and its backward.
Rnn& rnn_for(const Tensor& x, const LstmWeights& w) {
  TG_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, "lstm: dtype ", x.dtype(),
           " on cuda (expected f32 or f64)");
  const Key k{x.size(2), w.w_hh.size(1), x.size(0), x.size(1), x.dtype(), w.b_ih.defined(),
              x.dtype() == DType::F32 && allow_tf32()};
  static std::mutex mu;
  static auto* cache = new std::map<Key, Rnn*>;
  std::lock_guard<std::mutex> lock(mu);
  Rnn*& r = (*cache)[k];
  if (!r) r = create(k, x);
  return *r;
}

// The gate blocks in PyTorch's layout: block id (0-3 input, 4-7 recurrent) of w_ih / w_hh is rows
// [(id % 4) H, (id % 4 + 1) H); of b_ih / b_hh, those elements.
enum class Way { Pack, Unpack };
void move_blocks(const Rnn& r, const LstmWeights& w, char* space, Way way, int64_t H, DType d) {
  const size_t es = size_of(d);
  auto move = [&](const Tensor& t, int64_t offset_elems, int64_t n, int64_t space_off) {
    if (!t.defined() || space_off < 0) return;
    char* p = static_cast<char*>(t.raw_data()) + offset_elems * static_cast<int64_t>(es);
    char* s = space + space_off;
    const size_t bytes = static_cast<size_t>(n) * es;
    if (way == Way::Pack) TG_CUDA_CHECK(cudaMemcpyAsync(s, p, bytes, cudaMemcpyDeviceToDevice, stream()));
    else TG_CUDA_CHECK(cudaMemcpyAsync(p, s, bytes, cudaMemcpyDeviceToDevice, stream()));
  };
  for (int id = 0; id < 8; ++id) {
    const Tensor& m = id < 4 ? w.w_ih : w.w_hh;
    const Tensor& b = id < 4 ? w.b_ih : w.b_hh;
    const int64_t q = id % 4, cols = m.defined() ? m.size(1) : 0;
    move(m, q * H * cols, H * cols, r.matrix_off[id]);
    move(b, q * H, H, r.bias_off[id]);
  }
}

void* ptr_or_null(const Tensor& t) { return t.defined() ? t.raw_data() : nullptr; }

}  // namespace

void lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, Tensor& y, Tensor& hT,
                  Tensor& cT, Tensor& reserve) {
  const bool training = !(reserve.defined() && reserve.numel() == 0);
  const Rnn& r = rnn_for(x, w);
  const DType d = x.dtype();
  const size_t es = size_of(d), wbytes = round_up(r.weight_bytes), rbytes = training ? r.reserve_bytes : 0;
  Tensor store = make_tensor({static_cast<int64_t>((wbytes + rbytes + es - 1) / es)}, d, Device::CUDA);
  char* space = static_cast<char*>(store.raw_data());
  move_blocks(r, w, space, Way::Pack, w.w_hh.size(1), d);
  const size_t work_bytes = training ? r.work_train : r.work_infer;
  Tensor work = workspace(work_bytes);
  TG_CUDNN_CHECK(cudnnRNNForward(dnn_handle(), r.rnn, training ? CUDNN_FWD_MODE_TRAINING : CUDNN_FWD_MODE_INFERENCE,
                                 r.seq_lengths, r.xd, x.raw_data(), r.yd, y.raw_data(), r.hd, ptr_or_null(h0),
                                 hT.raw_data(), r.hd, ptr_or_null(c0), cT.raw_data(), r.weight_bytes, space,
                                 work_bytes, work.raw_data(), rbytes, rbytes ? space + wbytes : nullptr));
  reserve = training ? store : Tensor();
}

void lstm_backward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, const Tensor& y,
                   const Tensor& reserve, const Tensor& gy, const Tensor& ghT, const Tensor& gcT, Tensor& gx,
                   Tensor& gh0, Tensor& gc0, LstmWeights& gw) {
  const Rnn& r = rnn_for(x, w);
  const DType d = x.dtype();
  const size_t es = size_of(d), wbytes = round_up(r.weight_bytes);
  TG_CHECK(reserve.defined() && reserve.dtype() == d &&
               static_cast<size_t>(reserve.numel()) * es >= wbytes + r.reserve_bytes,
           "lstm_backward: the reserve (", reserve.defined() ? to_string(reserve.shape()) : "undefined",
           ") does not come from a training-mode lstm_forward on cuda of input ", x.shape());
  char* space = static_cast<char*>(reserve.raw_data());
  void* reserve_space = r.reserve_bytes ? space + wbytes : nullptr;
  Tensor work = workspace(r.work_train);
  // cuDNN writes dx and reads dy always: scratch for an unwanted gx, zeros for a missing gy.
  Tensor dx = gx.defined() ? gx : make_tensor(x.shape(), d, Device::CUDA), dy = gy;
  if (!dy.defined()) {
    dy = make_tensor(y.shape(), d, Device::CUDA);
    TG_CUDA_CHECK(cudaMemsetAsync(dy.raw_data(), 0, static_cast<size_t>(dy.numel()) * es, stream()));
  }
  TG_CUDNN_CHECK(cudnnRNNBackwardData_v8(dnn_handle(), r.rnn, r.seq_lengths, r.yd, y.raw_data(), dy.raw_data(), r.xd,
                                         dx.raw_data(), r.hd, ptr_or_null(h0), ptr_or_null(ghT), ptr_or_null(gh0),
                                         r.hd, ptr_or_null(c0), ptr_or_null(gcT), ptr_or_null(gc0), r.weight_bytes,
                                         space, r.work_train, work.raw_data(), r.reserve_bytes, reserve_space));
  if (!gw.w_ih.defined() && !gw.w_hh.defined() && !gw.b_ih.defined() && !gw.b_hh.defined()) return;
  // After the data gradients (it reads what they left in the reserve space): the weight gradients added into
  // a zeroed weight space, then unpacked into PyTorch's layout.
  Tensor dw = make_tensor({static_cast<int64_t>((r.weight_bytes + es - 1) / es)}, d, Device::CUDA);
  TG_CUDA_CHECK(cudaMemsetAsync(dw.raw_data(), 0, r.weight_bytes, stream()));
  TG_CUDNN_CHECK(cudnnRNNBackwardWeights_v8(dnn_handle(), r.rnn, CUDNN_WGRAD_MODE_ADD, r.seq_lengths, r.xd,
                                            x.raw_data(), r.hd, ptr_or_null(h0), r.yd, y.raw_data(), r.weight_bytes,
                                            dw.raw_data(), r.work_train, work.raw_data(), r.reserve_bytes,
                                            reserve_space));
  move_blocks(r, gw, static_cast<char*>(dw.raw_data()), Way::Unpack, w.w_hh.size(1), d);
}

}  // namespace tapegrad::cuda
