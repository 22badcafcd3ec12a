// The word-level corpus reader: tokens and <eos> as PyTorch's word_language_model reads them, the vocabulary
// from the training text, <unk>, every rejection with the file and the problem, batchify and BPTT segments.
#include <doctest/doctest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tapegrad/datasets/text.hpp"

namespace tg = tapegrad;
namespace ds = tapegrad::datasets;
namespace fs = std::filesystem;
using I = std::vector<int64_t>;

namespace {
std::vector<std::string> words(const ds::TextCorpus& c, const I& ids) {
  std::vector<std::string> out;
  for (int64_t id : ids) out.push_back(c.vocab.words.at(static_cast<size_t>(id)));
  return out;
}
using W = std::vector<std::string>;

struct TempDir {
  fs::path path = fs::temp_directory_path() / ("tg_text_" + std::to_string(::getpid()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() { fs::remove_all(path); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
  }
};
}  // namespace

TEST_CASE("tokens: words then <eos> per line, vocabulary in order of first appearance, <unk> for unknown words") {
  ds::TextCorpus c = ds::parse_corpus(" the cat <unk> sat \n the dog\n\n", "the bird\n", "cat\tsat\r\nthe");
  CHECK(c.vocab.words == W{"the", "cat", "<unk>", "sat", "<eos>", "dog"});
  CHECK(c.vocab.unk == 2);
  CHECK(c.vocab.eos == 4);
  CHECK(c.train == I{0, 1, 2, 3, 4, 0, 5, 4, 4});  // the empty line is an <eos> of its own
  CHECK(words(c, c.valid) == W{"the", "<unk>", "<eos>"});
  CHECK(words(c, c.test) == W{"cat", "sat", "<eos>", "the", "<eos>"});  // \r is a blank; the last line has no \n
  CHECK(c.vocab.id("bird") == -1);
}

TEST_CASE("rejections name the file, the line and the problem") {
  CHECK_THROWS_WITH_AS(ds::parse_corpus("", "a\n", "a\n"), doctest::Contains("ptb.train.txt: empty text"), tg::Error);
  CHECK_THROWS_WITH_AS(ds::parse_corpus("a\n", "a\n", ""), doctest::Contains("ptb.test.txt: empty text"), tg::Error);
  CHECK_THROWS_WITH_AS(ds::parse_corpus("a b\n", "a\nb c\n", "a\n"),
                       doctest::Contains("ptb.valid.txt: line 2: the word 'c' is not in the vocabulary"), tg::Error);
  CHECK_THROWS_WITH_AS(ds::parse_corpus(std::string("a\nb\0c\n", 6), "a\n", "a\n"),
                       doctest::Contains("ptb.train.txt: line 2: control byte 0x00"), tg::Error);
  CHECK_THROWS_WITH_AS(ds::parse_corpus("a\n", "a\n", "q", "data/x"), doctest::Contains("data/x/ptb.test.txt: line 1"), tg::Error);
}

TEST_CASE("load_corpus reads the three files; a missing one is named") {
  TempDir d;
  d.write("ptb.train.txt", " a b <unk> \n b a \n");
  d.write("ptb.valid.txt", " a z \n");
  CHECK(ds::missing_corpus_files(d.path.string()) == W{"ptb.test.txt"});
  CHECK_THROWS_WITH_AS(ds::load_corpus(d.path.string()), doctest::Contains("ptb.test.txt: missing"), tg::Error);
  d.write("ptb.test.txt", " b \n");
  ds::TextCorpus c = ds::load_corpus(d.path.string());
  CHECK(c.vocab.size() == 4);
  CHECK(words(c, c.valid) == W{"a", "<unk>", "<eos>"});
  CHECK(c.source == d.path.string());
  CHECK_THROWS_WITH_AS(ds::load_corpus((d.path / "nope").string()), doctest::Contains("is not a directory"),
                       tg::Error);
}

TEST_CASE("batchify: columns are contiguous chunks, the tail is dropped; too short a text is refused") {
  const I ids{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  tg::Tensor b = ds::batchify(ids, 3, "train");
  CHECK(b.shape() == tg::Shape{3, 3});
  CHECK(b.to_vector<int64_t>() == I{0, 3, 6, 1, 4, 7, 2, 5, 8});
  CHECK_THROWS_WITH_AS(ds::batchify(ids, 6, "valid"), doctest::Contains("batchify valid: 11 tokens are too few for batch size 6"),
                       tg::Error);
  CHECK_THROWS_AS(ds::batchify(ids, 0, "train"), tg::Error);
}

TEST_CASE("segments: input rows and the next word as target; the last one is shorter") {
  I ids;
  for (int64_t i = 0; i < 16; ++i) ids.push_back(i);
  tg::Tensor src = ds::batchify(ids, 2, "train");  // [8, 2]: column 0 = 0..7, column 1 = 8..15
  CHECK(ds::num_segments(src, 3) == 3);           // rows 0-2, 3-5, 6 (7 is only a target)
  ds::Segment s0 = ds::segment(src, 0, 3);
  CHECK(s0.input.shape() == tg::Shape{3, 2});
  CHECK(s0.input.to_vector<int64_t>() == I{0, 8, 1, 9, 2, 10});
  CHECK(s0.target.to_vector<int64_t>() == I{1, 9, 2, 10, 3, 11});
  ds::Segment s2 = ds::segment(src, 2, 3);
  CHECK(s2.input.to_vector<int64_t>() == I{6, 14});
  CHECK(s2.target.to_vector<int64_t>() == I{7, 15});
  CHECK(ds::num_segments(src, 7) == 1);
  CHECK(ds::num_segments(src, 100) == 1);
  CHECK_THROWS_WITH_AS(ds::segment(src, 3, 3), doctest::Contains("out of range [0, 3)"), tg::Error);
  CHECK_THROWS_AS(ds::num_segments(src, 0), tg::Error);
}
