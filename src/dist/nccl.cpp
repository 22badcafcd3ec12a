// NCCL for device tensors (a build with CUDA, MPI and NCCL). Rank 0 draws the communicator's unique id
// (ncclGetUniqueId), MPI broadcasts it, every rank joins with ncclCommInitRank; each collective is queued on
// the CUDA backend's one stream (see transport.hpp).
#include <cuda_runtime.h>
#include <nccl.h>

#include <vector>

#include "../cuda/common.hpp"
#include "transport.hpp"

namespace tapegrad::dist::transport {

namespace {

#define TG_NCCL_CHECK(call)                                                                              \
  do {                                                                                                   \
    ncclResult_t r_ = (call);                                                                            \
    TG_CHECK(r_ == ncclSuccess, "nccl: ", #call, " failed on rank ", rank(), ": ", ncclGetErrorString(r_), \
             " (", __FILE__, ":", __LINE__, ")");                                                        \
  } while (0)

ncclComm_t comm() {
  static ncclComm_t c = [] {
    cuda::require_device("dist (NCCL)");
    ncclUniqueId id{};
    static_assert(sizeof id % sizeof(int64_t) == 0);
    if (rank() == 0) TG_NCCL_CHECK(ncclGetUniqueId(&id));
    broadcast(&id, sizeof id / sizeof(int64_t), DType::I64, 0);
    ncclComm_t made;
    TG_NCCL_CHECK(ncclCommInitRank(&made, world_size(), id, rank()));
    return made;
  }();
  return c;
}

ncclDataType_t type_of(DType d) {
  switch (d) {
    case DType::F32: return ncclFloat32;
    case DType::F64: return ncclFloat64;
    case DType::I64: return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t op_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return ncclMax;
    case ReduceOp::Min: return ncclMin;
    default: return ncclSum;
  }
}

// One event per sum in flight, recorded behind it; reused from step to step.
std::vector<cudaEvent_t> g_events;
size_t g_in_flight = 0;

}  // namespace

bool device_collectives() { return true; }

void select_device() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();  // no GPU: the CPU keeps working, device tensors fail when made
    return;
  }
  TG_CUDA_CHECK(cudaSetDevice(local_rank() % n));
}

void device_all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) {
  TG_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), type_of(dtype), op_of(op), comm(),
                              cuda::stream()));
}

void device_broadcast(void* data, int64_t count, DType dtype, int root) {
  TG_NCCL_CHECK(ncclBroadcast(data, data, static_cast<size_t>(count), type_of(dtype), root, comm(), cuda::stream()));
}

int device_start_sum(void* data, int64_t count, DType dtype) {
  device_all_reduce(data, count, dtype, ReduceOp::Sum);
  if (g_in_flight == g_events.size()) {
    cudaEvent_t e;
    TG_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    g_events.push_back(e);
  }
  TG_CUDA_CHECK(cudaEventRecord(g_events[g_in_flight], cuda::stream()));
  return static_cast<int>(g_in_flight++);
}

bool device_done(int request) {
  const cudaError_t e = cudaEventQuery(g_events.at(static_cast<size_t>(request)));
  if (e == cudaErrorNotReady) return false;
  TG_CUDA_CHECK(e);
  return true;
}

void device_wait(int request) {
  // The numbers start again once the last sum of a step is released (DataParallel releases them in order).
  if (static_cast<size_t>(request) + 1 == g_in_flight) g_in_flight = 0;
}

}  // namespace tapegrad::dist::transport
