// Winograd's minimal filtering F(4x4, 3x3) for 3x3 stride-1 f32 convolutions (Lavin and Gray 2016; the transforms
// are in winograd.inc, compiled per level). Each 4x4 block of outputs ("tile") reads a 6x6 block of the input; in
// the transformed domain the convolution is 36 independent products, one per point xi of the 6x6 grid:
//   M[xi] [K, tiles] = U[xi] [K, C] V[xi] [C, tiles],   U = G w G^T (filters), V = B^T d B (input tiles),
// and y = A^T M A per tile: 36 multiply-adds per 16 outputs and channel pair instead of 144 (4x fewer).
//
// U is computed and packed for sgemm's packed-A kernel once per call (a filter is reused by every tile). The tiles
// of the batch are numbered sample by sample, row by row, and cut into chunks spread over the threads; each
// thread transforms its chunk's input tiles into V [36][C, ld], runs the 36 products into M [36][K, ld] and
// transforms them back into y (partial tiles at the right and bottom edges write only their valid outputs).
// The backward data pass of a stride-1 convolution is a convolution (conv.cpp), and runs here too.
//
// The weight gradient is the adjoint: with M' = A gY A^T (gy's 4x4 tile to 6x6) and V = B^T d B as forward,
//   dU[xi] [K, C] = sum over tiles of M'[xi] [K, tiles] V[xi]^T [tiles, C],   gw = G^T dU G.
// Chunk by chunk of tiles, all threads transform (V with 16 channels in the lanes, so that V[xi] [tiles, C] is
// the products' B read in place; M' with 16 tiles in the lanes, packed as their A), then each thread takes whole
// points xi and adds its chunk's product into dU[xi]: no per-thread copy of dU, the same sums for any thread
// count. 36 products of depth `tiles` in place of one of depth 9 C: 4x fewer multiply-adds again.
#include "winograd.hpp"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "isa.hpp"
#include "parallel.hpp"
#include "sgemm.hpp"
#include "tapegrad/error.hpp"
#include "tapegrad/tensor.hpp"

