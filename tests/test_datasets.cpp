// IDX reading (raw and gzip) of files generated here, every malformed case, the data loader (image,
// tensor and user datasets, samplers, prefetch), the MLP.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <numeric>
#include <set>
#include <string>

#include "tapegrad/datasets/idx.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/models/mlp.hpp"
#include "tapegrad/ops.hpp"

using namespace tapegrad;
using namespace tapegrad::datasets;
namespace fs = std::filesystem;

namespace {

// A fresh temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("tapegrad_test_datasets_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// n images of rows x cols with pixel (i, p) = (7 i + p) % 256, labels i % 10.
std::vector<uint8_t> image_bytes(int64_t n, int64_t rows, int64_t cols) {
  std::vector<uint8_t> v(static_cast<size_t>(n * rows * cols));
  for (int64_t i = 0; i < n; ++i)
    for (int64_t p = 0; p < rows * cols; ++p) v[i * rows * cols + p] = static_cast<uint8_t>((7 * i + p) % 256);
  return v;
}
std::vector<uint8_t> label_bytes(int64_t n) {
  std::vector<uint8_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i % 10);
  return v;
}

// Writes the split ("train" or "t10k") into dir; ext "" or ".gz".
void write_split(const TempDir& dir, const std::string& split, int64_t n, const std::string& ext,
                 int64_t rows = 2, int64_t cols = 3) {
  write_idx(dir / (split + "-images-idx3-ubyte" + ext), kIdxImagesMagic, {n, rows, cols}, image_bytes(n, rows, cols));
  write_idx(dir / (split + "-labels-idx1-ubyte" + ext), kIdxLabelsMagic, {n}, label_bytes(n));
}

// The message of the Error that f throws ("" when it throws none).
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::vector<char> read_file(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}
void write_file(const std::string& p, const std::vector<char>& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

ImageDataset toy_dataset(int64_t n, int64_t features = 4) {
  ImageDataset ds;
  ds.name = "toy";
  ds.rows = 1;
  ds.cols = features;
  std::vector<float> x(static_cast<size_t>(n * features));
  std::vector<int64_t> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < features; ++j) x[i * features + j] = static_cast<float>(i);  // row i is all i
    y[i] = i % 10;
  }
  ds.images = from_vector(x, {n, features});
  ds.labels = from_vector(y, {n});
  return ds;
}

}  // namespace

TEST_CASE("IDX: raw and gzip files read the same, pixels scaled to [0, 1]") {
  TempDir dir;
  write_split(dir, "train", 5, "");
  write_split(dir, "t10k", 3, ".gz");
  for (bool train : {true, false}) {
    CAPTURE(train);
    const ImageDataset ds = load_mnist(dir.path.string(), train, "toy");
    const int64_t n = train ? 5 : 3;
    CHECK(ds.size() == n);
    CHECK(ds.rows == 2);
    CHECK(ds.cols == 3);
    CHECK(ds.name == std::string("toy/") + (train ? "train" : "test"));
    CHECK(ds.images.shape() == Shape{n, 6});
    CHECK(ds.images.dtype() == DType::F32);
    CHECK(ds.labels.shape() == Shape{n});
    CHECK(ds.labels.dtype() == DType::I64);
    const auto bytes = image_bytes(n, 2, 3);
    const auto x = ds.images.to_vector<float>();
    for (size_t i = 0; i < bytes.size(); ++i) CHECK(x[i] == doctest::Approx(bytes[i] / 255.0));
    const auto y = ds.labels.to_vector<int64_t>();
    for (int64_t i = 0; i < n; ++i) CHECK(y[i] == i % 10);
  }
}

TEST_CASE("IDX: a gzip file keeps its contents whatever its name; raw is preferred when both exist") {
  TempDir dir;
  write_idx(dir / "a.gz", kIdxLabelsMagic, {4}, {1, 2, 3, 4});
  write_idx(dir / "b", kIdxLabelsMagic, {4}, {1, 2, 3, 4});
  CHECK(read_idx(dir / "a.gz", kIdxLabelsMagic).data == read_idx(dir / "b", kIdxLabelsMagic).data);
  CHECK(fs::file_size(dir / "b") == 8 + 4);
  write_split(dir, "train", 2, "");
  write_split(dir, "train", 2, ".gz");
  CHECK(find_idx_file(dir.path.string(), "train-images-idx3-ubyte") == dir / "train-images-idx3-ubyte");
  CHECK(find_idx_file(dir.path.string(), "nothing").empty());
  CHECK(missing_mnist_files(dir.path.string()) ==
        std::vector<std::string>{"t10k-images-idx3-ubyte[.gz]", "t10k-labels-idx1-ubyte[.gz]"});
}

