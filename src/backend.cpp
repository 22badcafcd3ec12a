// The facade's dispatch: each kernel goes to the twin of its tensors' device after checking that every
// operand is there. The test device runs the CPU twin under its own tag; the CUDA twin (src/cuda/) plugs in
// here in a CUDA build, without touching ops, modules or optimizers.
#include "backend.hpp"

#include "cpu/cpu.hpp"
#include "internal.hpp"
#include "tapegrad_config.h"
#if TG_CUDA
#include "cuda/cuda.hpp"
#endif

namespace tapegrad::backend {

[[noreturn]] static void no_backend(const char* kernel, Device dev) {
  TG_FAIL(kernel, ": no ", dev, " backend in this build (configure with -Dcuda=enabled on a CUDA machine)");
}

// Every defined tensor among a kernel's operands is on dev: a mix is an error, never a wrong result.
static void check_operand(const char* kernel, Device dev, const Tensor& t) {
  TG_CHECK(!t.defined() || t.device() == dev, kernel, ": operands on different devices: ", dev, " and ",
           t.device(), " (a tensor of shape ", to_string(t.shape()), "); move them with to(Device) first");
}
static void check_operand(const char* kernel, Device dev, const LstmWeights& w) {
  for (const Tensor* t : {&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh}) check_operand(kernel, dev, *t);
}
static void check_operand(const char* kernel, Device dev, const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts) check_operand(kernel, dev, t);
}
template <class T>
static void check_operand(const char*, Device, const T&) {}  // not a tensor
template <class... A>
static void check_devices(const char* kernel, Device dev, const A&... args) {
  (check_operand(kernel, dev, args), ...);
}

#if TG_CUDA
#define TG_CUDA_CASE(kernel, ...) \
  if (dev_ == Device::CUDA) {     \
    KernelScope scope;            \
    return cuda::kernel(__VA_ARGS__); \
  }
#else
#define TG_CUDA_CASE(kernel, ...)
#endif

