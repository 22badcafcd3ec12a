// gemm and linear_forward through cuBLAS / cuBLASLt. Row-major tensors are column-major transposes, so
// C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T. F32 is exact FP32 unless tapegrad::set_allow_tf32(true)
// (then TF32 tensor cores, ~1e-3 relative); F64 is always exact.
#include <cublasLt.h>
#include <cublas_v2.h>

#include "../internal.hpp"
#include "common.hpp"
#include "cuda.hpp"

namespace tapegrad::cuda {

namespace {

#define TG_CUBLAS_CHECK(call)                                                                             \
  do {                                                                                                    \
    cublasStatus_t s_ = (call);                                                                           \
    TG_CHECK(s_ == CUBLAS_STATUS_SUCCESS, "cublas: ", #call, " failed: ", cublasGetStatusString(s_), " (", \
             __FILE__, ":", __LINE__, ")");                                                               \
  } while (0)

cublasHandle_t handle() {
  static cublasHandle_t h = [] {
    cublasHandle_t c;
    TG_CUBLAS_CHECK(cublasCreate(&c));
    TG_CUBLAS_CHECK(cublasSetStream(c, stream()));
    return c;
  }();
  return h;
}

cublasLtHandle_t lt_handle() {
  static cublasLtHandle_t h = [] {
    cublasLtHandle_t c;
    TG_CUBLAS_CHECK(cublasLtCreate(&c));
    return c;
  }();
  return h;
}

cublasComputeType_t compute_type(DType d) {
  if (d == DType::F64) return CUBLAS_COMPUTE_64F;
  return allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
}
cudaDataType_t data_type(DType d) { return d == DType::F64 ? CUDA_R_64F : CUDA_R_32F; }

}  // namespace

void gemm(bool trans_a, bool trans_b, int64_t batch, int64_t m, int64_t n, int64_t k, double alpha, const Tensor& a,
          int64_t stride_a, const Tensor& b, int64_t stride_b, double beta, Tensor& c) {
  TG_CHECK(a.dtype() == DType::F32 || a.dtype() == DType::F64, "gemm: dtype ", a.dtype(), " on cuda (expected f32 or f64)");
  if (batch == 0 || m == 0 || n == 0) return;
  if (k == 0) {  // an empty sum: C = beta C
    affine(c, beta, 0.0, c);
    return;
  }
  const int lda = static_cast<int>(trans_a ? m : k), ldb = static_cast<int>(trans_b ? k : n);
  const cublasOperation_t op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const DType d = a.dtype();
  const float alpha32 = static_cast<float>(alpha), beta32 = static_cast<float>(beta);
  const void* pa = d == DType::F64 ? static_cast<const void*>(&alpha) : &alpha32;
  const void* pb = d == DType::F64 ? static_cast<const void*>(&beta) : &beta32;
  TG_CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle(), op_b, op_a, static_cast<int>(n), static_cast<int>(m),
                                             static_cast<int>(k), pa, b.raw_data(), data_type(d), ldb, stride_b,
                                             a.raw_data(), data_type(d), lda, stride_a, pb, c.raw_data(), data_type(d),
                                             static_cast<int>(n), m * n, static_cast<int>(batch), compute_type(d),
                                             CUBLAS_GEMM_DEFAULT));
}

// y^T [out, N] = w [out, in] x^T: in column-major terms, A = w^T stored [in, out] used transposed, B = x^T
// [in, N]; cuBLASLt's bias epilogue adds bias [out] to every column as it writes y.
void linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Tensor& y) {
  const int64_t N = x.size(0), in = x.size(1), out = w.size(0);
  const DType d = x.dtype();
  TG_CHECK(d == DType::F32 || d == DType::F64, "linear: dtype ", d, " on cuda (expected f32 or f64)");
  if (N == 0 || out == 0) return;
  if (!bias.defined() || d == DType::F64 || in == 0) {  // the epilogue is for f32; f64 adds the bias after
    gemm(false, true, 1, N, out, in, 1.0, x, 0, w, 0, 0.0, y);
    if (bias.defined()) add_bias_rows(y, bias);
    return;
  }
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  TG_CUBLAS_CHECK(cublasLtMatmulDescCreate(&op, compute_type(d), CUDA_R_32F));
  const cublasOperation_t t = CUBLAS_OP_T, nt = CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  const void* bias_ptr = bias.raw_data();
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &t, sizeof t));
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &nt, sizeof nt));
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue));
  TG_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias_ptr, sizeof bias_ptr));
  TG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&la, CUDA_R_32F, in, out, in));
  TG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lb, CUDA_R_32F, in, N, in));
  TG_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&lc, CUDA_R_32F, out, N, out));
  const float one = 1.0f, zero = 0.0f;
  // A workspace from the caching allocator (a tensor: back to its free list when done, in stream order).
  constexpr size_t kWorkspace = size_t{4} << 20;
  Tensor ws = make_tensor({static_cast<int64_t>(kWorkspace / 4)}, DType::F32, Device::CUDA);
  cublasStatus_t s = cublasLtMatmul(lt_handle(), op, &one, w.raw_data(), la, x.raw_data(), lb, &zero, y.raw_data(),
                                    lc, y.raw_data(), lc, nullptr, ws.raw_data(), kWorkspace, stream());
  cublasLtMatrixLayoutDestroy(lc);
  cublasLtMatrixLayoutDestroy(lb);
  cublasLtMatrixLayoutDestroy(la);
  cublasLtMatmulDescDestroy(op);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) {  // no kernel with this epilogue for the shape: the two-step way
    gemm(false, true, 1, N, out, in, 1.0, x, 0, w, 0, 0.0, y);
    add_bias_rows(y, bias);
    return;
  }
  TG_CUBLAS_CHECK(s);
}

}  // namespace tapegrad::cuda