TEST_CASE("IDX: every malformed file gives an Error that names the file and the fault") {
  TempDir dir;
  const std::string images = dir / "train-images-idx3-ubyte", labels = dir / "train-labels-idx1-ubyte";

  SUBCASE("missing file") {
    write_idx(images, kIdxImagesMagic, {2, 2, 3}, image_bytes(2, 2, 3));
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find("train-labels-idx1-ubyte") != std::string::npos);
    CHECK(msg.find("missing") != std::string::npos);
    const std::string direct = error_of([&] { read_idx(dir / "nope", kIdxLabelsMagic); });
    CHECK(direct.find(dir / "nope") != std::string::npos);
    CHECK(direct.find("missing") != std::string::npos);
    CHECK(error_of([&] { load_mnist(dir / "no_such_dir", true); }).find("does not exist") != std::string::npos);
  }
  SUBCASE("truncated data, raw") {
    write_split(dir, "train", 4, "");
    auto bytes = read_file(images);
    bytes.resize(bytes.size() - 5);
    write_file(images, bytes);
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(images) != std::string::npos);
    CHECK(msg.find("truncated") != std::string::npos);
  }
  SUBCASE("truncated header") {
    write_file(labels, {0, 0, 8, 1, 0});
    const std::string msg = error_of([&] { read_idx(labels, kIdxLabelsMagic); });
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("truncated") != std::string::npos);
  }
  SUBCASE("truncated gzip stream") {
    write_split(dir, "train", 50, ".gz", 8, 8);
    auto bytes = read_file(images + ".gz");
    bytes.resize(bytes.size() / 2);
    write_file(images + ".gz", bytes);
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(images + ".gz") != std::string::npos);
    CHECK(msg.find("truncated") != std::string::npos);
  }
  SUBCASE("trailing bytes") {
    write_split(dir, "train", 4, "");
    auto bytes = read_file(labels);
    bytes.push_back(3);
    write_file(labels, bytes);
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("trailing") != std::string::npos);
  }
  SUBCASE("wrong magic: labels where images belong, and garbage") {
    write_split(dir, "train", 4, "");
    fs::copy_file(labels, images, fs::copy_options::overwrite_existing);
    std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(images) != std::string::npos);
    CHECK(msg.find("wrong magic") != std::string::npos);
    CHECK(msg.find("0x00000801") != std::string::npos);
    CHECK(msg.find("0x00000803") != std::string::npos);
    write_file(labels, {'G', 'I', 'F', '8', '9', 'a', 0, 0, 0});
    msg = error_of([&] { read_idx(labels, kIdxLabelsMagic); });
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("wrong magic") != std::string::npos);
  }
  SUBCASE("images and labels of different counts") {
    write_idx(images, kIdxImagesMagic, {4, 2, 3}, image_bytes(4, 2, 3));
    write_idx(labels, kIdxLabelsMagic, {3}, label_bytes(3));
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(images) != std::string::npos);
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("different counts") != std::string::npos);
  }
  SUBCASE("label out of range") {
    write_idx(images, kIdxImagesMagic, {3, 2, 3}, image_bytes(3, 2, 3));
    write_idx(labels, kIdxLabelsMagic, {3}, {0, 10, 2});
    const std::string msg = error_of([&] { load_mnist(dir.path.string(), true); });
    CHECK(msg.find(labels) != std::string::npos);
    CHECK(msg.find("out of range") != std::string::npos);
    CHECK(msg.find("sample 1") != std::string::npos);
  }
  SUBCASE("a header that claims more than the file holds is truncated, not an allocation") {
    write_idx(images, kIdxImagesMagic, {60000000, 28, 28}, image_bytes(1, 28, 28));
    const std::string msg = error_of([&] { read_idx(images, kIdxImagesMagic); });
    CHECK(msg.find("truncated") != std::string::npos);
  }
}

