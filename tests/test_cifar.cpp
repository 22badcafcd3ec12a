// CIFAR-10: the binary reader on files generated here (valid and every malformed case), the augmentation
// (crop with zero padding and flip, checked pixel by pixel against a plain re-implementation; a function of
// (seed, epoch, sample) alone), per-channel normalisation and image-shaped batches, padding Fashion-MNIST to
// 32x32, and the models on one-channel input.
#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "tapegrad/datasets/cifar.hpp"
#include "tapegrad/datasets/loader.hpp"
#include "tapegrad/models/resnet.hpp"

using namespace tapegrad;
using namespace tapegrad::datasets;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("tapegrad_test_cifar_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

bool has(const std::string& msg, const std::string& part) { return msg.find(part) != std::string::npos; }

// Record k of file f: label (f + k) % 10, pixel p = (13 f + 7 k + p) % 256.
std::vector<uint8_t> records(int64_t n, int f) {
  std::vector<uint8_t> out;
  for (int64_t k = 0; k < n; ++k) {
    out.push_back(static_cast<uint8_t>((f + k) % 10));
    for (int64_t p = 0; p < kCifarPixels; ++p) out.push_back(static_cast<uint8_t>((13 * f + 7 * k + p) % 256));
  }
  return out;
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// The six files, n records each; file index f: 1..5 the data batches, 6 the test batch.
void write_cifar(const std::string& dir, int64_t n) {
  fs::create_directories(dir);
  for (int f = 1; f <= 5; ++f) write_bytes(dir + "/data_batch_" + std::to_string(f) + ".bin", records(n, f));
  write_bytes(dir + "/test_batch.bin", records(n, 6));
}

// A dataset of n images, channels x h x w, pixel (i, c, r, x) = 1000 i + 100 c + 10 r + x (not in [0, 1]:
// every pixel is told apart after augmentation).
ImageDataset grid_dataset(int64_t n, int64_t channels, int64_t h, int64_t w) {
  ImageDataset ds;
  ds.name = "grid";
  ds.channels = channels;
  ds.rows = h;
  ds.cols = w;
  std::vector<float> x;
  std::vector<int64_t> y;
  for (int64_t i = 0; i < n; ++i) {
    y.push_back(i % 10);
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t r = 0; r < h; ++r)
        for (int64_t col = 0; col < w; ++col) x.push_back(static_cast<float>(1000 * i + 100 * c + 10 * r + col));
  }
  ds.images = from_vector(x, {n, channels * h * w});
  ds.labels = from_vector(y, {n});
  return ds;
}

// torchvision's RandomCrop(padding=p) then RandomHorizontalFlip, written the plain way: pad, crop, mirror.
std::vector<float> reference_augment(const ImageDataset& ds, int64_t i, const Augmentation& a, int64_t p) {
  const int64_t c = ds.channels, h = ds.rows, w = ds.cols, ph = h + 2 * p, pw = w + 2 * p;
  const auto x = ds.images.to_vector<float>();
  std::vector<float> padded(static_cast<size_t>(c * ph * pw), 0.0f);
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t col = 0; col < w; ++col)
        padded[(ch * ph + r + p) * pw + col + p] = x[((i * c + ch) * h + r) * w + col];
  std::vector<float> out;
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t r = 0; r < h; ++r)
      for (int64_t col = 0; col < w; ++col) {
        const int64_t cropped_col = a.flip ? w - 1 - col : col;
        out.push_back(padded[(ch * ph + r + a.dy) * pw + cropped_col + a.dx]);
      }
  return out;
}

}  // namespace

TEST_CASE("CIFAR-10: the six files read into [N, 3072] in [0, 1], labels and planes as written") {
  TempDir dir;
  write_cifar(dir.path.string(), 3);
  const ImageDataset train = load_cifar10(dir.path.string(), true, 3);
  const ImageDataset test = load_cifar10(dir.path.string(), false, 3);
  CHECK(train.name == "cifar10/train");
  CHECK(test.name == "cifar10/test");
  CHECK(train.size() == 15);
  CHECK(test.size() == 3);
  CHECK(train.channels == 3);
  CHECK(train.rows == 32);
  CHECK(train.cols == 32);
  CHECK(train.num_classes == 10);
  CHECK(train.images.shape() == Shape{15, 3072});
  CHECK(train.images.dtype() == DType::F32);
  const auto x = train.images.to_vector<float>();
  const auto y = train.labels.to_vector<int64_t>();
  for (int f = 1; f <= 5; ++f)
    for (int64_t k = 0; k < 3; ++k) {
      const int64_t i = (f - 1) * 3 + k;  // the batches in order
      CHECK(y[i] == (f + k) % 10);
      for (int64_t p : {int64_t{0}, int64_t{1023}, int64_t{1024}, int64_t{3071}})
        CHECK(x[i * 3072 + p] == doctest::Approx(((13 * f + 7 * k + p) % 256) / 255.0));
    }
  CHECK(test.labels.to_vector<int64_t>() == std::vector<int64_t>{6, 7, 8});

  // parse_cifar10 in memory gives what the file gives; so does the archive's cifar-10-batches-bin/ layout.
  const auto bytes = records(4, 2);
  const ImageDataset mem = parse_cifar10(bytes.data(), bytes.size(), "mem");
  CHECK(mem.size() == 4);
  CHECK(mem.labels.to_vector<int64_t>() == std::vector<int64_t>{2, 3, 4, 5});
  write_bytes(dir / "data_batch_2.bin", bytes);
  CHECK(read_cifar10_file(dir / "data_batch_2.bin").images.to_vector<float>() == mem.images.to_vector<float>());
  TempDir outer;
  write_cifar(outer / "cifar-10-batches-bin", 2);
  CHECK(find_cifar10_dir(outer.path.string()) == outer / "cifar-10-batches-bin");
  CHECK(load_cifar10(outer.path.string(), true, 2).size() == 10);
  CHECK(find_cifar10_dir(outer / "nothing").empty());
}

