// safetensors save/load and training checkpoints, written atomically.
#include "tapegrad/io.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "internal.hpp"
#include "tapegrad/optim/optimizer.hpp"
#include "tapegrad/optim/scheduler.hpp"

namespace tapegrad {

namespace {

const char* st_dtype(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::I64: return "I64";
  }
  return "?";
}

// Writes all of buf to fd, or throws naming path.
void write_all(int fd, const char* buf, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, buf, n);
    if (w < 0 && errno == EINTR) continue;
    TG_CHECK(w > 0, "save: writing '", path, "' failed: ", std::strerror(errno));
    buf += w;
    n -= static_cast<size_t>(w);
  }
}

// Writes path through a temporary file beside it ("<path>.tmp.<pid>"): `fill` writes the bytes, which are
// flushed to disk, then renamed over path, and the rename made durable: all or nothing.
void write_atomically_with(const std::string& path, const std::function<void(int fd, const std::string& tmp)>& fill) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TG_CHECK(fd >= 0, "save: cannot create '", tmp, "': ", std::strerror(errno));
  try {
    fill(fd, tmp);
    TG_CHECK(::fsync(fd) == 0, "save: fsync of '", tmp, "' failed: ", std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    TG_FAIL("save: cannot rename '", tmp, "' to '", path, "': ", std::strerror(e));
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {  // make the rename itself durable
    ::fsync(dfd);
    ::close(dfd);
  }
}

// The checksum tapegrad writes into "__metadata__": CRC-32 (zlib) over the header without this key
// (nlohmann::json's dump, keys sorted, so writer and reader agree byte for byte) and then over every
// tensor's bytes in file order. It covers names, shapes, offsets, metadata and data; files without it
// (written by other frameworks) load unchecked.
const char* const kChecksumKey = "tapegrad.checksum";

uint32_t crc_of(uint32_t crc, const void* p, uint64_t n) {
  const auto* b = static_cast<const Bytef*>(p);
  while (n > 0) {
    const uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, uint64_t{1} << 30));
    crc = static_cast<uint32_t>(::crc32(crc, b, chunk));
    b += chunk;
    n -= chunk;
  }
  return crc;
}

uint32_t header_crc(nlohmann::json header) {  // a copy: the checksum key is dropped from it
  auto m = header.find("__metadata__");
  if (m != header.end() && m->is_object()) {
    m->erase(kChecksumKey);
    if (m->empty()) header.erase("__metadata__");
  }
  const std::string s = header.dump();
  return crc_of(static_cast<uint32_t>(::crc32(0, nullptr, 0)), s.data(), s.size());
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

}  // namespace

void remove_stale_temporaries(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(target.parent_path().empty() ? "." : target.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.size() > 9 || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stoi(pid)), 0) == -1 && errno == ESRCH) fs::remove(entry.path(), ec);
  }
}

