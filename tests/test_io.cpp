// safetensors and checkpoints: round trips, the format's bytes, atomic writes, clear errors.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tapegrad/tapegrad.hpp"

namespace tg = tapegrad;
namespace fs = std::filesystem;
using tg::Tensor;

namespace {
fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("tg_io_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
void write_bytes(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }
std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}
std::string with_header(const std::string& h, const std::string& data = "") {
  uint64_t n = h.size();
  return std::string(reinterpret_cast<const char*>(&n), 8) + h + data;
}
}  // namespace

TEST_CASE("safetensors round trip and layout") {
  fs::path d = temp_dir();
  tg::TensorDict t{{"a", tg::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3})},
                   {"b", tg::from_vector(std::vector<double>{-1.5}, {1})},
                   {"c", tg::from_vector(std::vector<int64_t>{7, 8}, {2})},
                   {"s", tg::scalar(4.0, tg::DType::F64)}};
  tg::save_safetensors((d / "x.safetensors").string(), t, {{"epoch", "3"}});
  tg::Metadata meta;
  auto back = tg::load_safetensors((d / "x.safetensors").string(), &meta);
  CHECK(meta.at("epoch") == "3");
  REQUIRE(back.size() == 4);
  CHECK(back["a"].shape() == tg::Shape{2, 3});
  CHECK(back["a"].to_vector<float>() == t["a"].to_vector<float>());
  CHECK(back["b"].dtype() == tg::DType::F64);
  CHECK(back["c"].to_vector<int64_t>() == std::vector<int64_t>{7, 8});
  CHECK(back["s"].dim() == 0);
  // The bytes follow the format: u64 header length, JSON header, data at the stated offsets.
  std::string raw = read_bytes(d / "x.safetensors");
  uint64_t n;
  std::memcpy(&n, raw.data(), 8);
  auto h = nlohmann::json::parse(raw.substr(8, n));
  CHECK(h["a"]["dtype"] == "F32");
  CHECK(h["a"]["shape"] == nlohmann::json::array({2, 3}));
  size_t begin = h["a"]["data_offsets"][0];
  float f;
  std::memcpy(&f, raw.data() + 8 + n + begin + 4, 4);
  CHECK(f == 2.0f);
  // No temporary file is left behind.
  int files = 0;
  for (auto& e : fs::directory_iterator(d)) files += e.is_regular_file();
  CHECK(files == 1);
  fs::remove_all(d);
}