TEST_CASE("CIFAR-10: every malformed file gives an Error that names the file and what was expected") {
  TempDir dir;
  write_cifar(dir.path.string(), 2);
  const std::string d = dir.path.string(), batch3 = dir / "data_batch_3.bin";

  SUBCASE("missing file") {
    fs::remove(batch3);
    const std::string msg = error_of([&] { load_cifar10(d, true, 2); });
    CHECK(has(msg, batch3));
    CHECK(has(msg, "missing"));
    CHECK(missing_cifar10_files(d) == std::vector<std::string>{"data_batch_3.bin"});
    CHECK(load_cifar10(d, false, 2).size() == 2);  // the test split does not need it
    CHECK(has(error_of([&] { read_cifar10_file(dir / "nope.bin"); }), "missing"));
    CHECK(has(error_of([&] { load_cifar10(dir / "no_such_dir", true); }), "does not exist"));
  }
  SUBCASE("empty file") {
    write_bytes(batch3, {});
    const std::string msg = error_of([&] { load_cifar10(d, true, 2); });
    CHECK(has(msg, batch3));
    CHECK(has(msg, "empty"));
  }
  SUBCASE("size not a multiple of 3073") {
    auto bytes = records(2, 3);
    bytes.pop_back();
    write_bytes(batch3, bytes);
    const std::string msg = error_of([&] { load_cifar10(d, true, 0); });
    CHECK(has(msg, batch3));
    CHECK(has(msg, "6145 bytes is not a multiple of the 3073-byte record"));
  }
  SUBCASE("wrong record count") {
    write_bytes(batch3, records(3, 3));
    std::string msg = error_of([&] { load_cifar10(d, true, 2); });
    CHECK(has(msg, batch3));
    CHECK(has(msg, "3 records"));
    CHECK(has(msg, "expected 2"));
    msg = error_of([&] { load_cifar10(d, true); });  // the real files hold 10000 each
    CHECK(has(msg, "expected 10000"));
    CHECK(load_cifar10(d, true, 0).size() == 11);  // 0: any count
  }
  SUBCASE("label above 9") {
    auto bytes = records(2, 3);
    bytes[kCifarRecordBytes] = 10;  // record 1's label
    write_bytes(batch3, bytes);
    const std::string msg = error_of([&] { load_cifar10(d, true, 2); });
    CHECK(has(msg, batch3));
    CHECK(has(msg, "record 1"));
    CHECK(has(msg, "label 10"));
    CHECK(has(msg, "expected 0..9"));
  }
  SUBCASE("in memory: the same checks, the source named") {
    const auto bytes = records(2, 1);
    CHECK(has(error_of([&] { parse_cifar10(bytes.data(), 0, "src"); }), "src: empty"));
    CHECK(has(error_of([&] { parse_cifar10(bytes.data(), 100, "src"); }), "not a multiple"));
    CHECK(has(error_of([&] { parse_cifar10(bytes.data(), bytes.size(), "src", 1); }), "expected 1"));
  }
}

