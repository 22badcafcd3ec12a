// The optimizer kernel facade (src/optim_kernels.hpp): checks the contract, then dispatches on the
// device to the cpu:: twin. The CUDA twins are a later issue; until then a CUDA tensor throws.
#include "../src/optim_kernels.hpp"

namespace tapegrad::backend {
namespace {

// p, g and the defined state tensors share shape, dtype (f32/f64) and device.
void check_operands(const char* op, const Tensor& p, const Tensor& g, std::initializer_list<const Tensor*> state) {
  TG_CHECK(p.dtype() == DType::F32 || p.dtype() == DType::F64, op, ": dtype ", p.dtype(),
           " is not supported (expected f32 or f64)");
  TG_CHECK(g.shape() == p.shape() && g.dtype() == p.dtype() && g.device() == p.device(), op, ": param ", to_string(p.shape()),
           " ", p.dtype(), " on ", p.device(), " but grad ", to_string(g.shape()), " ", g.dtype(), " on ", g.device());
  for (const Tensor* s : state) {
    if (!s->defined()) continue;
    TG_CHECK(s->shape() == p.shape() && s->dtype() == p.dtype() && s->device() == p.device(), op, ": param ",
             to_string(p.shape()), " ", p.dtype(), " on ", p.device(), " but state ", to_string(s->shape()), " ", s->dtype(), " on ",
             s->device());
  }
}

[[noreturn]] void no_cuda(const char* op, const Tensor& p) {
  TG_FAIL(op, ": device ", p.device(), " with dtype ", p.dtype(),
          " is not implemented (the CUDA optimizer kernels are not written yet; keep the parameters on the CPU)");
}

}  // namespace

void sgd_update(Tensor& p, const Tensor& g, Tensor& momentum_buffer, const SgdScalars& s) {
  check_operands("sgd_update", p, g, {&momentum_buffer});
  if (p.device() != Device::CPU) no_cuda("sgd_update", p);
  cpu::sgd_update(p, g, momentum_buffer, s);
}

void adagrad_update(Tensor& p, const Tensor& g, Tensor& sum, const AdagradScalars& s) {
  TG_CHECK(sum.defined(), "adagrad_update: the sum state is undefined");
  check_operands("adagrad_update", p, g, {&sum});
  if (p.device() != Device::CPU) no_cuda("adagrad_update", p);
  cpu::adagrad_update(p, g, sum, s);
}

void adam_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                 const AdamScalars& s) {
  TG_CHECK(exp_avg.defined() && exp_avg_sq.defined(), "adam_update: exp_avg and exp_avg_sq must be defined");
  check_operands("adam_update", p, g, {&exp_avg, &exp_avg_sq, &max_exp_avg_sq});
  if (p.device() != Device::CPU) no_cuda("adam_update", p);
  cpu::adam_update(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, s);
}

void adabound_update(Tensor& p, const Tensor& g, Tensor& exp_avg, Tensor& exp_avg_sq, Tensor& max_exp_avg_sq,
                     const AdaBoundScalars& s) {
  TG_CHECK(exp_avg.defined() && exp_avg_sq.defined(), "adabound_update: exp_avg and exp_avg_sq must be defined");
  check_operands("adabound_update", p, g, {&exp_avg, &exp_avg_sq, &max_exp_avg_sq});
  if (p.device() != Device::CPU) no_cuda("adabound_update", p);
  cpu::adabound_update(p, g, exp_avg, exp_avg_sq, max_exp_avg_sq, s);
}

}  // namespace tapegrad::backend
