// The transport of a library built without MPI: a world of one rank, where the collectives are the identity
// (dist.cpp does not even call them then).
#include "transport.hpp"

namespace tapegrad::dist::transport {

bool built_with_mpi() { return false; }
void init(int*, char***) {}
bool using_mpi() { return false; }
int rank() { return 0; }
int world_size() { return 1; }
int local_rank() { return 0; }
int local_size() { return 1; }
void barrier() {}
void all_reduce(void*, int64_t, DType, ReduceOp) {}
void broadcast(void*, int64_t, DType, int) {}
int start_sum(void*, int64_t, DType) { return 0; }
void progress() {}
void wait(int) {}
bool done(int) { return true; }
void abort(int) {}

}  // namespace tapegrad::dist::transport