#define TG_DISPATCH(kernel, dev, ...)                                   \
  do {                                                                  \
    const Device dev_ = (dev);                                          \
    check_devices(#kernel, dev_, __VA_ARGS__);                          \
    if (dev_ == Device::CPU) return cpu::kernel(__VA_ARGS__);           \
    if (dev_ == Device::Test) {                                         \
      KernelScope scope;                                                \
      return cpu::kernel(__VA_ARGS__);                                  \
    }                                                                   \
    TG_CUDA_CASE(kernel, __VA_ARGS__)                                   \
    no_backend(#kernel, dev_);                                          \
  } while (0)

void unary(Unary op, const Tensor& x, Tensor& y, double param) { TG_DISPATCH(unary, x.device(), op, x, y, param); }
void unary_backward(Unary op, const Tensor& g, const Tensor& x, const Tensor& y, Tensor& gx, double param) {
  TG_DISPATCH(unary_backward, g.device(), op, g, x, y, gx, param);
}
void binary(Binary op, const Tensor& a, const Tensor& b, Tensor& out) { TG_DISPATCH(binary, a.device(), op, a, b, out); }
void affine(const Tensor& x, double alpha, double beta, Tensor& out) {
  TG_DISPATCH(affine, x.device(), x, alpha, beta, out);
}
void sum_to(const Tensor& x, Tensor& out) { TG_DISPATCH(sum_to, x.device(), x, out); }
void expand(const Tensor& x, Tensor& out) { TG_DISPATCH(expand, x.device(), x, out); }
void max_dim(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& values, Tensor& indices) {
  TG_DISPATCH(max_dim, x.device(), x, outer, n, inner, values, indices);
}
void max_dim_backward(const Tensor& g, const Tensor& indices, int64_t outer, int64_t n, int64_t inner, Tensor& gx) {
  TG_DISPATCH(max_dim_backward, g.device(), g, indices, outer, n, inner, gx);
}
void gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const Tensor& a,
          int64_t stride_a, const Tensor& b, int64_t stride_b, double beta, Tensor& c) {
  TG_DISPATCH(gemm, a.device(), trans_a, trans_b, batch, m, n, k, alpha, a, stride_a, b, stride_b, beta, c);
}
void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  TG_DISPATCH(linear_forward, x.device(), x, w, bias, y);
}
void add_bias_rows(Tensor& y, const Tensor& bias) { TG_DISPATCH(add_bias_rows, y.device(), y, bias); }
void sum_rows(const Tensor& x, Tensor& out) { TG_DISPATCH(sum_rows, x.device(), x, out); }
void softmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, bool log, Tensor& y) {
  TG_DISPATCH(softmax, x.device(), x, outer, n, inner, log, y);
}
void softmax_backward(const Tensor& g, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool log,
                      Tensor& gx) {
  TG_DISPATCH(softmax_backward, g.device(), g, y, outer, n, inner, log, gx);
}
void cross_entropy(const Tensor& logits, const Tensor& labels, Tensor& loss, Tensor& lse) {
  TG_DISPATCH(cross_entropy, logits.device(), logits, labels, loss, lse);
}
void cross_entropy_backward(const Tensor& logits, const Tensor& lse, const Tensor& labels, const Tensor& g,
                            double factor, Tensor& glogits) {
  TG_DISPATCH(cross_entropy_backward, logits.device(), logits, lse, labels, g, factor, glogits);
}
void dropout_mask(double p, uint64_t seed, Tensor& mask) { TG_DISPATCH(dropout_mask, mask.device(), p, seed, mask); }
void argmax(const Tensor& x, int64_t outer, int64_t n, int64_t inner, Tensor& out) {
  TG_DISPATCH(argmax, x.device(), x, outer, n, inner, out);
}
void permute(const Tensor& x, const std::vector<int64_t>& dims, Tensor& out) {
  TG_DISPATCH(permute, x.device(), x, dims, out);
}
void copy_block(const Tensor& src, int64_t outer, int64_t src_n, int64_t inner, Tensor& dst, int64_t dst_n,
                int64_t dst_start) {
  TG_DISPATCH(copy_block, src.device(), src, outer, src_n, inner, dst, dst_n, dst_start);
}
void copy_block_from(const Tensor& src, int64_t outer, int64_t src_n, int64_t src_start, int64_t inner, Tensor& dst,
                     int64_t dst_n) {
  TG_DISPATCH(copy_block_from, src.device(), src, outer, src_n, src_start, inner, dst, dst_n);
}
void conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, const Window2d& g, Tensor& y) {
  TG_DISPATCH(conv2d_forward, x.device(), x, w, bias, g, y);
}
void conv2d_backward_input(const Tensor& gy, const Tensor& w, const Window2d& g, Tensor& gx) {
  TG_DISPATCH(conv2d_backward_input, gy.device(), gy, w, g, gx);
}
void conv2d_backward_weight(const Tensor& gy, const Tensor& x, const Window2d& g, Tensor& gw, Tensor& gbias) {
  TG_DISPATCH(conv2d_backward_weight, gy.device(), gy, x, g, gw, gbias);
}
void batch_norm_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps,
                                 double momentum, Tensor& running_mean, Tensor& running_var, Tensor& y,
                                 Tensor& save_mean, Tensor& save_invstd) {
  TG_DISPATCH(batch_norm_forward_training, x.device(), x, weight, bias, eps, momentum, running_mean, running_var, y,
              save_mean, save_invstd);
}
void batch_norm_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                  const Tensor& running_mean, const Tensor& running_var, double eps, Tensor& y) {
  TG_DISPATCH(batch_norm_forward_inference, x.device(), x, weight, bias, running_mean, running_var, eps, y);
}
void batch_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& weight, const Tensor& mean,
                         const Tensor& invstd, bool batch_stats, Tensor& gx, Tensor& gweight, Tensor& gbias) {
  TG_DISPATCH(batch_norm_backward, gy.device(), gy, x, weight, mean, invstd, batch_stats, gx, gweight, gbias);
}
void batch_norm_relu_forward_training(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                      const Tensor& residual, double eps, double momentum, Tensor& running_mean,
                                      Tensor& running_var, Tensor& y, Tensor& save_mean, Tensor& save_invstd) {
  TG_DISPATCH(batch_norm_relu_forward_training, x.device(), x, weight, bias, residual, eps, momentum, running_mean,
              running_var, y, save_mean, save_invstd);
}
void batch_norm_relu_forward_inference(const Tensor& x, const Tensor& weight, const Tensor& bias,
                                       const Tensor& residual, const Tensor& running_mean,
                                       const Tensor& running_var, double eps, Tensor& y) {
  TG_DISPATCH(batch_norm_relu_forward_inference, x.device(), x, weight, bias, residual, running_mean, running_var,
              eps, y);
}
void batch_norm_relu_backward(const Tensor& gy, const Tensor& y, const Tensor& x, const Tensor& weight,
                              const Tensor& mean, const Tensor& invstd, bool batch_stats, Tensor& gx,
                              Tensor& gweight, Tensor& gbias, Tensor& gresidual) {
  TG_DISPATCH(batch_norm_relu_backward, gy.device(), gy, y, x, weight, mean, invstd, batch_stats, gx, gweight, gbias,
              gresidual);
}
void max_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y, Tensor& indices) {
  TG_DISPATCH(max_pool2d_forward, x.device(), x, g, y, indices);
}
void max_pool2d_backward(const Tensor& gy, const Tensor& indices, const Window2d& g, Tensor& gx) {
  TG_DISPATCH(max_pool2d_backward, gy.device(), gy, indices, g, gx);
}
void avg_pool2d_forward(const Tensor& x, const Window2d& g, Tensor& y) {
  TG_DISPATCH(avg_pool2d_forward, x.device(), x, g, y);
}
void avg_pool2d_backward(const Tensor& gy, const Window2d& g, Tensor& gx) {
  TG_DISPATCH(avg_pool2d_backward, gy.device(), gy, g, gx);
}
void embedding_forward(const Tensor& weight, const Tensor& indices, Tensor& y) {
  TG_DISPATCH(embedding_forward, weight.device(), weight, indices, y);
}
void embedding_backward(const Tensor& gy, const Tensor& indices, Tensor& gweight) {
  TG_DISPATCH(embedding_backward, gy.device(), gy, indices, gweight);
}
void lstm_forward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, Tensor& y, Tensor& hT,
                  Tensor& cT, Tensor& reserve) {
  TG_DISPATCH(lstm_forward, x.device(), x, h0, c0, w, y, hT, cT, reserve);
}
void lstm_backward(const Tensor& x, const Tensor& h0, const Tensor& c0, const LstmWeights& w, const Tensor& y,
                   const Tensor& reserve, const Tensor& gy, const Tensor& ghT, const Tensor& gcT, Tensor& gx,
                   Tensor& gh0, Tensor& gc0, LstmWeights& gw) {
  TG_DISPATCH(lstm_backward, x.device(), x, h0, c0, w, y, reserve, gy, ghT, gcT, gx, gh0, gc0, gw);
}
void sum_squares(const Tensor& x, Tensor& out) { TG_DISPATCH(sum_squares, x.device(), x, out); }
void convert(const Tensor& src, Tensor& dst) { TG_DISPATCH(convert, src.device(), src, dst); }
void fill(Tensor& t, double value) { TG_DISPATCH(fill, t.device(), t, value); }


