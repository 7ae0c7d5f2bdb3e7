#pragma once
// Shared by the libFuzzer targets (Note [Fuzz targets] in tests/fuzz/README.md): a per-process scratch folder
// in /dev/shm (or the temp dir), and the rule that only metafew::Error may come out of a reader: any other
// exception (a raw library error, std::bad_alloc) escapes and libFuzzer reports it as a crash.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>

namespace metafew::fuzz {

inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::exists("/dev/shm", ec) ? std::filesystem::path("/dev/shm")
                                                                          : std::filesystem::temp_directory_path();
    std::filesystem::path d = base / ("metafew-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

// Writes the input to scratch()/name and returns its path.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  const std::string path = (scratch() / name).string();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) __builtin_trap();
  std::fclose(f);
  return path;
}

}  // namespace metafew::fuzz