namespace tapegrad::cpu {

namespace {

constexpr int64_t kTile = 4, kPoints = 36, kLanes = 16;

// The algorithm in force (ConvAlgorithm as an int), -1 until TG_CONV is read or set_conv_algorithm is called.
std::atomic<int> g_algorithm{-1};

ConvAlgorithm from_env() {
  const char* env = std::getenv("TG_CONV");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return ConvAlgorithm::Auto;
  if (v == "direct") return ConvAlgorithm::Direct;
  if (v == "winograd") return ConvAlgorithm::Winograd;
  TG_FAIL("TG_CONV=", v, ": unknown convolution algorithm (expected auto, direct or winograd)");
}

// Tiles per chunk: V and M of a chunk take about 2 MiB (one core's L2 on the machine measured), at least 32
// tiles (the micro-kernel's columns) and at most 256, a multiple of 16 (the transforms' lanes); fewer when
// that leaves a thread without a chunk (ResNet-34's 512 channels on 4x4 planes: 32 tiles at batch 32).
int64_t chunk_tiles(const backend::Window2d& g, int64_t tiles) {
  const int64_t per_tile = kPoints * (g.C + g.K) * static_cast<int64_t>(sizeof(float));
  const int64_t fit = std::clamp<int64_t>((2 << 20) / per_tile / kLanes * kLanes, 32, 256);
  const int64_t threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int64_t share = ((tiles + threads - 1) / threads + kLanes - 1) / kLanes * kLanes;
  return std::min(fit, std::max(kLanes, share));
}

// Tiles per chunk of the weight gradient: its V and M of all 36 points take about 8 MiB (both cores' L2 and
// some L3 on the machine measured: each product reads what another thread may have transformed), at least 64
// tiles (the products' depth: each chunk reads and writes dU once) and a multiple of the lanes. Not the thread
// count: the chunks, and so the sums, are the same for any.
int64_t weight_chunk_tiles(const backend::Window2d& g, int64_t tiles) {
  const int64_t ldc = (g.C + kLanes - 1) / kLanes * kLanes;
  const int64_t per_tile = kPoints * (ldc + g.K) * static_cast<int64_t>(sizeof(float));
  const int64_t fit = std::max<int64_t>(64, (8 << 20) / per_tile / kLanes * kLanes);
  return std::min(fit, (tiles + kLanes - 1) / kLanes * kLanes);
}

// The row stride of a chunk's buffers: a multiple of the lanes, not of 128 bytes (see conv.cpp's row_stride).
int64_t lane_stride(int64_t n) {
  const int64_t ld = (n + kLanes - 1) / kLanes * kLanes;
  return ld % 32 == 0 ? ld + 16 : ld;
}

template <int slot>
float* scratch(int64_t n) {
  thread_local std::vector<float> buf;
  if (static_cast<int64_t>(buf.size()) < n) buf.resize(static_cast<size_t>(n));
  return buf.data();
}

// The 36 filter matrices U[xi] [K, C] = (G w[k, c] G^T)[xi], packed for sgemm's packed-A kernel, panel stride
// `stride` floats apart.
void transform_filters(const float* w, const backend::Window2d& g, float* packed, int64_t stride) {
  const isa::Table& t = isa::table();
  const int64_t kc = g.K * g.C, groups = (kc + kLanes - 1) / kLanes;
  float* u = scratch<1>(kPoints * kc);  // [36][K, C]
  parallel_for(groups, [&](int64_t b, int64_t e) {
    float in[9 * kLanes], out[kPoints * kLanes];
    for (int64_t grp = b; grp < e; ++grp) {
      const int64_t i0 = grp * kLanes, n = std::min(kLanes, kc - i0);
      for (int64_t l = 0; l < kLanes; ++l)
        for (int64_t i = 0; i < 9; ++i) in[i * kLanes + l] = l < n ? w[(i0 + l) * 9 + i] : 0.0f;
      t.winograd.filter(in, out, kLanes);
      for (int64_t xi = 0; xi < kPoints; ++xi)
        std::memcpy(u + xi * kc + i0, out + xi * kLanes, static_cast<size_t>(n) * sizeof(float));
    }
  }, 64);
#pragma omp parallel for schedule(static) if (!omp_in_parallel())
  for (int64_t xi = 0; xi < kPoints; ++xi) t.packed.pack(u + xi * kc, g.C, 1, g.K, g.C, packed + xi * stride);
}

// Where tile i of the batch lies: the offset of its sample's first plane in x (or y), its first row and column
// in the input (the output's are those plus the padding).
struct TilePos {
  int64_t sample, h0, w0;
};

// Whether TG_CONV (or set_conv_algorithm) decides for a geometry: false where Winograd cannot run it (not 3x3
// stride 1, empty, a level without the transforms), Direct or Winograd forced; nullopt for Auto.
std::optional<bool> forced(const backend::Window2d& g) {
  if (g.R != 3 || g.S != 3 || g.stride_h != 1 || g.stride_w != 1) return false;
  if (g.N * g.C * g.K * g.P * g.Q == 0 || !sgemm::available() || !isa::table().winograd.input) return false;
  switch (conv_algorithm()) {
    case ConvAlgorithm::Direct: return false;
    case ConvAlgorithm::Winograd: return true;
    case ConvAlgorithm::Auto: break;
  }
  return std::nullopt;
}

}  // namespace

bool use_winograd(const backend::Window2d& g) {
  if (const std::optional<bool> f = forced(g)) return *f;
  // Measured (bench_cnn --layers, 2 threads, AVX-512 and AVX2, shared machine): forward 1.3x to 2.8x faster on
  // ResNet-34's 64 to 256 channels on 32x32 to 8x8 planes, and on ResNet-20's 64 channels on 8x8; 0.7x to 1x on
  // its 16 and 32 channels (the transforms outweigh the short products) and on 512 channels on 4x4 planes (32
  // tiles at batch 32 do not pay for transforming and packing 36 filter matrices of 512 x 512). DenseNet-121's
  // 128 -> 32 (and its data gradient, 32 -> 128): forward 1.3x to 1.9x faster on 32x32 to 8x8 planes.
  return std::min(g.C, g.K) >= 32 && std::max(g.C, g.K) >= 64 && g.P >= 8 && g.Q >= 8;
}

bool use_winograd_weight(const backend::Window2d& g) {
  if (const std::optional<bool> f = forced(g)) return *f;
  // Measured (the weight gradient alone, batch 32, 2 threads, AVX-512 and AVX2, shared machine): 1.3x to 1.6x
  // faster on 64 and 128 channels on 32x32 to 8x8 planes, 2-3x on 256 and 512 channels on 8x8 and 4x4 (the
  // direct one's products there are short), 1.3x to 2.6x on DenseNet-121's 128 to 32 channels on 32x32 to
  // 4x4; 0.6x to 1x on ResNet-20's 16 and 32 channels.
  return g.C >= 64 && g.K >= 32 && g.P >= 4 && g.Q >= 4;
}

void winograd_forward(const float* x, const float* w, const float* bias, const backend::Window2d& g, float* y) {
  const isa::Table& t = isa::table();
  const int64_t th = (g.P + kTile - 1) / kTile, tw = (g.Q + kTile - 1) / kTile, per_sample = th * tw;
  const int64_t tiles = g.N * per_sample, hw = g.H * g.W, pq = g.P * g.Q;
  const int64_t mr = t.packed.mr, stride = (g.K + mr - 1) / mr * mr * g.C;
  float* packed = scratch<0>(kPoints * stride);
  transform_filters(w, g, packed, stride);

  const int64_t nt = chunk_tiles(g, tiles), chunks = (tiles + nt - 1) / nt;
#pragma omp parallel for schedule(static) if (chunks > 1 && !omp_in_parallel())
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t t0 = chunk * nt, n = std::min(nt, tiles - t0), ld = lane_stride(n);
    float* V = scratch<2>(kPoints * g.C * ld);  // [36][C, ld]
    float* M = scratch<3>(kPoints * g.K * ld);  // [36][K, ld]
    TilePos pos[256];
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = (t0 + i) / per_sample, r = (t0 + i) % per_sample;
      pos[i] = {s, r / tw * kTile - g.pad_h, r % tw * kTile - g.pad_w};
    }
    // V[xi][c, i] = (B^T d B)[xi] of input tile i of channel c; tiles past n are zero.
    float d[kPoints * kLanes];
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t l0 = 0; l0 < n; l0 += kLanes) {
        for (int64_t l = 0; l < kLanes; ++l) {
          if (l0 + l >= n) {
            for (int64_t i = 0; i < kPoints; ++i) d[i * kLanes + l] = 0.0f;
            continue;
          }
          const TilePos& p = pos[l0 + l];
          const float* plane = x + (p.sample * g.C + c) * hw;
          if (p.h0 >= 0 && p.h0 + 6 <= g.H && p.w0 >= 0 && p.w0 + 6 <= g.W) {
            for (int64_t r = 0; r < 6; ++r)
              for (int64_t s = 0; s < 6; ++s) d[(r * 6 + s) * kLanes + l] = plane[(p.h0 + r) * g.W + p.w0 + s];
            continue;
          }
          for (int64_t r = 0; r < 6; ++r)
            for (int64_t s = 0; s < 6; ++s) {
              const int64_t h = p.h0 + r, ww = p.w0 + s;
              d[(r * 6 + s) * kLanes + l] = h >= 0 && h < g.H && ww >= 0 && ww < g.W ? plane[h * g.W + ww] : 0.0f;
            }
        }
        t.winograd.input(d, V + c * ld + l0, g.C * ld);
      }
    // M[xi] = U[xi] V[xi]
    for (int64_t xi = 0; xi < kPoints; ++xi)
      sgemm::gemm(sgemm::PackedA{packed + xi * stride, g.K, g.C}, V + xi * g.C * ld, ld, n, M + xi * g.K * ld, ld,
                  nullptr);
    // y = A^T M A (+ bias), the outputs of each tile inside P x Q
    float o[16 * kLanes];
    for (int64_t k = 0; k < g.K; ++k) {
      const float b = bias ? bias[k] : 0.0f;
      for (int64_t l0 = 0; l0 < n; l0 += kLanes) {
        t.winograd.output(M + k * ld + l0, g.K * ld, o);
        for (int64_t l = 0; l < std::min(kLanes, n - l0); ++l) {
          const TilePos& p = pos[l0 + l];
          const int64_t p0 = p.h0 + g.pad_h, q0 = p.w0 + g.pad_w;
          float* plane = y + (p.sample * g.K + k) * pq;
          const int64_t rows = std::min(kTile, g.P - p0), cols = std::min(kTile, g.Q - q0);
          for (int64_t a = 0; a < rows; ++a)
            for (int64_t c = 0; c < cols; ++c) plane[(p0 + a) * g.Q + q0 + c] = o[(a * kTile + c) * kLanes + l] + b;
        }
      }
    }
  }
}

