// IDX files (MNIST, Fashion-MNIST) through zlib: gzread reads gzip and plain files alike, so one path
// serves both. Elements are read in chunks, so a header that claims more than the file holds is reported
// as truncated instead of allocating whatever it claims.
#include "tapegrad/datasets/idx.hpp"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <filesystem>
#include <memory>

namespace tapegrad::datasets {

namespace fs = std::filesystem;

namespace {

struct GzCloser {
  void operator()(gzFile f) const { if (f) gzclose(f); }
};
using GzFile = std::unique_ptr<gzFile_s, GzCloser>;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

const char* magic_meaning(uint32_t magic) {
  if (magic == kIdxImagesMagic) return "u8 images [N, rows, cols]";
  if (magic == kIdxLabelsMagic) return "u8 labels [N]";
  return "IDX u8 data";
}

// Reads up to n bytes; returns how many were read. Throws on a zlib error (corrupt gzip stream).
size_t read_bytes(gzFile f, const std::string& path, uint8_t* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 24));
    const int r = gzread(f, out + got, chunk);
    if (r < 0) {
      int errnum = 0;
      const char* msg = gzerror(f, &errnum);
      TG_FAIL("IDX file ", path, ": truncated or corrupt gzip stream: ", (msg ? msg : "zlib error"));
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

uint32_t big_endian_u32(const uint8_t* b) {
  return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
}

}  // namespace

namespace {

// The IDX format over any source of bytes: read(out, n) returns how many of n bytes it gave (0 at the end).
IdxArray parse_idx_from(const std::function<size_t(uint8_t*, size_t)>& read, const std::string& path,
                        uint32_t expected_magic) {
  uint8_t header[4];
  const size_t got_magic = read(header, 4);
  TG_CHECK(got_magic == 4, "IDX file ", path, ": truncated: ", got_magic, " bytes, shorter than the 4-byte magic");
  const uint32_t magic = big_endian_u32(header);
  TG_CHECK(magic == expected_magic, "IDX file ", path, ": wrong magic number ", hex32(magic), ", expected ",
           hex32(expected_magic), " (", magic_meaning(expected_magic), ")",
           (magic == kIdxImagesMagic || magic == kIdxLabelsMagic ? "; images and labels swapped?" : ""));

  IdxArray out;
  const int ndims = static_cast<int>(magic & 0xFF);
  uint64_t count = 1;
  for (int d = 0; d < ndims; ++d) {
    uint8_t b[4];
    const size_t got = read(b, 4);
    TG_CHECK(got == 4, "IDX file ", path, ": truncated in the header (size of dim ", d, " of ", ndims, ")");
    const uint32_t size = big_endian_u32(b);
    out.dims.push_back(size);
    count *= size;
    TG_CHECK(count <= (uint64_t{1} << 36), "IDX file ", path, ": header claims an absurd size ",
             to_string(out.dims), "...");
  }
  TG_CHECK(ndims == 0 || out.dims[0] > 0, "IDX file ", path, ": empty: the header says ", to_string(out.dims),
           " (no samples)");
  for (int d = 1; d < ndims; ++d)
    TG_CHECK(out.dims[d] > 0, "IDX file ", path, ": dim ", d, " has size 0 in ", to_string(out.dims));

  // Grow as the bytes arrive: a lying header runs out of file, not of memory.
  const size_t chunk = size_t{1} << 16;  // a lying header costs 64 KiB, not its claim
  while (out.data.size() < count) {
    const size_t want = std::min<size_t>(count - out.data.size(), chunk);
    const size_t old = out.data.size();
    out.data.resize(old + want);
    const size_t got = read(out.data.data() + old, want);
    if (got < want) {
      TG_FAIL("IDX file ", path, ": truncated: the header says ", to_string(out.dims), " = ", count,
              " bytes of data, the file holds ", old + got);
    }
  }
  uint8_t extra;
  TG_CHECK(read(&extra, 1) == 0, "IDX file ", path, ": trailing bytes after the ", count,
           " bytes of data the header ", to_string(out.dims), " announces");
  return out;
}

}  // namespace

IdxArray read_idx(const std::string& path, uint32_t expected_magic) {
  std::error_code ec;
  TG_CHECK(fs::exists(path, ec), "IDX file ", path, ": missing (no such file)");
  TG_CHECK(fs::is_regular_file(path, ec), "IDX file ", path, ": not a regular file");
  GzFile f(gzopen(path.c_str(), "rb"));
  TG_CHECK(f != nullptr, "IDX file ", path, ": cannot open it for reading");
  return parse_idx_from([&](uint8_t* out, size_t n) { return read_bytes(f.get(), path, out, n); }, path,
                        expected_magic);
}

IdxArray parse_idx(const uint8_t* data, size_t size, uint32_t expected_magic, const std::string& name) {
  size_t at = 0;
  return parse_idx_from(
      [&](uint8_t* out, size_t n) {
        const size_t k = std::min(n, size - at);
        if (k) std::memcpy(out, data + at, k);
        at += k;
        return k;
      },
      name, expected_magic);
}

void write_idx(const std::string& path, uint32_t magic, const std::vector<int64_t>& dims,
               const std::vector<uint8_t>& data) {
  const bool gz = path.size() >= 3 && path.compare(path.size() - 3, 3, ".gz") == 0;
  GzFile f(gzopen(path.c_str(), gz ? "wb6" : "wbT"));  // "T": plain, no compression
  TG_CHECK(f != nullptr, "write_idx: cannot open ", path, " for writing");
  std::vector<uint8_t> bytes;
  auto put32 = [&](uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<uint8_t>(v >> s));
  };
  put32(magic);
  for (int64_t d : dims) put32(static_cast<uint32_t>(d));
  bytes.insert(bytes.end(), data.begin(), data.end());
  size_t done = 0;
  while (done < bytes.size()) {
    const unsigned n = static_cast<unsigned>(std::min<size_t>(bytes.size() - done, size_t{1} << 24));
    TG_CHECK(gzwrite(f.get(), bytes.data() + done, n) == static_cast<int>(n), "write_idx: cannot write ", path);
    done += n;
  }
  TG_CHECK(gzclose(f.release()) == Z_OK, "write_idx: cannot finish writing ", path);
}

ImageDataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                           const std::string& name, int64_t num_classes) {
  TG_CHECK(num_classes > 0 && num_classes <= 256, "load_idx_pair: num_classes ", num_classes, " not in [1, 256]");
  const IdxArray images = read_idx(images_path, kIdxImagesMagic);
  const IdxArray labels = read_idx(labels_path, kIdxLabelsMagic);
  TG_CHECK(images.dims[0] == labels.dims[0], "dataset ", name, ": images and labels of different counts: ",
           images_path, " holds ", images.dims[0], " images, ", labels_path, " holds ", labels.dims[0], " labels");

  const int64_t n = images.dims[0], rows = images.dims[1], cols = images.dims[2], pixels = rows * cols;
  for (int64_t i = 0; i < n; ++i) {
    TG_CHECK(labels.data[i] < num_classes, "IDX file ", labels_path, ": label out of range: sample ", i,
             " has label ", int(labels.data[i]), ", expected 0..", num_classes - 1);
  }

  ImageDataset ds;
  ds.name = name;
  ds.rows = rows;
  ds.cols = cols;
  ds.num_classes = num_classes;
  ds.images = empty({n, pixels}, DType::F32);
  ds.labels = empty({n}, DType::I64);
  float* x = ds.images.data<float>();
  int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < n * pixels; ++i) x[i] = static_cast<float>(images.data[i]) / 255.0f;
  for (int64_t i = 0; i < n; ++i) y[i] = labels.data[i];
  return ds;
}

