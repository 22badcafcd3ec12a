// The Open MPI transport. Only the thread that called init() talks to MPI (MPI_THREAD_FUNNELED); OpenMP
// threads never do. A process that was not launched by mpirun (no launcher in its environment) never calls
// MPI_Init: it is a world of one, and programs run unchanged without mpirun.
#define OMPI_SKIP_MPICXX 1  // the C API only (the C++ bindings are deprecated and warn)
#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <vector>

#include "transport.hpp"

namespace tapegrad::dist::transport {

namespace {

bool g_init = false, g_mpi = false;
int g_rank = 0, g_size = 1, g_local_rank = 0, g_local_size = 1;
MPI_Comm g_grads = MPI_COMM_NULL;  // DataParallel's non-blocking sums
std::vector<MPI_Request> g_requests;

bool launched_by_mpirun() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"})
    if (std::getenv(v)) return true;
  return false;
}

MPI_Datatype type_of(DType d) {
  switch (d) {
    case DType::F32: return MPI_FLOAT;
    case DType::F64: return MPI_DOUBLE;
    case DType::I64: return MPI_INT64_T;
  }
  return MPI_DATATYPE_NULL;
}

MPI_Op op_of(ReduceOp op) {
  switch (op) {
    case ReduceOp::Max: return MPI_MAX;
    case ReduceOp::Min: return MPI_MIN;
    default: return MPI_SUM;
  }
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

// MPI counts are int: longer buffers go in pieces.
template <class F>
void in_pieces(void* data, int64_t count, DType dtype, F&& f) {
  auto* p = static_cast<char*>(data);
  const int64_t max = INT_MAX / 2;
  for (int64_t done = 0; done < count; done += max) {
    const int n = static_cast<int>(std::min(max, count - done));
    f(p + done * static_cast<int64_t>(size_of(dtype)), n);
  }
}

}  // namespace

bool built_with_mpi() { return true; }

void init(int* argc, char*** argv) {
  if (g_init) return;
  g_init = true;
  if (!launched_by_mpirun()) return;
  int provided = 0, already = 0;
  MPI_Initialized(&already);
  if (!already) {
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    std::atexit(finalize_at_exit);
  }
  g_mpi = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &g_local_rank);
  MPI_Comm_size(local, &g_local_size);
  MPI_Comm_free(&local);
  MPI_Comm_dup(MPI_COMM_WORLD, &g_grads);
}

bool using_mpi() { return g_mpi; }
int rank() { return g_rank; }
int world_size() { return g_size; }
int local_rank() { return g_local_rank; }
int local_size() { return g_local_size; }

void barrier() {
  if (g_mpi) MPI_Barrier(MPI_COMM_WORLD);
}

void all_reduce(void* data, int64_t count, DType dtype, ReduceOp op) {
  if (!g_mpi) return;
  in_pieces(data, count, dtype, [&](void* p, int n) {
    MPI_Allreduce(MPI_IN_PLACE, p, n, type_of(dtype), op_of(op), MPI_COMM_WORLD);
  });
}

void broadcast(void* data, int64_t count, DType dtype, int root) {
  if (!g_mpi) return;
  in_pieces(data, count, dtype, [&](void* p, int n) { MPI_Bcast(p, n, type_of(dtype), root, MPI_COMM_WORLD); });
}

int start_sum(void* data, int64_t count, DType dtype) {
  TG_CHECK(count <= INT_MAX, "dist: a gradient bucket of ", count, " elements is too large for one MPI call");
  MPI_Request r;
  MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), type_of(dtype), MPI_SUM, g_grads, &r);
  g_requests.push_back(r);
  return static_cast<int>(g_requests.size()) - 1;
}

void progress() {
  if (g_requests.empty()) return;
  int flag = 0;
  MPI_Testall(static_cast<int>(g_requests.size()), g_requests.data(), &flag, MPI_STATUSES_IGNORE);
}

void wait(int request) {
  MPI_Wait(&g_requests.at(static_cast<size_t>(request)), MPI_STATUS_IGNORE);
  // The numbers start again once the last request of a step is done (DataParallel waits for them in order).
  if (static_cast<size_t>(request) + 1 == g_requests.size() &&
      std::all_of(g_requests.begin(), g_requests.end(), [](MPI_Request r) { return r == MPI_REQUEST_NULL; }))
    g_requests.clear();
}

bool done(int request) {
  int flag = 0;
  MPI_Test(&g_requests.at(static_cast<size_t>(request)), &flag, MPI_STATUS_IGNORE);
  return flag != 0;
}

void abort(int code) {
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

}  // namespace tapegrad::dist::transport