// The optimizer updates: the contract is checked here once for every twin, then one call goes to the
// twin of the parameters' device.
namespace {

void check_update(const char* op, const std::vector<Tensor>& p, const std::vector<Tensor>& g,
                  std::initializer_list<const std::vector<Tensor>*> state) {
  TG_CHECK(g.size() == p.size(), op, ": ", p.size(), " parameters but ", g.size(), " gradients");
  for (const auto* list : state)
    TG_CHECK(list->empty() || list->size() == p.size(), op, ": ", p.size(), " parameters but a state list of ",
             list->size());
  for (size_t k = 0; k < p.size(); ++k) {
    const Tensor& x = p[k];
    TG_CHECK(x.dtype() == DType::F32 || x.dtype() == DType::F64, op, ": parameter ", k, " has dtype ", x.dtype(),
             " (expected f32 or f64)");
    TG_CHECK(x.dtype() == p[0].dtype() && x.device() == p[0].device(), op, ": parameter ", k, " is ", x.dtype(),
             " on ", x.device(), " but parameter 0 is ", p[0].dtype(), " on ", p[0].device());
    auto same = [&](const Tensor& t, const char* what) {
      TG_CHECK(t.defined(), op, ": parameter ", k, "'s ", what, " is undefined");
      TG_CHECK(t.shape() == x.shape() && t.dtype() == x.dtype() && t.device() == x.device(), op, ": parameter ", k,
               " is ", to_string(x.shape()), " ", x.dtype(), " on ", x.device(), " but its ", what, " is ",
               to_string(t.shape()), " ", t.dtype(), " on ", t.device());
    };
    same(g[k], "gradient");
    for (const auto* list : state)
      if (!list->empty()) same((*list)[k], "state");
  }
}

}  // namespace

void sgd_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& momentum_buffer,
                const SgdScalars& s) {
  check_update("sgd_update", p, g, {&momentum_buffer});
  if (p.empty()) return;
  TG_DISPATCH(sgd_update, p[0].device(), p, g, momentum_buffer, s);
}
void adagrad_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& sum,
                    const AdagradScalars& s) {
  TG_CHECK(sum.size() == p.size(), "adagrad_update: ", p.size(), " parameters but ", sum.size(), " sums");
  check_update("adagrad_update", p, g, {&sum});
  if (p.empty()) return;
  TG_DISPATCH(adagrad_update, p[0].device(), p, g, sum, s);
}
void adam_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                 std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq, const AdamScalars& s) {
  TG_CHECK(exp_avg.size() == p.size() && exp_avg_sq.size() == p.size(), "adam_update: ", p.size(),
           " parameters but ", exp_avg.size(), " exp_avg and ", exp_avg_sq.size(), " exp_avg_sq");
  check_update("adam_update", p, g, {&exp_avg, &exp_avg_sq, &max_exp_avg_sq});
  if (p.empty()) return;
  TG_DISPATCH(adam_update, p[0].device(), p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, s);
}
void adabound_update(std::vector<Tensor>& p, const std::vector<Tensor>& g, std::vector<Tensor>& exp_avg,
                     std::vector<Tensor>& exp_avg_sq, std::vector<Tensor>& max_exp_avg_sq, const AdaBoundScalars& s) {
  TG_CHECK(exp_avg.size() == p.size() && exp_avg_sq.size() == p.size(), "adabound_update: ", p.size(),
           " parameters but ", exp_avg.size(), " exp_avg and ", exp_avg_sq.size(), " exp_avg_sq");
  check_update("adabound_update", p, g, {&exp_avg, &exp_avg_sq, &max_exp_avg_sq});
  if (p.empty()) return;
  TG_DISPATCH(adabound_update, p[0].device(), p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, s);
}

}  // namespace tapegrad::backend
