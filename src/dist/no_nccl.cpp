// A library without NCCL (no CUDA, no MPI, or no nccl.h in the toolkit): device tensors are exchanged through
// host memory by dist.cpp, so these are never called.
#include "transport.hpp"

namespace tapegrad::dist::transport {

[[noreturn]] static void no_nccl(const char* what) {
  TG_FAIL("dist: ", what, ": this library was built without NCCL (it needs -Dcuda=enabled, MPI and nccl.h)");
}

bool device_collectives() { return false; }
void select_device() {}
void device_all_reduce(void*, int64_t, DType, ReduceOp) { no_nccl("all_reduce on the device"); }
void device_broadcast(void*, int64_t, DType, int) { no_nccl("broadcast on the device"); }
int device_start_sum(void*, int64_t, DType) { no_nccl("a gradient sum on the device"); }
bool device_done(int) { return true; }
void device_wait(int) {}

}  // namespace tapegrad::dist::transport
