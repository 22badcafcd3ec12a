// Word-level corpora (see text.hpp): parsing, vocabulary, batchify, BPTT segments.
#include "tapegrad/datasets/text.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace tapegrad::datasets {

namespace fs = std::filesystem;

namespace {

bool is_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f'; }

std::string byte_hex(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02X", c);
  return buf;
}

// Words longer than this make the message quote only their start.
std::string quoted(const std::string& w) { return "'" + (w.size() > 40 ? w.substr(0, 40) + "..." : w) + "'"; }

// Calls word(w, line) for every word of text and word("<eos>", line) at every line end.
template <class F>
void for_each_token(std::string_view text, const std::string& file, F&& word) {
  TG_CHECK(!text.empty(), file, ": empty text (no lines)");
  int64_t line = 1;
  std::string w;
  for (size_t i = 0; i <= text.size(); ++i) {
    const bool end = i == text.size();
    const unsigned char c = end ? '\n' : static_cast<unsigned char>(text[i]);
    if (c == '\n' || is_blank(c)) {
      if (!w.empty()) word(w, line);
      w.clear();
      if (c == '\n' && !(end && i > 0 && text[i - 1] == '\n')) word(std::string("<eos>"), line++);
      continue;
    }
    TG_CHECK(c >= 0x20 && c != 0x7F, file, ": line ", line, ": control byte ", byte_hex(c),
             " (not a text file? words are separated by blanks, sentences by newlines)");
    w += static_cast<char>(c);
  }
}

std::vector<int64_t> ids_of(std::string_view text, const std::string& file, const Vocabulary& v) {
  std::vector<int64_t> out;
  for_each_token(text, file, [&](const std::string& w, int64_t line) {
    int64_t id = v.id(w);
    if (id < 0) {
      TG_CHECK(v.unk >= 0, file, ": line ", line, ": the word ", quoted(w),
               " is not in the vocabulary of the training text, which has no <unk> to stand for it");
      id = v.unk;
    }
    out.push_back(id);
  });
  return out;
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  TG_CHECK(fs::exists(path, ec), path, ": missing (no such file)");
  TG_CHECK(fs::is_regular_file(path, ec), path, ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  TG_CHECK(in.good(), path, ": cannot open it for reading");
  std::string text{std::istreambuf_iterator<char>(in), {}};
  TG_CHECK(!in.bad(), path, ": read error");
  return text;
}

}  // namespace

int64_t Vocabulary::id(const std::string& word) const {
  auto it = ids.find(word);
  return it == ids.end() ? -1 : it->second;
}

TextCorpus parse_corpus(std::string_view train, std::string_view valid, std::string_view test,
                        const std::string& source) {
  auto file = [&](int k) { return source == "memory" ? std::string(kPtbFiles[k]) : (fs::path(source) / kPtbFiles[k]).string(); };
  TextCorpus c;
  c.source = source;
  Vocabulary& v = c.vocab;
  for_each_token(train, file(0), [&](const std::string& w, int64_t) {
    auto [it, added] = v.ids.emplace(w, v.size());
    if (added) v.words.push_back(w);
    c.train.push_back(it->second);
  });
  v.unk = v.id("<unk>");
  v.eos = v.id("<eos>");
  c.valid = ids_of(valid, file(1), v);
  c.test = ids_of(test, file(2), v);
  return c;
}

std::vector<std::string> missing_corpus_files(const std::string& dir) {
  std::vector<std::string> missing;
  std::error_code ec;
  for (const char* f : kPtbFiles)
    if (!fs::is_regular_file(fs::path(dir) / f, ec)) missing.push_back(f);
  return missing;
}

TextCorpus load_corpus(const std::string& dir) {
  std::error_code ec;
  TG_CHECK(fs::is_directory(dir, ec), "text corpus: ", dir, " is not a directory (expected one holding ",
           kPtbFiles[0], ", ", kPtbFiles[1], ", ", kPtbFiles[2], ")");
  std::string texts[3];
  for (int k = 0; k < 3; ++k) texts[k] = read_file((fs::path(dir) / kPtbFiles[k]).string());
  return parse_corpus(texts[0], texts[1], texts[2], dir);
}

Tensor batchify(const std::vector<int64_t>& ids, int64_t batch, const std::string& what) {
  TG_CHECK(batch >= 1, "batchify ", what, ": batch size must be >= 1, got ", batch);
  const int64_t N = static_cast<int64_t>(ids.size()), rows = N / batch;
  TG_CHECK(rows >= 2, "batchify ", what, ": ", N, " tokens are too few for batch size ", batch,
           " (each of the ", batch, " columns needs at least 2 tokens: a word and the next one)");
  Tensor out = empty({rows, batch}, DType::I64);
  int64_t* p = out.data<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t r = 0; r < rows; ++r) p[r * batch + b] = ids[static_cast<size_t>(b * rows + r)];
  return out;
}

int64_t num_segments(const Tensor& source, int64_t bptt) {
  TG_CHECK(source.dim() == 2 && source.dtype() == DType::I64, "num_segments: source must be i64 [n, B], got ",
           source.shape());
  TG_CHECK(bptt >= 1, "num_segments: bptt must be >= 1, got ", bptt);
  return (source.size(0) - 1 + bptt - 1) / bptt;
}

Segment segment(const Tensor& source, int64_t i, int64_t bptt) {
  const int64_t n = num_segments(source, bptt), B = source.size(1);
  TG_CHECK(i >= 0 && i < n, "segment: index ", i, " out of range [0, ", n, ") for source ", source.shape(),
           " and bptt ", bptt);
  const int64_t start = i * bptt, len = std::min(bptt, source.size(0) - 1 - start);
  Segment s{empty({len, B}, DType::I64), empty({len * B}, DType::I64)};
  const int64_t* src = source.data<int64_t>();
  std::copy(src + start * B, src + (start + len) * B, s.input.data<int64_t>());
  std::copy(src + (start + 1) * B, src + (start + 1 + len) * B, s.target.data<int64_t>());
  return s;
}

}  // namespace tapegrad::datasets