TEST_CASE("bad safetensors files are refused with a message naming the file") {
  fs::path d = temp_dir();
  auto p = (d / "bad.safetensors").string();
  auto expect = [&](const std::string& content, const char* msg) {
    write_bytes(p, content);
    CAPTURE(msg);
    CHECK_THROWS_WITH_AS(tg::load_safetensors(p), doctest::Contains(msg), tg::Error);
  };
  CHECK_THROWS_WITH_AS(tg::load_safetensors((d / "none").string()), doctest::Contains("cannot open"), tg::Error);
  expect("abc", "too short");
  expect(with_header("{}").substr(0, 6) + std::string(8, 'x'), "exceeds the file");
  expect(with_header("{not json"), "not valid JSON");
  expect(with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", "1234"), "outside the data");
  expect(with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "12345678"), "do not match");
  expect(with_header(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", "1234"), "unsupported dtype");
  expect(with_header(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "12345678"), "negative");
  expect(with_header(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                     "12345678"),
         "overlap");
  expect(with_header(R"([1,2])"), "not a JSON object");
  fs::remove_all(d);
}

TEST_CASE("a model checkpoint round-trips; a mismatching model is refused") {
  fs::path d = temp_dir();
  tg::Generator g(1), g2(2);
  tg::nn::Linear a(3, 2, true, g), b(3, 2, true, g2), c(4, 2, true, g2);
  auto p = (d / "ck.safetensors").string();
  tg::save_checkpoint(p, a, nullptr, {{"step", "10"}});
  auto meta = tg::load_checkpoint(p, b, nullptr);
  CHECK(meta.at("step") == "10");
  CHECK(b.weight.to_vector() == a.weight.to_vector());
  CHECK_THROWS_WITH_AS(tg::load_checkpoint(p, c, nullptr), doctest::Contains("ck.safetensors"), tg::Error);
  fs::remove_all(d);
}

TEST_CASE("a corrupted or truncated checkpoint is refused by its checksum; files without one still load") {
  fs::path d = temp_dir();
  auto p = (d / "ck.safetensors").string();
  tg::TensorDict t{{"w", tg::from_vector(std::vector<float>{1, 2, 3, 4}, {2, 2})},
                   {"b", tg::from_vector(std::vector<double>{0.5, -0.5}, {2})}};
  tg::save_safetensors(p, t, {{"epoch", "7"}});
  const std::string good = read_bytes(p);
  uint64_t n;
  std::memcpy(&n, good.data(), 8);
  auto h = nlohmann::json::parse(good.substr(8, n));
  REQUIRE(h["__metadata__"].contains("tapegrad.checksum"));
  tg::Metadata meta;
  tg::load_safetensors(p, &meta);
  CHECK(meta == tg::Metadata{{"epoch", "7"}});  // the checksum is not handed back as metadata

  // Every single flipped bit of the data section, and a flipped digit of the metadata, is caught.
  for (size_t i = 8 + n; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ (1 << (i % 8)));
    write_bytes(p, bad);
    CAPTURE(i);
    CHECK_THROWS_WITH_AS(tg::load_safetensors(p), doctest::Contains("checksum mismatch"), tg::Error);
  }
  std::string bad = good;
  bad.replace(bad.find("\"7\""), 3, "\"8\"");
  write_bytes(p, bad);
  CHECK_THROWS_WITH_AS(tg::load_safetensors(p), doctest::Contains("ck.safetensors': checksum mismatch"), tg::Error);

  // Truncated anywhere: refused, naming the file.
  for (size_t len : {size_t{0}, size_t{5}, size_t{8} + n / 2, good.size() - 1}) {
    write_bytes(p, good.substr(0, len));
    CAPTURE(len);
    CHECK_THROWS_WITH_AS(tg::load_safetensors(p), doctest::Contains("ck.safetensors"), tg::Error);
  }

  // A file from another framework (no checksum) loads; so does ours with the key removed.
  h["__metadata__"].erase("tapegrad.checksum");
  std::string hs = h.dump();
  write_bytes(p, with_header(hs, good.substr(8 + n)));
  auto back = tg::load_safetensors(p);
  CHECK(back.at("w").to_vector<float>() == std::vector<float>{1, 2, 3, 4});
  // A malformed checksum value is an error, not a silent skip.
  h["__metadata__"]["tapegrad.checksum"] = "md5:0";
  write_bytes(p, with_header(h.dump(), good.substr(8 + n)));
  CHECK_THROWS_WITH_AS(tg::load_safetensors(p), doctest::Contains("expected crc32"), tg::Error);
  // The key is reserved.
  CHECK_THROWS_WITH_AS(tg::save_safetensors(p, t, {{"tapegrad.checksum", "x"}}), doctest::Contains("reserved"),
                       tg::Error);
  fs::remove_all(d);
}

TEST_CASE("load_checkpoint loads all or nothing") {
  fs::path d = temp_dir();
  auto p = (d / "ck.safetensors").string();
  tg::Generator g(1), g2(2);
  tg::nn::Linear a(3, 2, true, g), b(3, 2, true, g2);
  auto opt_a = tg::optim::make("adam:lr=1e-3", a.parameters());
  tg::sum(a(tg::ones({4, 3}))).backward();
  opt_a->step();
  tg::save_checkpoint(p, a, opt_a.get());

  // The model part fits b but the optimizer part does not fit an optimizer over fewer parameters:
  // b must keep its own weights.
  const auto before = b.weight.to_vector();
  auto opt_b = tg::optim::make("adam:lr=1e-3", {b.weight});
  CHECK_THROWS_WITH_AS(tg::load_checkpoint(p, b, opt_b.get()), doctest::Contains("nothing was loaded"), tg::Error);
  CHECK(b.weight.to_vector() == before);
  CHECK(opt_b->steps() == 0);
  // With a matching optimizer, both load.
  auto opt_c = tg::optim::make("adam:lr=1e-3", b.parameters());
  tg::load_checkpoint(p, b, opt_c.get());
  CHECK(b.weight.to_vector() == a.weight.to_vector());
  CHECK(opt_c->steps() == 1);
  fs::remove_all(d);
}

TEST_CASE("saving removes the temporaries of writers that died, and only those") {
  fs::path d = temp_dir() / "stale";
  fs::create_directories(d);
  const fs::path target = d / "model.ckpt";
  const fs::path dead = d / "model.ckpt.tmp.999999999";  // beyond any pid_max: no such process
  const fs::path alive = d / ("model.ckpt.tmp." + std::to_string(::getppid()));  // our parent is alive
  const fs::path other = d / "other.ckpt.tmp.999999999";  // another file's temporary
  const fs::path odd = d / "model.ckpt.tmp.notapid";
  for (const fs::path& p : {dead, alive, other, odd}) write_bytes(p, "half a checkpoint");
  tg::save_safetensors(target.string(), {{"w", tg::ones({2})}});
  CHECK_FALSE(fs::exists(dead));
  CHECK(fs::exists(alive));
  CHECK(fs::exists(other));
  CHECK(fs::exists(odd));
  CHECK(tg::load_safetensors(target.string()).at("w").numel() == 2);
  fs::remove_all(d);
}

TEST_CASE("safetensors from a stream: the same checks as from a file") {
  std::istringstream bad(with_header("{\"w\": 5}"));
  CHECK_THROWS_WITH_AS(tg::read_safetensors(bad, "in-memory"), doctest::Contains("load 'in-memory': tensor 'w'"),
                       tg::Error);
  const fs::path p = temp_dir() / "stream.safetensors";
  tg::save_safetensors(p.string(), {{"w", tg::full({3}, 2.5)}});
  std::istringstream good(read_bytes(p));
  CHECK(tg::read_safetensors(good, "in-memory").at("w").to_vector() == std::vector<double>{2.5, 2.5, 2.5});
}

TEST_CASE("write_file_atomically: replaces the whole file, leaves no temporary, names the file it cannot write") {
  fs::path d = temp_dir() / "atomic";
  fs::create_directories(d);
  const fs::path p = d / "summary.json";
  const fs::path dead = d / "summary.json.tmp.999999999";  // a writer that died before its rename
  write_bytes(dead, "half");
  tg::write_file_atomically(p.string(), std::string("first, longer text\n"));
  tg::write_file_atomically(p.string(), std::string("second\n"));
  CHECK(read_bytes(p) == "second\n");
  tg::write_file_atomically(p.string(), std::string());
  CHECK(read_bytes(p).empty());
  CHECK_FALSE(fs::exists(dead));
  int files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(d)) ++files;
  CHECK(files == 1);
  CHECK_THROWS_WITH_AS(tg::write_file_atomically((d / "no-such-dir" / "x.json").string(), "x"),
                       doctest::Contains("no-such-dir/x.json.tmp."), tg::Error);
  fs::remove_all(d);
}