void save_safetensors(const std::string& path, const TensorDict& given, const Metadata& meta) {
  remove_stale_temporaries(path);
  TensorDict tensors;  // the file holds host bytes: device tensors are copied to the CPU first
  for (auto& [name, t] : given) tensors[name] = t.defined() && t.device() != Device::CPU ? t.detach().cpu() : t;
  static_assert(std::endian::native == std::endian::little, "safetensors data is little-endian");
  nlohmann::ordered_json header;
  if (!meta.empty()) header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (auto& [name, t] : tensors) {
    TG_CHECK(t.defined(), "save_safetensors '", path, "': tensor '", name, "' is undefined");
    uint64_t bytes = static_cast<uint64_t>(t.numel()) * size_of(t.dtype());
    header[name] = {{"dtype", st_dtype(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  TG_CHECK(!meta.count(kChecksumKey), "save_safetensors '", path, "': metadata key '", kChecksumKey,
           "' is reserved (tapegrad writes it)");
  uint32_t crc = header_crc(nlohmann::json::parse(header.dump()));
  for (auto& [_, t] : tensors) crc = crc_of(crc, t.raw_data(), static_cast<uint64_t>(t.numel()) * size_of(t.dtype()));
  header["__metadata__"][kChecksumKey] = "crc32:" + hex32(crc);
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-aligned, as the format recommends
  uint64_t hlen = h.size();

  write_atomically_with(path, [&](int fd, const std::string& tmp) {
    write_all(fd, reinterpret_cast<const char*>(&hlen), 8, tmp);
    write_all(fd, h.data(), h.size(), tmp);
    for (auto& [_, t] : tensors)
      write_all(fd, static_cast<const char*>(t.raw_data()), static_cast<size_t>(t.numel()) * size_of(t.dtype()), tmp);
  });
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  remove_stale_temporaries(path);
  write_atomically_with(path, [&](int fd, const std::string& tmp) { write_all(fd, bytes.data(), bytes.size(), tmp); });
}

TensorDict load_safetensors(const std::string& path, Metadata* meta) {
  std::ifstream f(path, std::ios::binary);
  TG_CHECK(f.good(), "load '", path, "': cannot open file");
  return read_safetensors(f, path, meta);
}

TensorDict read_safetensors(std::istream& f, const std::string& path, Metadata* meta) {
  f.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  TG_CHECK(size >= 8, "load '", path, "': file of ", size, " bytes is too short for a safetensors header");
  uint64_t hlen = 0;
  f.read(reinterpret_cast<char*>(&hlen), 8);
  TG_CHECK(hlen <= size - 8, "load '", path, "': header length ", hlen, " exceeds the file (", size,
           " bytes): truncated or not a safetensors file");
  std::string h(hlen, '\0');
  f.read(h.data(), static_cast<std::streamsize>(hlen));
  uint64_t data_size = size - 8 - hlen;

  nlohmann::json header;
  try {
    header = nlohmann::json::parse(h);
  } catch (const nlohmann::json::exception& e) {
    TG_FAIL("load '", path, "': header is not valid JSON (", e.what(), ")");
  }
  TG_CHECK(header.is_object(), "load '", path, "': header is not a JSON object");

  struct Entry { std::string name; DType dtype; Shape shape; uint64_t begin, end; };
  std::vector<Entry> entries;
  Metadata md;
  std::string checksum;  // "crc32:xxxxxxxx" when the file carries one
  for (auto& item : header.items()) {
    const std::string& name = item.key();  // not a structured binding: lambdas below capture it (clang 14)
    auto& v = item.value();
    if (name == "__metadata__") {
      TG_CHECK(v.is_object(), "load '", path, "': __metadata__ is not an object");
      for (auto& [k, s] : v.items()) {
        TG_CHECK(s.is_string(), "load '", path, "': metadata '", k, "' is not a string");
        if (k == kChecksumKey) checksum = s.get<std::string>();
        else md[k] = s.get<std::string>();
      }
      continue;
    }
    auto bad = [&](const char* what) { TG_FAIL("load '", path, "': tensor '", name, "': ", what); };
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      bad("expected an object with dtype, shape, data_offsets");
    if (!v["dtype"].is_string()) bad("dtype is not a string");
    std::string ds = v["dtype"].get<std::string>();
    DType dt = DType::F32;
    if (ds == "F64") dt = DType::F64;
    else if (ds == "I64") dt = DType::I64;
    else if (ds != "F32") bad("unsupported dtype (expected F32, F64 or I64)");
    if (!v["shape"].is_array()) bad("shape is not an array");
    Shape shape;
    uint64_t count = 1;
    for (auto& d : v["shape"]) {
      if (!d.is_number_unsigned()) bad("shape has a non-integer or negative entry");
      uint64_t x = d.get<uint64_t>();
      if (x > (1ull << 40) || (x && count > (1ull << 40) / x)) bad("shape is absurdly large");
      count *= x;
      shape.push_back(static_cast<int64_t>(x));
    }
    auto& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      bad("data_offsets must be two non-negative integers");
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e || e > data_size) bad("data_offsets lie outside the data (file truncated?)");
    if (e - b != count * size_of(dt)) bad("data_offsets do not match dtype and shape");
    entries.push_back({name, dt, shape, b, e});
  }
  std::sort(entries.begin(), entries.end(), [](auto& a, auto& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    TG_CHECK(entries[i].begin >= entries[i - 1].end, "load '", path, "': tensors '", entries[i - 1].name, "' and '",
             entries[i].name, "' overlap");

  const bool check = !checksum.empty();
  TG_CHECK(!check || (checksum.size() == 14 && checksum.rfind("crc32:", 0) == 0), "load '", path, "': metadata '",
           kChecksumKey, "' is '", checksum, "', expected crc32:<8 hex digits>");
  uint32_t crc = check ? header_crc(header) : 0;

  TensorDict out;
  for (auto& e : entries) {
    Tensor t = make_tensor(e.shape, e.dtype);
    f.seekg(static_cast<std::streamoff>(8 + hlen + e.begin));
    f.read(static_cast<char*>(t.raw_data()), static_cast<std::streamsize>(e.end - e.begin));
    TG_CHECK(f.good(), "load '", path, "': reading tensor '", e.name, "' failed (truncated?)");
    if (check) crc = crc_of(crc, t.raw_data(), e.end - e.begin);
    out[e.name] = t;
  }
  TG_CHECK(!check || checksum == "crc32:" + hex32(crc), "load '", path, "': checksum mismatch (the file says ",
           checksum.substr(6), ", its contents give ", hex32(crc), "): the file is corrupted; refusing to load it");
  if (meta) *meta = std::move(md);
  return out;
}

namespace {

std::string optim_prefix(size_t k) { return k == 0 ? "optim." : "optim" + std::to_string(k) + "."; }
std::string sched_prefix(size_t k) { return k == 0 ? "sched." : "sched" + std::to_string(k) + "."; }

TrainingState one(optim::Optimizer* opt) { return opt ? TrainingState{{opt}, {}} : TrainingState{}; }

// "optim3.lr" -> ("optim", 3, "lr"); "sched.last_epoch" -> ("sched", 0, "last_epoch"); false otherwise.
bool split_state_key(const std::string& key, const std::string& kind, size_t& index, std::string& rest) {
  if (key.rfind(kind, 0) != 0) return false;
  const size_t dot = key.find('.', kind.size());
  if (dot == std::string::npos) return false;
  const std::string digits = key.substr(kind.size(), dot - kind.size());
  if (!digits.empty() && (digits.find_first_not_of("0123456789") != std::string::npos || digits[0] == '0' ||
                          digits.size() > 6))
    return false;
  index = digits.empty() ? 0 : std::stoul(digits);
  rest = key.substr(dot + 1);
  return true;
}

}  // namespace

void save_checkpoint(const std::string& path, const nn::Module& model, const TrainingState& state,
                     const Metadata& meta) {
  TensorDict all;
  for (auto& [k, t] : model.state_dict()) all["model." + k] = t;
  for (size_t i = 0; i < state.optimizers.size(); ++i) {
    TG_CHECK(state.optimizers[i], "save_checkpoint '", path, "': optimizer ", i, " is null");
    for (auto& [k, t] : state.optimizers[i]->state_dict()) all[optim_prefix(i) + k] = t;
  }
  for (size_t i = 0; i < state.schedulers.size(); ++i) {
    TG_CHECK(state.schedulers[i], "save_checkpoint '", path, "': scheduler ", i, " is null");
    for (auto& [k, t] : state.schedulers[i]->state_dict()) all[sched_prefix(i) + k] = t;
  }
  save_safetensors(path, all, meta);
}

void save_checkpoint(const std::string& path, const nn::Module& model, const optim::Optimizer* opt,
                     const Metadata& meta) {
  save_checkpoint(path, model, one(const_cast<optim::Optimizer*>(opt)), meta);
}

Metadata load_checkpoint(const std::string& path, nn::Module& model, const TrainingState& state) {
  Metadata meta;
  TensorDict all = load_safetensors(path, &meta);
  apply_checkpoint(all, path, model, state);
  return meta;
}

Metadata load_checkpoint(const std::string& path, nn::Module& model, optim::Optimizer* opt) {
  return load_checkpoint(path, model, one(opt));
}

void apply_checkpoint(const TensorDict& all, const std::string& path, nn::Module& model, optim::Optimizer* opt) {
  apply_checkpoint(all, path, model, one(opt));
}

void apply_checkpoint(const TensorDict& all, const std::string& path, nn::Module& model, const TrainingState& state) {
  const size_t n_opt = state.optimizers.size(), n_sched = state.schedulers.size();
  for (size_t i = 0; i < n_opt; ++i) TG_CHECK(state.optimizers[i], "load_checkpoint '", path, "': optimizer ", i, " is null");
  for (size_t i = 0; i < n_sched; ++i) TG_CHECK(state.schedulers[i], "load_checkpoint '", path, "': scheduler ", i, " is null");
  TensorDict m;
  std::vector<TensorDict> o(n_opt), s(n_sched);
  for (auto& [k, t] : all) {
    size_t i = 0;
    std::string rest;
    if (k.rfind("model.", 0) == 0) {
      m[k.substr(6)] = t;
    } else if (split_state_key(k, "optim", i, rest)) {
      TG_CHECK(i < n_opt, "load_checkpoint '", path, "': tensor '", k, "' belongs to optimizer ", i, " but ", n_opt,
               n_opt == 1 ? " optimizer was" : " optimizers were", " given");
      o[i][rest] = t;
    } else if (split_state_key(k, "sched", i, rest)) {
      TG_CHECK(i < n_sched, "load_checkpoint '", path, "': tensor '", k, "' belongs to scheduler ", i, " but ", n_sched,
               n_sched == 1 ? " scheduler was" : " schedulers were", " given");
      s[i][rest] = t;
    } else {
      TG_FAIL("load_checkpoint '", path, "': unexpected tensor '", k, "' (expected model.*, optim*.* or sched*.*)");
    }
  }
  // All or nothing: each part is validated and copied in turn; should one refuse, the parts already
  // loaded get their previous state back.
  TensorDict model_before;
  for (auto& [k, t] : model.state_dict()) model_before[k] = t.clone();
  std::vector<TensorDict> opt_before, sched_before;
  for (auto* opt : state.optimizers) opt_before.push_back(opt->state_dict());
  for (auto* sched : state.schedulers) sched_before.push_back(sched->state_dict());
  try {
    model.load_state_dict(m);
  } catch (const Error& e) {
    TG_FAIL("load_checkpoint '", path, "': ", e.what());
  }
  size_t loaded_opt = 0, loaded_sched = 0;
  try {
    for (; loaded_opt < n_opt; ++loaded_opt) {
      try {
        state.optimizers[loaded_opt]->load_state_dict(o[loaded_opt]);
      } catch (const Error& e) {
        TG_FAIL("optimizer ", loaded_opt, " (", optim_prefix(loaded_opt), "*): ", e.what());
      }
    }
    for (; loaded_sched < n_sched; ++loaded_sched) {
      try {
        state.schedulers[loaded_sched]->load_state_dict(s[loaded_sched]);
      } catch (const Error& e) {
        TG_FAIL("scheduler ", loaded_sched, " (", sched_prefix(loaded_sched), "*): ", e.what());
      }
    }
  } catch (const Error& e) {
    model.load_state_dict(model_before);
    for (size_t i = 0; i < loaded_opt; ++i) state.optimizers[i]->load_state_dict(opt_before[i]);
    for (size_t i = 0; i < loaded_sched; ++i) state.schedulers[i]->load_state_dict(sched_before[i]);
    TG_FAIL("load_checkpoint '", path, "': ", e.what(), " (nothing was loaded)");
  }
}

}  // namespace tapegrad
