// CIFAR-10 binary files: fixed 3073-byte records, no header, so every check is on the size and the labels.
#include "tapegrad/datasets/cifar.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace tapegrad::datasets {

namespace fs = std::filesystem;

ImageDataset parse_cifar10(const uint8_t* data, size_t size, const std::string& source, int64_t expected_records) {
  TG_CHECK(expected_records >= 0, "CIFAR-10 file ", source, ": expected_records ", expected_records, " must be >= 0");
  TG_CHECK(size > 0, "CIFAR-10 file ", source, ": empty (0 bytes), expected records of ", kCifarRecordBytes,
           " bytes (1 label byte + 3072 pixel bytes)");
  TG_CHECK(size % kCifarRecordBytes == 0, "CIFAR-10 file ", source, ": ", size, " bytes is not a multiple of the ",
           kCifarRecordBytes, "-byte record (1 label byte + 3072 pixel bytes): ", size / kCifarRecordBytes,
           " records and ", size % kCifarRecordBytes, " bytes left over; truncated, or not a CIFAR-10 binary file?");
  const auto n = static_cast<int64_t>(size / kCifarRecordBytes);
  TG_CHECK(expected_records == 0 || n == expected_records, "CIFAR-10 file ", source, ": ", n, " records (", size,
           " bytes), expected ", expected_records, " (", expected_records * kCifarRecordBytes, " bytes)");
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t label = data[i * kCifarRecordBytes];
    TG_CHECK(label < kCifarClasses, "CIFAR-10 file ", source, ": label out of range: record ", i, " (byte offset ",
             i * kCifarRecordBytes, ") has label ", int(label), ", expected 0..", kCifarClasses - 1);
  }

  ImageDataset ds;
  ds.name = source;
  ds.channels = kCifarChannels;
  ds.rows = ds.cols = kCifarSide;
  ds.num_classes = kCifarClasses;
  ds.images = empty({n, kCifarPixels}, DType::F32);
  ds.labels = empty({n}, DType::I64);
  float* x = ds.images.data<float>();
  int64_t* y = ds.labels.data<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* record = data + i * kCifarRecordBytes;
    y[i] = record[0];
    for (int64_t k = 0; k < kCifarPixels; ++k) x[i * kCifarPixels + k] = static_cast<float>(record[1 + k]) / 255.0f;
  }
  return ds;
}

ImageDataset read_cifar10_file(const std::string& path, int64_t expected_records) {
  std::error_code ec;
  TG_CHECK(fs::exists(path, ec), "CIFAR-10 file ", path, ": missing (no such file)");
  TG_CHECK(fs::is_regular_file(path, ec), "CIFAR-10 file ", path, ": not a regular file");
  const uintmax_t size = fs::file_size(path, ec);
  TG_CHECK(!ec, "CIFAR-10 file ", path, ": cannot read its size: ", ec.message());
  // The size says everything about the layout: check it before reading (a 10 GB wrong file is not read).
  if (size == 0 || size % kCifarRecordBytes != 0 ||
      (expected_records > 0 && size != static_cast<uintmax_t>(expected_records * kCifarRecordBytes))) {
    parse_cifar10(nullptr, static_cast<size_t>(size), path, expected_records);  // throws the message
  }
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  std::ifstream in(path, std::ios::binary);
  TG_CHECK(in.good(), "CIFAR-10 file ", path, ": cannot open it for reading");
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  TG_CHECK(in.gcount() == static_cast<std::streamsize>(bytes.size()), "CIFAR-10 file ", path, ": read ",
           in.gcount(), " of its ", size, " bytes");
  return parse_cifar10(bytes.data(), bytes.size(), path, expected_records);
}

std::vector<std::string> cifar10_files(bool train) {
  if (!train) return {"test_batch.bin"};
  std::vector<std::string> names;
  for (int i = 1; i <= 5; ++i) names.push_back("data_batch_" + std::to_string(i) + ".bin");
  return names;
}

std::vector<std::string> missing_cifar10_files(const std::string& dir) {
  std::vector<std::string> missing;
  std::error_code ec;
  for (bool train : {true, false})
    for (const std::string& f : cifar10_files(train))
      if (!fs::is_regular_file(fs::path(dir) / f, ec)) missing.push_back(f);
  return missing;
}

std::string find_cifar10_dir(const std::string& dir) {
  if (dir.empty()) return "";
  for (const fs::path& p : {fs::path(dir), fs::path(dir) / "cifar-10-batches-bin"})
    if (missing_cifar10_files(p.string()).empty()) return p.string();
  return "";
}

ImageDataset concat_datasets(const std::vector<ImageDataset>& parts, const std::string& name) {
  TG_CHECK(!parts.empty(), "concat_datasets: no datasets for ", name);
  const ImageDataset& first = parts.front();
  std::vector<Tensor> images, labels;
  for (const ImageDataset& p : parts) {
    TG_CHECK(p.channels == first.channels && p.rows == first.rows && p.cols == first.cols &&
                 p.num_classes == first.num_classes,
             "concat_datasets: ", p.name, " holds ", p.channels, "x", p.rows, "x", p.cols, " images of ", p.num_classes,
             " classes, ", first.name, " ", first.channels, "x", first.rows, "x", first.cols, " of ",
             first.num_classes);
    images.push_back(p.images);
    labels.push_back(p.labels);
  }
  ImageDataset out = first;
  out.name = name;
  out.images = parts.size() == 1 ? first.images.clone() : concat(images, 0);
  out.labels = parts.size() == 1 ? first.labels.clone() : concat(labels, 0);
  return out;
}

ImageDataset load_cifar10(const std::string& dir, bool train, int64_t records_per_file) {
  std::error_code ec;
  TG_CHECK(fs::is_directory(dir, ec), "dataset cifar10: data directory ", dir, " does not exist");
  std::string root = find_cifar10_dir(dir);
  if (root.empty()) {  // name what is missing from where the split's files are expected
    const fs::path nested = fs::path(dir) / "cifar-10-batches-bin";
    root = fs::is_directory(nested, ec) ? nested.string() : dir;
    for (const std::string& f : cifar10_files(train))
      TG_CHECK(fs::is_regular_file(fs::path(root) / f, ec), "dataset cifar10: missing file ",
               (fs::path(root) / f).string(), " (CIFAR-10 binary version: data_batch_1.bin .. data_batch_5.bin and "
               "test_batch.bin, in ", dir, " or its cifar-10-batches-bin/)");
  }
  std::vector<ImageDataset> parts;
  for (const std::string& f : cifar10_files(train))
    parts.push_back(read_cifar10_file((fs::path(root) / f).string(), records_per_file));
  return concat_datasets(parts, train ? "cifar10/train" : "cifar10/test");
}

}  // namespace tapegrad::datasets