TEST_CASE("augmentation: crop with zero padding and flip match torchvision's pad-crop-mirror, pixel by pixel") {
  const int64_t pad = 2;
  const ImageDataset ds = grid_dataset(40, 2, 5, 6);
  DataLoader loader(ds, {.batch_size = 40, .shuffle = false, .seed = 9, .image_shape = true, .crop_padding = pad,
                         .horizontal_flip = true});
  for (int64_t epoch : {0, 3}) {
    loader.set_epoch(epoch);
    const Batch b = loader.batch(0);
    REQUIRE(b.x.shape() == Shape{40, 2, 5, 6});
    const auto x = b.x.to_vector<float>();
    std::set<int64_t> dys, dxs;
    int flips = 0;
    for (int64_t i = 0; i < 40; ++i) {
      const Augmentation a = loader.augmentation(epoch, i);
      CHECK(a.dy >= 0);
      CHECK(a.dy <= 2 * pad);
      CHECK(a.dx >= 0);
      CHECK(a.dx <= 2 * pad);
      dys.insert(a.dy);
      dxs.insert(a.dx);
      flips += a.flip;
      const std::vector<float> want = reference_augment(ds, i, a, pad);
      const std::vector<float> got(x.begin() + i * 60, x.begin() + (i + 1) * 60);
      CAPTURE(i);
      CHECK(got == want);
    }
    CHECK(dys.size() == 5);  // every offset occurs among 40 draws (else the draw is broken)
    CHECK(dxs.size() == 5);
    CHECK(flips > 5);
    CHECK(flips < 35);
  }

  // A known case by hand: 1 channel 2x3, pad 1, offset (0, 2), flipped.
  const ImageDataset small = grid_dataset(1, 1, 2, 3);  // rows {0, 1, 2}, {10, 11, 12}
  // padded 4x5: row 0 zeros; row 1: 0 0 1 2 0; row 2: 0 10 11 12 0. Window rows 0-1, cols 2-4:
  // {0 0 0}, {1 2 0}; mirrored: {0 0 0}, {0 2 1}.
  CHECK(reference_augment(small, 0, {0, 2, true}, 1) == std::vector<float>{0, 0, 0, 0, 2, 1});
  CHECK(reference_augment(small, 0, {1, 1, false}, 1) == std::vector<float>{0, 1, 2, 10, 11, 12});
}

TEST_CASE("augmentation: a function of (seed, epoch, sample) alone") {
  const ImageDataset ds = grid_dataset(30, 3, 8, 8);
  const LoaderOptions opt{.batch_size = 4, .seed = 5, .image_shape = true, .crop_padding = 4, .horizontal_flip = true};
  DataLoader a(ds, opt), b(ds, opt);
  LoaderOptions other = opt;
  other.batch_size = 7;
  DataLoader c(ds, other);
  other.seed = 6;
  DataLoader d(ds, other);

  // The image a sample gets, whatever batch it lands in and whatever epochs came before.
  auto images_by_sample = [](DataLoader& l, int64_t epoch) {
    l.set_epoch(epoch);
    std::vector<std::vector<float>> out(30);
    const auto order = l.order(epoch);
    int64_t k = 0;
    for (int64_t bi = 0; bi < l.num_batches(); ++bi) {
      const auto x = l.batch(bi).x.to_vector<float>();
      for (size_t j = 0; j < x.size() / 192; ++j, ++k)
        out[order[k]] = std::vector<float>(x.begin() + j * 192, x.begin() + (j + 1) * 192);
    }
    return out;
  };
  for (int64_t e = 0; e < 3; ++e) images_by_sample(a, e);  // a has been through epochs 0..2
  const auto ea = images_by_sample(a, 3), eb = images_by_sample(b, 3), ec = images_by_sample(c, 3);
  CHECK(ea == eb);
  CHECK(ea == ec);  // the batch size changes the batches, not the augmentation
  CHECK(ea != images_by_sample(a, 4));
  CHECK(ea != images_by_sample(d, 3));
  // And the draws themselves.
  int same = 0;
  for (int64_t i = 0; i < 30; ++i) {
    const Augmentation x = a.augmentation(2, i), y = c.augmentation(2, i), z = d.augmentation(2, i);
    CHECK(x.dy == y.dy);
    CHECK(x.dx == y.dx);
    CHECK(x.flip == y.flip);
    same += x.dy == z.dy && x.dx == z.dx && x.flip == z.flip;
  }
  CHECK(same < 10);
  // Without crop and flip the augmentation is the identity.
  DataLoader plain(ds, {.batch_size = 4, .seed = 5, .image_shape = true});
  const Augmentation id = plain.augmentation(1, 3);
  CHECK((id.dy == 0 && id.dx == 0 && !id.flip));
}

TEST_CASE("DataLoader: prefetching onto a device gives the plain loader's batches (order, crop, flip, labels)") {
  const ImageDataset ds = grid_dataset(45, 3, 8, 8);
  const LoaderOptions opt{.batch_size = 8, .seed = 3, .channel_mean = {0.4, 0.5, 0.6}, .channel_std = {0.2, 0.3, 0.4},
                          .image_shape = true, .crop_padding = 2, .horizontal_flip = true};
  DataLoader plain(ds, opt);
  for (const Device dev : {Device::CPU, Device::Test}) {
    LoaderOptions o = opt;
    o.prefetch = true;
    o.device = dev;
    DataLoader ahead(ds, o);
    for (int64_t e : {0, 2}) {
      plain.set_epoch(e);
      ahead.set_epoch(e);
      for (int64_t b = 0; b < plain.num_batches(); ++b) {
        const Batch want = plain.batch(b), got = ahead.batch(b);
        CHECK(got.x.device() == dev);
        CHECK(got.y.device() == dev);
        CHECK(got.x.shape() == want.x.shape());
        CHECK(got.x.to_vector<float>() == want.x.to_vector<float>());
        CHECK(got.y.to_vector<int64_t>() == want.y.to_vector<int64_t>());
      }
    }
  }
}