TEST_CASE("head and pixel_stats") {
  const ImageDataset ds = toy_dataset(4, 2);  // rows 0,0 / 1,1 / 2,2 / 3,3
  const ImageDataset h = head(ds, 2);
  CHECK(h.size() == 2);
  CHECK(h.images.to_vector<float>() == std::vector<float>{0, 0, 1, 1});
  CHECK(error_of([&] { head(ds, 5); }).find("toy") != std::string::npos);
  const PixelStats s = pixel_stats(ds);
  CHECK(s.mean == doctest::Approx(1.5));
  CHECK(s.std == doctest::Approx(std::sqrt(1.25)));
}

TEST_CASE("DataLoader: batches cover every sample once; drop_last; sizes") {
  const ImageDataset ds = toy_dataset(10);
  DataLoader keep(ds, {.batch_size = 4, .seed = 3});
  DataLoader drop(ds, {.batch_size = 4, .drop_last = true, .seed = 3});
  CHECK(keep.num_batches() == 3);
  CHECK(drop.num_batches() == 2);
  CHECK(keep.batch(2).x.shape() == Shape{2, 4});
  CHECK(drop.batch(1).x.shape() == Shape{4, 4});
  CHECK(!error_of([&] { drop.batch(2); }).empty());

  std::multiset<int64_t> seen;
  for (int64_t b = 0; b < keep.num_batches(); ++b) {
    const Batch batch = keep.batch(b);
    const auto x = batch.x.to_vector<float>();
    const auto y = batch.y.to_vector<int64_t>();
    for (int64_t i = 0; i < batch.x.size(0); ++i) {
      const auto s = static_cast<int64_t>(x[i * 4]);
      CHECK(y[i] == s % 10);  // the label travels with its image
      seen.insert(s);
    }
  }
  CHECK(seen.size() == 10);
  CHECK(std::set<int64_t>(seen.begin(), seen.end()).size() == 10);
  CHECK(!error_of([&] { DataLoader(ds, {.batch_size = 0}); }).empty());
}

TEST_CASE("DataLoader: the order is a function of (seed, epoch) alone") {
  const ImageDataset ds = toy_dataset(100);
  DataLoader a(ds, {.batch_size = 8, .seed = 42});
  DataLoader b(ds, {.batch_size = 8, .seed = 42});
  DataLoader c(ds, {.batch_size = 8, .seed = 43});
  CHECK(a.order(0) == b.order(0));
  CHECK(a.order(5) == b.order(5));
  CHECK(a.order(0) != a.order(1));
  CHECK(a.order(0) != c.order(0));
  auto sorted = a.order(3);
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> identity(100);
  std::iota(identity.begin(), identity.end(), int64_t{0});
  CHECK(sorted == identity);

  // Resume: jumping straight to epoch 2 gives the batches that epochs 0, 1, 2 in sequence give.
  for (int64_t e = 0; e <= 2; ++e) a.set_epoch(e);
  b.set_epoch(2);
  CHECK(a.epoch() == 2);
  for (int64_t i = 0; i < a.num_batches(); ++i)
    CHECK(a.batch(i).y.to_vector<int64_t>() == b.batch(i).y.to_vector<int64_t>());

  DataLoader plain(ds, {.batch_size = 8, .shuffle = false});
  CHECK(plain.order(7) == identity);
}

TEST_CASE("DataLoader: normalisation (x - mean) / std") {
  const ImageDataset ds = toy_dataset(3, 2);
  DataLoader loader(ds, {.batch_size = 3, .shuffle = false, .mean = 1.0, .std = 2.0});
  CHECK(loader.batch(0).x.to_vector<float>() == std::vector<float>{-0.5f, -0.5f, 0.0f, 0.0f, 0.5f, 0.5f});
  CHECK(!error_of([&] { DataLoader(ds, {.std = 0.0}); }).empty());
}

