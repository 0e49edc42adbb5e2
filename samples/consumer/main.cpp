// Starts a cairn runtime on a fresh temporary directory, sends one command,
// prints its outcome and exits 0 when it was stored.

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <cereal/types/variant.hpp>

#include "cairn/runtime/runtime.hpp"
#include "cairn/version.hpp"
#include "counter.hpp"

int main() {
  namespace fs = std::filesystem;
  std::string dir = (fs::temp_directory_path() / "cairn-consumer-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  int status = 1;
  {
    cairn::runtime_options opts;
    opts.data_dir = dir;
    auto rt = cairn::runtime::start(opts);
    if (!rt) {
      std::fprintf(stderr, "error: %s\n", rt.error().to_string().c_str());
    } else if (auto ok = (*rt)->register_aggregate<consumer::counter>(); !ok) {
      std::fprintf(stderr, "error: %s\n", ok.error().to_string().c_str());
    } else {
      auto done = (*rt)->send<consumer::counter>("1", consumer::add{5}).get();
      if (done) {
        std::printf("cairn %s: counter-1 add 5 -> version %llu at position %llu\n", CAIRN_VERSION,
                    static_cast<unsigned long long>(done->version),
                    static_cast<unsigned long long>(done->first_position));
        status = done->version == 1 ? 0 : 1;
      } else {
        std::fprintf(stderr, "error: %s\n", done.error().to_string().c_str());
      }
    }
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  return status;
}
