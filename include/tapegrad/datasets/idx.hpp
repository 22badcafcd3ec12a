// The IDX format of MNIST and Fashion-MNIST, read raw or gzip-compressed (zlib reads both the same way).
//
// A file is a big-endian header — the magic 0x0000TTDD (TT: element type, 0x08 = u8; DD: number of dims),
// then DD sizes as u32 — followed by the elements in row-major order. Images are 0x00000803 [N, rows, cols],
// labels 0x00000801 [N]. Every check names the file and says what is wrong: missing, truncated, wrong
// magic, trailing bytes, images and labels of different counts, a label outside [0, num_classes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad::datasets {

inline constexpr uint32_t kIdxImagesMagic = 0x00000803;  // u8, 3 dims
inline constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // u8, 1 dim

// One IDX file of u8 elements: its sizes and its bytes.
struct IdxArray {
  std::vector<int64_t> dims;
  std::vector<uint8_t> data;  // prod(dims) bytes
};

// Reads `path` (raw, or gzip whatever its name) and checks the magic is `expected_magic`, that the file
// holds exactly prod(dims) elements, no fewer (truncated) and no more (trailing bytes).
IdxArray read_idx(const std::string& path, uint32_t expected_magic);
// The same checks on IDX bytes in memory (uncompressed); `name` stands for the file in messages.
IdxArray parse_idx(const uint8_t* data, size_t size, uint32_t expected_magic, const std::string& name);

// Writes an IDX file of u8 elements (gzip-compressed when the name ends in ".gz"). For tests and tools.
void write_idx(const std::string& path, uint32_t magic, const std::vector<int64_t>& dims,
               const std::vector<uint8_t>& data);

// Images with their labels. A row of `images` is one image, channel-major: channel c, row r, column x is
// element (c * rows + r) * cols + x (MNIST: one channel; CIFAR-10: R, G, B planes).
struct ImageDataset {
  Tensor images;  // F32 [N, channels*rows*cols], pixel / 255 in [0, 1]
  Tensor labels;  // I64 [N], in [0, num_classes)
  int64_t channels = 1, rows = 0, cols = 0;
  int64_t num_classes = 10;
  std::string name;  // e.g. "mnist/train"
  int64_t size() const { return labels.defined() ? labels.size(0) : 0; }
};

// An images file and a labels file, checked against each other (same count, labels in range).
ImageDataset load_idx_pair(const std::string& images_path, const std::string& labels_path,
                           const std::string& name, int64_t num_classes = 10);

// The standard file names of the MNIST family in a directory: "train" or "t10k", then "images-idx3-ubyte"
// or "labels-idx1-ubyte", each raw or with ".gz". Returns the path that exists (raw preferred), or "".
std::string find_idx_file(const std::string& dir, const std::string& base);
// The standard files missing from `dir` (empty when all four are there), for messages.
std::vector<std::string> missing_mnist_files(const std::string& dir);

// The training (60000) or test (10000) split of MNIST or Fashion-MNIST from `dir`. `name` labels the
// dataset in messages and results ("mnist", "fashion-mnist").
ImageDataset load_mnist(const std::string& dir, bool train, const std::string& name = "mnist");

// The first n samples of a dataset (a copy), n <= size(). For quick runs and smoke tests.
ImageDataset head(const ImageDataset& ds, int64_t n);

// Mean and standard deviation of every pixel of the dataset (for normalisation).
struct PixelStats { double mean = 0.0, std = 1.0; };
PixelStats pixel_stats(const ImageDataset& ds);
// The same per channel: element c is channel c's (a std of 0 becomes 1).
std::vector<PixelStats> channel_stats(const ImageDataset& ds);

// The images framed by `pad` zero pixels on every side (rows + 2 pad, cols + 2 pad): Fashion-MNIST's 28x28
// as CIFAR-10's 32x32 with pad 2. A copy; pad >= 0.
ImageDataset pad_images(const ImageDataset& ds, int64_t pad);

}  // namespace tapegrad::datasets