TEST_CASE("DataLoader: the order of a seed and epoch is pinned (resume across versions depends on it)") {
  // Checkpoints of the tools resume at an epoch and expect that epoch's batches: a change of the shuffle
  // would silently change resumed runs. These are the permutations the loader has drawn since it was written.
  CHECK(DataLoader::random_permutation(12, 1, 0) == std::vector<int64_t>{11, 8, 10, 3, 2, 6, 0, 9, 1, 7, 4, 5});
  CHECK(DataLoader::random_permutation(12, 1, 3) == std::vector<int64_t>{0, 8, 2, 9, 4, 3, 6, 5, 10, 7, 1, 11});
  DataLoader loader(toy_dataset(12), {.batch_size = 5, .seed = 1});
  CHECK(loader.order(3) == DataLoader::random_permutation(12, 1, 3));
}

TEST_CASE("TensorDataset: any feature shape, float targets (regression), rows travel together") {
  // x [7, 2, 3] F64 with x[i] = 100 i + k; y [7, 2] F32 with y[i] = (i, -i).
  std::vector<double> xv(7 * 6);
  std::vector<float> yv(7 * 2);
  for (int64_t i = 0; i < 7; ++i) {
    for (int64_t k = 0; k < 6; ++k) xv[i * 6 + k] = 100.0 * i + k;
    yv[i * 2] = static_cast<float>(i);
    yv[i * 2 + 1] = -static_cast<float>(i);
  }
  auto ds = std::make_shared<TensorDataset>(from_vector(xv, {7, 2, 3}), from_vector(yv, {7, 2}), "toy-regression");
  CHECK(ds->size() == 7);
  const Example e = ds->get(4);
  CHECK(e.x.shape() == Shape{2, 3});
  CHECK(e.x.to_vector<double>() == std::vector<double>{400, 401, 402, 403, 404, 405});
  CHECK(e.y.to_vector<float>() == std::vector<float>{4, -4});

  DataLoader loader(ds, {.batch_size = 3, .seed = 9});
  CHECK(loader.num_batches() == 3);
  std::set<int64_t> seen;
  for (int64_t b = 0; b < loader.num_batches(); ++b) {
    const Batch batch = loader.batch(b);
    const int64_t n = b < 2 ? 3 : 1;
    REQUIRE(batch.x.shape() == Shape{n, 2, 3});
    REQUIRE(batch.y.shape() == Shape{n, 2});
    CHECK(batch.x.dtype() == DType::F64);
    CHECK(batch.y.dtype() == DType::F32);
    const auto x = batch.x.to_vector<double>();
    const auto y = batch.y.to_vector<float>();
    for (int64_t i = 0; i < n; ++i) {
      const auto s = static_cast<int64_t>(x[i * 6] / 100);
      CHECK(x[i * 6 + 5] == 100.0 * s + 5);
      CHECK(y[i * 2] == static_cast<float>(s));
      CHECK(y[i * 2 + 1] == -static_cast<float>(s));
      seen.insert(s);
    }
  }
  CHECK(seen.size() == 7);
  // The same order as an ImageDataset of the same size and seed: one shuffle for every dataset.
  CHECK(loader.order(2) == DataLoader(toy_dataset(7), {.batch_size = 3, .seed = 9}).order(2));

  CHECK(error_of([&] { TensorDataset(zeros({3, 2}), zeros({4})); }).find("same N") != std::string::npos);
  CHECK(error_of([&] { ds->get(7); }).find("toy-regression: sample 7 outside [0, 7)") != std::string::npos);
  CHECK(error_of([&] { DataLoader(ds, {.mean = 0.5}); }).find("apply to an ImageDataset") != std::string::npos);
  CHECK(error_of([&] { DataLoader(ds, {.batch_size = 0}); }).find("batch_size 0") != std::string::npos);
}

namespace {
// A user dataset through the interface alone: sample i is x = [i, i^2] (I64), y = i % 3 (I64 []); sample
// `odd` has a wrong shape and sample `bad` throws.
struct Squares : Dataset {
  int64_t n = 10, odd = -1, bad = -1;
  int64_t size() const override { return n; }
  std::string name() const override { return "squares"; }
  Example get(int64_t i) const override {
    TG_CHECK(i != bad, "squares: sample ", i, " is unreadable");
    if (i == odd) return {zeros({3}, DType::I64), scalar(0, DType::I64)};
    return {from_vector(std::vector<int64_t>{i, i * i}, {2}), scalar(static_cast<double>(i % 3), DType::I64)};
  }
};
}  // namespace