void winograd_backward_weight(const float* gy, const float* x, const backend::Window2d& g, float* gw) {
  const isa::Table& t = isa::table();
  const int64_t th = (g.P + kTile - 1) / kTile, tw = (g.Q + kTile - 1) / kTile, per_sample = th * tw;
  const int64_t tiles = g.N * per_sample, hw = g.H * g.W, pq = g.P * g.Q, kc = g.K * g.C;
  const int64_t ldc = (g.C + kLanes - 1) / kLanes * kLanes, groups = ldc / kLanes;
  const int64_t nt = weight_chunk_tiles(g, tiles), ld = lane_stride(nt);
  float* dU = scratch<4>(kPoints * kc + kLanes);  // [36][K, C] (+ the last lanes' overhang)
  float* V = scratch<5>(kPoints * nt * ldc);      // [36][tiles, ldc]: the products' B, channels along rows
  float* M = scratch<6>(kPoints * g.K * ld);      // [36][K, ld]: their A, tiles along rows
  std::vector<TilePos> pos(static_cast<size_t>(nt));  // of the chunk's tiles
#pragma omp parallel if (!omp_in_parallel())
  for (int64_t t0 = 0; t0 < tiles; t0 += nt) {
    const int64_t n = std::min(nt, tiles - t0), vtasks = n * groups, mtasks = g.K * ((n + kLanes - 1) / kLanes);
#pragma omp for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t s = (t0 + i) / per_sample, r = (t0 + i) % per_sample;
      pos[static_cast<size_t>(i)] = {s, r / tw * kTile - g.pad_h, r % tw * kTile - g.pad_w};
    }
    // V[xi][i, c] = (B^T d B)[xi] of tile i of channel c, 16 channels at once (lanes past C are zero);
    // M[xi][k, i] = (A gY A^T)[xi] of gy's tile i of output channel k (gy zero outside P x Q, tiles past n zero).
#pragma omp for schedule(dynamic, 8)
    for (int64_t task = 0; task < vtasks + mtasks; ++task) {
      float d[kPoints * kLanes];
      if (task < vtasks) {
        const int64_t i = task / groups, c0 = task % groups * kLanes;
        const TilePos& p = pos[static_cast<size_t>(i)];
        const bool inside = p.h0 >= 0 && p.h0 + 6 <= g.H && p.w0 >= 0 && p.w0 + 6 <= g.W;
        const int64_t lanes = std::min(kLanes, g.C - c0);
        const float* planes = x + (p.sample * g.C + c0) * hw;  // channel c0's
        if (inside && lanes == kLanes) {
          const float* tile = planes + p.h0 * g.W + p.w0;
          for (int64_t r = 0; r < 6; ++r)
            for (int64_t s = 0; s < 6; ++s)
              for (int64_t l = 0; l < kLanes; ++l) d[(r * 6 + s) * kLanes + l] = tile[l * hw + r * g.W + s];
        } else {
          for (int64_t r = 0; r < 6; ++r)
            for (int64_t s = 0; s < 6; ++s) {
              const int64_t h = p.h0 + r, w = p.w0 + s;
              const bool in = h >= 0 && h < g.H && w >= 0 && w < g.W;
              for (int64_t l = 0; l < kLanes; ++l)
                d[(r * 6 + s) * kLanes + l] = in && l < lanes ? planes[l * hw + h * g.W + w] : 0.0f;
            }
        }
        t.winograd.input(d, V + i * ldc + c0, nt * ldc);
      } else {
        const int64_t k = (task - vtasks) % g.K, l0 = (task - vtasks) / g.K * kLanes;
        for (int64_t l = 0; l < kLanes; ++l) {
          if (l0 + l >= n) {
            for (int64_t j = 0; j < kTile * kTile; ++j) d[j * kLanes + l] = 0.0f;
            continue;
          }
          const TilePos& p = pos[static_cast<size_t>(l0 + l)];
          const int64_t p0 = p.h0 + g.pad_h, q0 = p.w0 + g.pad_w;
          const float* plane = gy + (p.sample * g.K + k) * pq;
          for (int64_t a = 0; a < kTile; ++a)
            for (int64_t b = 0; b < kTile; ++b)
              d[(a * kTile + b) * kLanes + l] = p0 + a < g.P && q0 + b < g.Q ? plane[(p0 + a) * g.Q + q0 + b] : 0.0f;
        }
        t.winograd.output_grad(d, M + k * ld + l0, g.K * ld);
      }
    }
    // dU[xi] (+)= M[xi] V[xi], one point per task: each dU[xi] sums its chunks in order whatever the threads.
#pragma omp for schedule(dynamic, 1)
    for (int64_t xi = 0; xi < kPoints; ++xi)
      sgemm::gemm(sgemm::pack_a(M + xi * g.K * ld, ld, 1, g.K, n), V + xi * nt * ldc, ldc, g.C, dU + xi * kc, g.C,
                  nullptr, t0 > 0);
  }
  // gw[k, c] = G^T dU[., k, c] G, 16 filters at once.
  parallel_for((kc + kLanes - 1) / kLanes, [&](int64_t b, int64_t e) {
    float out[9 * kLanes];
    for (int64_t grp = b; grp < e; ++grp) {
      const int64_t i0 = grp * kLanes, n = std::min(kLanes, kc - i0);
      t.winograd.filter_grad(dU + i0, kc, out);
      for (int64_t l = 0; l < n; ++l)
        for (int64_t i = 0; i < 9; ++i) gw[(i0 + l) * 9 + i] = out[i * kLanes + l];
    }
  }, 64);
}

}  // namespace tapegrad::cpu

namespace tapegrad {
void set_conv_algorithm(ConvAlgorithm a) { cpu::g_algorithm = static_cast<int>(a); }
ConvAlgorithm conv_algorithm() {
  int a = cpu::g_algorithm.load();
  if (a < 0) {
    int unset = -1;
    cpu::g_algorithm.compare_exchange_strong(unset, static_cast<int>(cpu::from_env()));  // unless set meanwhile
    a = cpu::g_algorithm.load();
  }
  return static_cast<ConvAlgorithm>(a);
}
}  // namespace tapegrad