TEST_CASE("DataLoader: per-channel normalisation, image-shaped batches, the padding value") {
  const ImageDataset ds = grid_dataset(3, 3, 2, 2);
  const std::vector<double> mean{100, 200, 300}, sd{2, 4, 8};
  DataLoader loader(ds, {.batch_size = 2, .shuffle = false, .channel_mean = mean, .channel_std = sd,
                         .image_shape = true});
  const Batch b = loader.batch(1);
  CHECK(b.x.shape() == Shape{1, 3, 2, 2});
  CHECK(b.y.to_vector<int64_t>() == std::vector<int64_t>{2});
  const auto x = b.x.to_vector<float>();
  const auto raw = ds.images.slice(0, 2, 3).to_vector<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t k = 0; k < 4; ++k) CHECK(x[c * 4 + k] == doctest::Approx((raw[c * 4 + k] - mean[c]) / sd[c]));

  // The zero padding is normalised like a zero pixel: every out-of-image pixel reads -mean_c / std_c.
  ImageDataset zero = grid_dataset(1, 3, 2, 2);
  zero.images = zeros({1, 12});
  DataLoader padded(zero, {.batch_size = 1, .shuffle = false, .channel_mean = mean, .channel_std = sd,
                           .image_shape = true, .crop_padding = 3});
  const auto px = padded.batch(0).x.to_vector<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t k = 0; k < 4; ++k) CHECK(px[c * 4 + k] == doctest::Approx(-mean[c] / sd[c]));

  CHECK(has(error_of([&] { DataLoader(ds, {.channel_mean = {1, 2}, .channel_std = {1, 2}}); }), "2 channel means"));
  CHECK(has(error_of([&] { DataLoader(ds, {.channel_mean = {1, 2, 3}, .channel_std = {1, 0, 1}}); }), "channel 1"));
  CHECK(has(error_of([&] { DataLoader(ds, {.crop_padding = -1}); }), "crop_padding"));
  ImageDataset wrong = ds;
  wrong.rows = 3;
  CHECK(has(error_of([&] { DataLoader(wrong, {.image_shape = true}); }), "channels*rows*cols"));
}

TEST_CASE("pad_images frames Fashion-MNIST-sized images with zeros; channel_stats per channel") {
  const ImageDataset ds = grid_dataset(2, 1, 2, 3);
  const ImageDataset p = pad_images(ds, 1);
  CHECK(p.rows == 4);
  CHECK(p.cols == 5);
  CHECK(p.images.shape() == Shape{2, 20});
  const auto x = p.images.to_vector<float>();
  CHECK(std::vector<float>(x.begin(), x.begin() + 20) ==
        std::vector<float>{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 10, 11, 12, 0, 0, 0, 0, 0, 0});
  CHECK(has(error_of([&] { pad_images(ds, -1); }), "pad"));

  const ImageDataset two = grid_dataset(2, 2, 1, 2);  // channel 0: 0 1 | 1000 1001; channel 1: 100 101 | 1100 1101
  const auto s = channel_stats(two);
  REQUIRE(s.size() == 2);
  CHECK(s[0].mean == doctest::Approx(500.5));
  CHECK(s[1].mean == doctest::Approx(600.5));
  CHECK(s[0].std == doctest::Approx(std::sqrt((2 * 500.5 * 500.5 + 2 * 499.5 * 499.5) / 4)));
  CHECK(s[1].std == doctest::Approx(s[0].std));
}

TEST_CASE("ResNet-20 on one-channel 32x32 images (the Fashion-MNIST stand-in)") {
  Generator gen(1);
  auto grey = models::resnet20(10, gen, 1);
  auto rgb = models::resnet20(10, gen);
  CHECK(rgb->num_parameters() == 269722);
  CHECK(grey->num_parameters() == 269722 - 2 * 16 * 9);  // the stem sees 1 channel, not 3
  Generator gx(2);
  const Tensor y = (*grey)(rand({2, 1, 32, 32}, gx));
  CHECK(y.shape() == Shape{2, 10});
  const std::string msg = error_of([&] { (*grey)(rand({2, 3, 32, 32}, gx)); });
  CHECK(has(msg, "[2, 3, 32, 32]"));
  CHECK(has(msg, "[N, 1, H, W]"));
}