TEST_CASE("Dataset: a user dataset through get(); stacking checks every sample's shape") {
  auto ds = std::make_shared<Squares>();
  DataLoader loader(ds, {.batch_size = 4, .shuffle = false, .drop_last = true});
  CHECK(loader.num_batches() == 2);
  const Batch b = loader.batch(1);
  CHECK(b.x.shape() == Shape{4, 2});
  CHECK(b.x.to_vector<int64_t>() == std::vector<int64_t>{4, 16, 5, 25, 6, 36, 7, 49});
  CHECK(b.y.shape() == Shape{4});
  CHECK(b.y.to_vector<int64_t>() == std::vector<int64_t>{1, 2, 0, 1});
  auto odd = std::make_shared<Squares>();
  odd->odd = 6;
  const std::string msg = error_of([&] { DataLoader(odd, {.batch_size = 4, .shuffle = false}).batch(1); });
  CHECK(msg.find("squares: sample 6 gives x [3]") != std::string::npos);
  CHECK(msg.find("sample 4 gave [2]") != std::string::npos);
}

TEST_CASE("DataLoader: a sampler gives each epoch's indices (e.g. a shard for data parallelism)") {
  const ImageDataset ds = toy_dataset(10);
  // Rank r of 2 takes every second sample of the seeded permutation.
  auto shard = [](int64_t rank) {
    return [rank](int64_t epoch) {
      std::vector<int64_t> mine;
      const auto all = DataLoader::random_permutation(10, 5, epoch);
      for (size_t i = static_cast<size_t>(rank); i < all.size(); i += 2) mine.push_back(all[i]);
      return mine;
    };
  };
  DataLoader r0(ds, {.batch_size = 2, .seed = 5, .sampler = shard(0)});
  DataLoader r1(ds, {.batch_size = 2, .seed = 5, .sampler = shard(1)});
  DataLoader whole(ds, {.batch_size = 2, .seed = 5});
  for (int64_t e : {0, 3}) {
    r0.set_epoch(e);
    r1.set_epoch(e);
    whole.set_epoch(e);
    CHECK(r0.num_samples() == 5);
    CHECK(r0.num_batches() == 3);
    std::vector<int64_t> mine, theirs;
    for (int64_t b = 0; b < r0.num_batches(); ++b) {
      for (const int64_t y : r0.batch(b).y.to_vector<int64_t>()) mine.push_back(y);
      for (const int64_t y : r1.batch(b).y.to_vector<int64_t>()) theirs.push_back(y);
    }
    const auto all = whole.order(e);  // labels are i % 10 = i here
    for (size_t i = 0; i < 10; ++i) CHECK((i % 2 == 0 ? mine[i / 2] : theirs[i / 2]) == all[i]);
  }
  DataLoader wrong(ds, {.sampler = [](int64_t e) { return std::vector<int64_t>{0, e == 1 ? 10 : 1}; }});
  CHECK(error_of([&] { wrong.set_epoch(1); }).find("the sampler gave sample 10 for epoch 1") != std::string::npos);
  CHECK(wrong.epoch() == 0);  // a refused epoch leaves the loader as it was
  CHECK(wrong.num_samples() == 2);
}

