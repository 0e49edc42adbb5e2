#include "logging.hpp"

#include <mutex>

#include <spdlog/cfg/env.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "cairn/actors/log.hpp"

namespace cairn::detail {

namespace {

/// `%*`: the message as the inside of a JSON string.
class json_message final : public spdlog::custom_flag_formatter {
public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char hex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      switch (c) {
        case '"': dest.append(std::string_view{"\\\""}); break;
        case '\\': dest.append(std::string_view{"\\\\"}); break;
        case '\n': dest.append(std::string_view{"\\n"}); break;
        case '\r': dest.append(std::string_view{"\\r"}); break;
        case '\t': dest.append(std::string_view{"\\t"}); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            auto u = static_cast<unsigned char>(c);
            const char esc[] = {'\\', 'u', '0', '0', hex[u >> 4], hex[u & 0xf]};
            dest.append(esc, esc + sizeof esc);
          } else {
            dest.push_back(c);
          }
      }
    }
  }

  [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<json_message>();
  }
};

constexpr const char* module_loggers[] = {actors::runtime_logger,    actors::journal_logger,
                                          actors::registry_logger,   actors::aggregate_logger,
                                          actors::subscriber_logger, actors::cluster_logger};

struct logging {
  std::mutex mutex; // one configuration at a time
  std::shared_ptr<spdlog::sinks::dist_sink_mt> dist =
    std::make_shared<spdlog::sinks::dist_sink_mt>();
  spdlog::sink_ptr stderr_sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  std::vector<std::shared_ptr<spdlog::logger>> loggers;

  logging() {
    for (const char* name : module_loggers) {
      auto found = spdlog::get(name);
      if (!found) {
        found = std::make_shared<spdlog::logger>(name, dist);
        spdlog::initialize_logger(found); // registers it, so the actors find it
      }
      loggers.push_back(std::move(found));
    }
  }
};

logging& instance() {
  static logging l;
  return l;
}

} // namespace

std::unique_ptr<spdlog::formatter> make_formatter(log_encoding format) {
  if (format == log_encoding::text)
    return std::make_unique<spdlog::pattern_formatter>("[%Y-%m-%d %H:%M:%S.%e] [%l] [%n] %v");
  auto f = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
  f->add_flag<json_message>('*').set_pattern(
    R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","logger":"%n","thread":%t,"message":"%*"})");
  return f;
}

void configure_logging(log_encoding format, const std::vector<spdlog::sink_ptr>& sinks) {
  auto& l = instance();
  std::lock_guard lock{l.mutex};
  l.dist->set_sinks(sinks.empty() ? std::vector<spdlog::sink_ptr>{l.stderr_sink} : sinks);
  l.dist->set_formatter(make_formatter(format)); // after set_sinks: it formats each sink
  for (auto& logger : l.loggers)
    logger->set_level(spdlog::level::info);
  spdlog::cfg::load_env_levels();
}

} // namespace cairn::detail
