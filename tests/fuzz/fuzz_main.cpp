// One libFuzzer target: TG_FUZZ_TARGET names the entry point of targets.hpp (built by build.sh).
#include "targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tapegrad::fuzz::TG_FUZZ_TARGET(data, size);
  return 0;
}
