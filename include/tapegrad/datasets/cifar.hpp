// CIFAR-10, the binary version (https://www.cs.toronto.edu/~kriz/cifar.html, cifar-10-batches-bin/).
//
// Six files: data_batch_1.bin .. data_batch_5.bin (the 50,000 training images) and test_batch.bin (10,000),
// 10,000 records each and no header. A record is 3073 bytes: the label (0..9), then the 32x32 image as three
// planes, red, green, blue, each row-major — the channel-major layout ImageDataset keeps, so a record's
// pixels become one row of images [N, 3*32*32] as they are, divided by 255.
//
// Every check names the file and what was expected: missing, empty, a size that is not a multiple of
// 3073 bytes, a record count other than the one expected, a label above 9.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/datasets/idx.hpp"

namespace tapegrad::datasets {

inline constexpr int64_t kCifarChannels = 3;
inline constexpr int64_t kCifarSide = 32;                                      // rows = cols
inline constexpr int64_t kCifarPixels = kCifarChannels * kCifarSide * kCifarSide;  // 3072
inline constexpr int64_t kCifarRecordBytes = 1 + kCifarPixels;                 // 3073
inline constexpr int64_t kCifarRecordsPerFile = 10000;
inline constexpr int64_t kCifarClasses = 10;

// The normalisation of the paper's reference code (kuangliu/pytorch-cifar), per channel R, G, B.
inline constexpr std::array<double, 3> kCifarMean{0.4914, 0.4822, 0.4465};
inline constexpr std::array<double, 3> kCifarStd{0.2023, 0.1994, 0.2010};

// The bytes of one CIFAR-10 binary file as a dataset (channels 3, 32x32, 10 classes). `source` names the
// file in messages and in ds.name. expected_records > 0: exactly that many records; 0: any number >= 1.
// In memory, so that a fuzzer can call it without touching the disk.
ImageDataset parse_cifar10(const uint8_t* data, size_t size, const std::string& source,
                           int64_t expected_records = 0);

// One file from disk, checked as parse_cifar10 does (the size is checked before anything is read).
ImageDataset read_cifar10_file(const std::string& path, int64_t expected_records = 0);

// The file names of a split: data_batch_1.bin .. data_batch_5.bin, or test_batch.bin.
std::vector<std::string> cifar10_files(bool train);

// The directory that holds the six files: `dir` itself or its cifar-10-batches-bin/ (what the archive
// unpacks to). "" when neither holds all six.
std::string find_cifar10_dir(const std::string& dir);
// The files missing from `dir` (empty when all six are there), for messages.
std::vector<std::string> missing_cifar10_files(const std::string& dir);

// The training split (the five data batches, in order) or the test split of CIFAR-10 in `dir` (or its
// cifar-10-batches-bin/). Each file must hold records_per_file records (0: any number, for subsets and
// tests). ds.name is "cifar10/train" or "cifar10/test".
ImageDataset load_cifar10(const std::string& dir, bool train, int64_t records_per_file = kCifarRecordsPerFile);

// Several datasets of the same image shape and classes, one after the other (a copy).
ImageDataset concat_datasets(const std::vector<ImageDataset>& parts, const std::string& name);

}  // namespace tapegrad::datasets
