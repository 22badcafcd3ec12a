// Replays every file of the fuzz corpora (tests/fuzz/<target>/: seeds and inputs the fuzzers found) through
// the fuzz entry points: each must be accepted or refused with tapegrad::Error (caught inside), never crash
// or throw anything else. The fuzzers themselves are built by tests/fuzz/build.sh.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fuzz/targets.hpp"

namespace fs = std::filesystem;

namespace {
std::vector<std::string> corpus(const std::string& target) {
  const char* root = std::getenv("TAPEGRAD_FUZZ_CORPUS");
  REQUIRE_MESSAGE(root != nullptr, "set TAPEGRAD_FUZZ_CORPUS to tests/fuzz");
  const fs::path dir = fs::path(root) / target;
  REQUIRE_MESSAGE(fs::is_directory(dir), dir.string(), " is missing");
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

void replay(const std::string& target) {
  const auto run = tapegrad::fuzz::target(target);
  const bool known = run != nullptr;
  REQUIRE(known);
  const auto files = corpus(target);
  CHECK(files.size() >= 3);  // the seeds at least
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), {}};
    CAPTURE(f);
    CHECK_NOTHROW(run(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
}
}  // namespace

TEST_CASE("fuzz corpus: IDX reader") { replay("idx"); }
TEST_CASE("fuzz corpus: CIFAR-10 binary reader") { replay("cifar"); }
TEST_CASE("fuzz corpus: safetensors and load_checkpoint") { replay("safetensors"); }
TEST_CASE("fuzz corpus: optimizer spec strings") { replay("optim_spec"); }
TEST_CASE("fuzz corpus: word-level text corpus reader") { replay("text_corpus"); }