std::string find_idx_file(const std::string& dir, const std::string& base) {
  std::error_code ec;
  for (const char* ext : {"", ".gz"}) {
    const fs::path p = fs::path(dir) / (base + ext);
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

static const char* kMnistFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                    "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

std::vector<std::string> missing_mnist_files(const std::string& dir) {
  std::vector<std::string> missing;
  for (const char* base : kMnistFiles)
    if (find_idx_file(dir, base).empty()) missing.push_back(std::string(base) + "[.gz]");
  return missing;
}

ImageDataset load_mnist(const std::string& dir, bool train, const std::string& name) {
  std::error_code ec;
  TG_CHECK(fs::is_directory(dir, ec), "dataset ", name, ": data directory ", dir, " does not exist");
  const std::string split = train ? "train" : "t10k";
  auto locate = [&](const std::string& base) {
    const std::string p = find_idx_file(dir, base);
    TG_CHECK(!p.empty(), "dataset ", name, ": missing file ", (fs::path(dir) / base).string(), " (or ", base,
             ".gz) in ", dir);
    return p;
  };
  const std::string images = locate(split + "-images-idx3-ubyte");
  const std::string labels = locate(split + "-labels-idx1-ubyte");
  return load_idx_pair(images, labels, name + "/" + (train ? "train" : "test"), 10);
}

ImageDataset head(const ImageDataset& ds, int64_t n) {
  TG_CHECK(n >= 0 && n <= ds.size(), "head: ", n, " samples asked of dataset ", ds.name, " which has ", ds.size());
  ImageDataset out = ds;
  out.images = ds.images.slice(0, 0, n).clone();
  out.labels = ds.labels.slice(0, 0, n).clone();
  return out;
}

std::vector<PixelStats> channel_stats(const ImageDataset& ds) {
  const int64_t n = ds.size(), plane = ds.rows * ds.cols;
  TG_CHECK(n > 0 && plane > 0, "channel_stats: dataset ", ds.name, " is empty");
  TG_CHECK(ds.images.numel() == n * ds.channels * plane, "channel_stats: dataset ", ds.name, " holds images ",
           ds.images.shape(), ", expected [", n, ", ", ds.channels, "*", ds.rows, "*", ds.cols, "]");
  const float* x = ds.images.data<float>();
  std::vector<PixelStats> out(static_cast<size_t>(ds.channels));
  for (int64_t c = 0; c < ds.channels; ++c) {
    double sum = 0.0, sq = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* p = x + (i * ds.channels + c) * plane;
      for (int64_t k = 0; k < plane; ++k) {
        sum += p[k];
        sq += double(p[k]) * p[k];
      }
    }
    const double count = static_cast<double>(n * plane);
    PixelStats& s = out[static_cast<size_t>(c)];
    s.mean = sum / count;
    s.std = std::sqrt(std::max(0.0, sq / count - s.mean * s.mean));
    if (s.std == 0.0) s.std = 1.0;
  }
  return out;
}

ImageDataset pad_images(const ImageDataset& ds, int64_t pad) {
  TG_CHECK(pad >= 0, "pad_images: pad ", pad, " must be >= 0");
  const int64_t n = ds.size(), c = ds.channels, h = ds.rows, w = ds.cols, ph = h + 2 * pad, pw = w + 2 * pad;
  TG_CHECK(ds.images.numel() == n * c * h * w, "pad_images: dataset ", ds.name, " holds images ", ds.images.shape(),
           ", expected [", n, ", ", c, "*", h, "*", w, "]");
  ImageDataset out = ds;
  out.rows = ph;
  out.cols = pw;
  out.images = zeros({n, c * ph * pw}, DType::F32);
  const float* src = ds.images.data<float>();
  float* dst = out.images.data<float>();
  for (int64_t plane = 0; plane < n * c; ++plane)  // plane = image * c + channel
    for (int64_t r = 0; r < h; ++r)
      std::copy_n(src + (plane * h + r) * w, w, dst + (plane * ph + r + pad) * pw + pad);
  return out;
}

PixelStats pixel_stats(const ImageDataset& ds) {
  const float* x = ds.images.data<float>();
  const int64_t n = ds.images.numel();
  TG_CHECK(n > 0, "pixel_stats: dataset ", ds.name, " is empty");
  double sum = 0.0, sq = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += x[i];
    sq += double(x[i]) * x[i];
  }
  PixelStats s;
  s.mean = sum / n;
  s.std = std::sqrt(std::max(0.0, sq / n - s.mean * s.mean));
  if (s.std == 0.0) s.std = 1.0;
  return s;
}

}  // namespace tapegrad::datasets