TEST_CASE("DataLoader: prefetch on a background thread gives the same batches, in any access order; copies") {
  const ImageDataset ds = toy_dataset(50);
  LoaderOptions opt{.batch_size = 7, .seed = 2};
  DataLoader plain(ds, opt);
  opt.prefetch = true;
  DataLoader ahead(ds, opt);
  for (int64_t e : {0, 1, 4}) {
    plain.set_epoch(e);
    ahead.set_epoch(e);
    // In order (each batch was prefetched), then skipping and going back (the prefetched one is dropped).
    std::vector<int64_t> visits(static_cast<size_t>(plain.num_batches()));
    std::iota(visits.begin(), visits.end(), int64_t{0});
    for (int64_t b : {5, 2, 3, 3, 0}) visits.push_back(b);
    for (const int64_t b : visits) {
      CHECK(ahead.batch(b).x.to_vector<float>() == plain.batch(b).x.to_vector<float>());
      CHECK(ahead.batch(b).y.to_vector<int64_t>() == plain.batch(b).y.to_vector<int64_t>());
    }
  }
  // A copy made while a batch is being prefetched gives the same batches as the original.
  ahead.set_epoch(1);
  plain.set_epoch(1);
  CHECK(ahead.batch(0).y.to_vector<int64_t>() == plain.batch(0).y.to_vector<int64_t>());  // prefetches batch 1
  const DataLoader copy = ahead;
  CHECK(copy.epoch() == 1);
  CHECK(copy.batch(1).y.to_vector<int64_t>() == plain.batch(1).y.to_vector<int64_t>());
  CHECK(ahead.batch(1).y.to_vector<int64_t>() == plain.batch(1).y.to_vector<int64_t>());

  // An error of the background task reaches the caller of batch() for that batch.
  auto bad = std::make_shared<Squares>();
  bad->bad = 5;
  DataLoader loader(bad, {.batch_size = 2, .shuffle = false, .prefetch = true});
  CHECK(loader.batch(1).x.to_vector<int64_t>() == std::vector<int64_t>{2, 4, 3, 9});  // starts batch 2 (4, 5)
  CHECK(error_of([&] { loader.batch(2); }).find("squares: sample 5 is unreadable") != std::string::npos);
  CHECK(loader.batch(3).x.to_vector<int64_t>() == std::vector<int64_t>{6, 36, 7, 49});
}

TEST_CASE("MLP: the paper's perceptron, 784 -> 256 -> 10") {
  Generator g1(7), g2(7);
  models::MLP a(784, 256, 10, g1), b(784, 256, 10, g2);
  CHECK(a.num_parameters() == 784 * 256 + 256 + 256 * 10 + 10);
  const auto named = a.named_parameters();
  REQUIRE(named.size() == 4);
  CHECK(named[0].first == "fc1.weight");
  CHECK(named[1].first == "fc1.bias");
  CHECK(named[2].first == "fc2.weight");
  CHECK(named[3].first == "fc2.bias");
  CHECK(named[0].second.shape() == Shape{256, 784});
  CHECK(named[2].second.shape() == Shape{10, 256});
  // Same seed, same initial weights: what lets every optimizer start from one point.
  const auto sa = a.state_dict(), sb = b.state_dict();
  for (const auto& [name, t] : sa) CHECK(t.to_vector<float>() == sb.at(name).to_vector<float>());

  Generator gx(1);
  const Tensor x = rand({5, 784}, gx);
  const Tensor y = a(x);
  CHECK(y.shape() == Shape{5, 10});
  CHECK(a(x.reshape({5, 1, 28, 28})).to_vector<float>() == y.to_vector<float>());
  const std::string msg = error_of([&] { a(rand({5, 100}, gx)); });
  CHECK(msg.find("MLP") != std::string::npos);
  CHECK(msg.find("784") != std::string::npos);

  // Gradients reach every parameter.
  const Tensor loss = cross_entropy(y, from_vector(std::vector<int64_t>{0, 1, 2, 3, 4}, {5}));
  loss.backward();
  for (const auto& [name, p] : named) CHECK_MESSAGE(p.grad().defined(), name);
}

TEST_CASE("IDX bytes in memory: the same checks as a file") {
  // magic 0x00000801 (u8 labels, 1 dim), 3 labels announced, 2 given
  const std::vector<uint8_t> truncated = {0, 0, 8, 1, 0, 0, 0, 3, 7, 9};
  CHECK_THROWS_WITH_AS(tapegrad::datasets::parse_idx(truncated.data(), truncated.size(),
                                                     tapegrad::datasets::kIdxLabelsMagic, "labels-in-memory"),
                       doctest::Contains("IDX file labels-in-memory: truncated"), tapegrad::Error);
  std::vector<uint8_t> whole = truncated;
  whole.push_back(4);
  const auto a = tapegrad::datasets::parse_idx(whole.data(), whole.size(), tapegrad::datasets::kIdxLabelsMagic, "x");
  CHECK(a.dims == std::vector<int64_t>{3});
  CHECK(a.data == std::vector<uint8_t>{7, 9, 4});
  whole.push_back(0);
  CHECK_THROWS_WITH_AS(
      tapegrad::datasets::parse_idx(whole.data(), whole.size(), tapegrad::datasets::kIdxLabelsMagic, "x"),
      doctest::Contains("trailing bytes"), tapegrad::Error);
}
