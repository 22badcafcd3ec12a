// Word-level text corpora in the Penn Treebank layout (Mikolov's ptb.train.txt, ptb.valid.txt, ptb.test.txt):
// one sentence a line, words separated by blanks, rare words already replaced by "<unk>". Read as PyTorch's
// word_language_model reads them: each line gives its words, then "<eos>" (an empty line gives "<eos>"
// alone; a last line without '\n' counts as a line). The vocabulary is built from the training text alone,
// in the order of first appearance; a word of the validation or test text outside it becomes "<unk>" when
// the vocabulary has one, and is an error naming the file, the line and the word when it has not.
//
// Every rejection is a tapegrad::Error naming the file and the problem: missing or unreadable file, empty
// text, control bytes (a binary file), an unknown word without "<unk>", a text too short for one batch.
//
//   TextCorpus c = load_corpus("data/ptb");              // or parse_corpus(train, valid, test) in memory
//   Tensor train = batchify(c.train, 20, "train");       // I64 [N / 20, 20]
//   for (int64_t i = 0; i < num_segments(train, 35); ++i) { Segment s = segment(train, i, 35); ... }
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tapegrad/tensor.hpp"

namespace tapegrad::datasets {

struct Vocabulary {
  std::vector<std::string> words;                  // id -> word
  std::unordered_map<std::string, int64_t> ids;    // word -> id
  int64_t unk = -1;                                // the id of "<unk>"; -1 when the training text has none
  int64_t eos = -1;                                // the id of "<eos>"
  int64_t size() const { return static_cast<int64_t>(words.size()); }
  int64_t id(const std::string& word) const;       // -1 when absent
};

struct TextCorpus {
  Vocabulary vocab;
  std::vector<int64_t> train, valid, test;  // token ids, "<eos>" included
  std::string source;                        // the directory (or "memory"), for messages and results
};

// The standard file names.
inline constexpr const char* kPtbFiles[3] = {"ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"};

// The three texts as given (the in-memory entry point; the fuzz target calls it). `source` prefixes the
// file names in messages ("data/ptb/ptb.valid.txt: line 3: ...").
TextCorpus parse_corpus(std::string_view train, std::string_view valid, std::string_view test,
                        const std::string& source = "memory");
// dir/ptb.train.txt, dir/ptb.valid.txt, dir/ptb.test.txt.
TextCorpus load_corpus(const std::string& dir);
// The standard files missing from dir (empty when all three are there), for messages.
std::vector<std::string> missing_corpus_files(const std::string& dir);

// PyTorch's batchify: ids [N] -> I64 [N / batch, batch] whose column b is the b-th of `batch` contiguous
// chunks (the last N mod batch ids are dropped). `what` names the split in errors. Needs N / batch >= 2 rows
// (a segment needs an input word and the next word as its target).
Tensor batchify(const std::vector<int64_t>& ids, int64_t batch, const std::string& what);

// Truncated-BPTT segments of a batchified source [n, B]: segment i starts at row i * bptt and has
// len = min(bptt, n - 1 - i * bptt) rows. input I64 [len, B]; target I64 [len * B], the next word of each
// input (row-major, matching the model's logits [len * B, V]).
struct Segment {
  Tensor input, target;
};
int64_t num_segments(const Tensor& source, int64_t bptt);
Segment segment(const Tensor& source, int64_t i, int64_t bptt);

}  // namespace tapegrad::datasets
