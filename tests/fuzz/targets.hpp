// Fuzz entry points for every reader of outside data. Each takes arbitrary bytes, must either succeed or
// throw tapegrad::Error (caught inside: a rejection), and must never crash, hang, leak or throw anything
// else. libFuzzer drives them (fuzz_main.cpp, built by tests/fuzz/build.sh); the normal test suite replays
// every file of tests/fuzz/<target>/ through the same functions (tests/test_fuzz_corpus.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tapegrad::fuzz {

// datasets::read_idx on the bytes as a file (raw or gzip), as images and as labels.
void idx(const uint8_t* data, size_t size);
// datasets::parse_cifar10 on the bytes (in memory), with any record count and with exactly 2; an accepted
// input must give images [N, 3072] in [0, 1] and labels in 0..9.
void cifar(const uint8_t* data, size_t size);
// load_safetensors on the bytes as a file, then load_checkpoint into a small model and Adam.
void safetensors(const uint8_t* data, size_t size);
// optim::make on the bytes as a spec string; an accepted spec must round-trip through describe().
void optim_spec(const uint8_t* data, size_t size);

// datasets::parse_corpus on the bytes cut into train, valid and test texts (the first two bytes say where),
// then batchify and every BPTT segment of the training ids (batch and bptt from the third byte).
void text_corpus(const uint8_t* data, size_t size);

// The targets by name, for the replay suite: "idx", "cifar", "safetensors", "optim_spec", "text_corpus".
using Target = void (*)(const uint8_t*, size_t);
Target target(const std::string& name);

}  // namespace tapegrad::fuzz
