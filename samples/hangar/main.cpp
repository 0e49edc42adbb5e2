// hangar demo [--seed N] [--data DIR] [--seconds S]   the scripted demo (scripts/demo)
// hangar serve --data DIR                            line commands on stdin
// hangar what-if --data DIR [--threshold N]          a stricter breaker over the recorded groups
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include "hangar/demo.hpp"
#include "hangar/what_if.hpp"

int main(int argc, char** argv) {
  auto usage = [] {
    std::fprintf(stderr, "usage: hangar demo [--seed N] [--data DIR] [--seconds S]\n"
                         "       hangar serve --data DIR\n"
                         "       hangar what-if --data DIR [--threshold N]\n");
    return 2;
  };
  if (argc < 2)
    return usage();
  std::string cmd = argv[1];
  hangar::demo_options demo;
  std::string data;
  unsigned long threshold = 3;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (i + 1 >= argc)
      return usage();
    std::string value = argv[++i];
    char* end = nullptr;
    if (flag == "--data") {
      data = value;
    } else if (flag == "--seed") {
      demo.seed = std::strtoull(value.c_str(), &end, 10);
      if (*end != '\0')
        return usage();
    } else if (flag == "--threshold") {
      threshold = std::strtoul(value.c_str(), &end, 10);
      if (*end != '\0' || threshold == 0 || threshold > 1000)
        return usage();
    } else if (flag == "--seconds") {
      demo.seconds = std::strtod(value.c_str(), &end);
      if (*end != '\0' || demo.seconds <= 0)
        return usage();
    } else {
      return usage();
    }
  }
  if (cmd == "demo") {
    ::setenv("SPDLOG_LEVEL", "warn", 0); // the demo's own output tells the story
    if (!data.empty())
      demo.data_dir = data;
    auto r = hangar::run_demo(demo, std::cout);
    if (!r) {
      std::fprintf(stderr, "hangar: %s\n", r.error().to_string().c_str());
      return 1;
    }
    return 0;
  }
  if (cmd == "what-if" && !data.empty())
    return hangar::what_if(data, static_cast<std::uint32_t>(threshold), std::cout);
  if (cmd == "serve" && !data.empty())
    return hangar::serve(data, std::cin, std::cout);
  return usage();
}
