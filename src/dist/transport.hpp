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

}  // namespace tapegrad::dist::transport
