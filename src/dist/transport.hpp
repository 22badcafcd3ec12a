// The message layer under dist/: raw buffers of one dtype between the ranks. Two twins with these signatures:
// mpi.cpp (Open MPI) and single.cpp (a world of one, when the library is built without MPI). dist.cpp and
// data_parallel.cpp call these only in a world of more than one rank.
#pragma once

#include <cstdint>

#include "tapegrad/dist.hpp"

namespace tapegrad::dist::transport {

bool built_with_mpi();
void init(int* argc, char*** argv);  // joins the MPI world when launched by mpirun; else a world of one
bool using_mpi();
int rank();
int world_size();
int local_rank();
int local_size();
void barrier();
// In place; op Sum, Max or Min (Avg is a Sum divided by the caller).
void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op);
void broadcast(void* data, int64_t count, DType dtype, int root);
// Non-blocking sum in place on the gradient communicator (a duplicate of the world's, so that these never
// pair with the blocking collectives above). Returns a request number; progress() lets the library move the
// transfers on (MPI progresses them inside its own calls), wait() returns when the request is done.
int start_sum(void* data, int64_t count, DType dtype);
void progress();
void wait(int request);
bool done(int request);  // finished (moves it on first)
void abort(int code);

// Device memory (CUDA tensors) through NCCL, on the CUDA backend's stream (nccl.cpp, in a build with CUDA, MPI
// and NCCL; no_nccl.cpp elsewhere, where device_collectives() is false and dist.cpp goes through host memory).
// Each call is queued, not waited for: the stream orders it after the kernels that wrote the buffer and
// before those that read it. The communicator is made on first use (a collective: every rank gets there).
bool device_collectives();
void select_device();  // at init: GPU local_rank() % count, so that the ranks of one machine use distinct GPUs
void device_all_reduce(void* data, int64_t count, DType dtype, ReduceOp op);  // in place; Sum, Max, Min
void device_broadcast(void* data, int64_t count, DType dtype, int root);
// DataParallel's sums: as start_sum; device_done tells whether the sum has run on the device, device_wait
// releases the request (the host need not wait: what reads the result is queued behind it).
int device_start_sum(void* data, int64_t count, DType dtype);
bool device_done(int request);
void device_wait(int request);

}  // namespace tapegrad::dist::transport
