#include "cairn/persistence/codec.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>

// After codec.hpp: cereal's JSON archive configures rapidjson (asserts throw).
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace cairn::persistence {

namespace detail {

std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name{abi::__cxa_demangle(t.name(), nullptr, nullptr,
                                                                  &status),
                                              std::free};
  return status == 0 && name ? std::string{name.get()} : std::string{t.name()};
}

result<std::string> compact_json_member(const std::string& doc, const char* name) {
  try {
    rapidjson::Document d;
    // Iterative: no recursion however deep the value.
    d.Parse<rapidjson::kParseIterativeFlag>(doc.c_str(), doc.size());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember(name))
      return fail(errc::internal, "cereal's JSON archive wrote unexpected JSON");
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> writer{buf};
    d[name].Accept(writer);
    return std::string{buf.GetString(), buf.GetSize()};
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string{"JSON conversion failed: "} + e.what());
  }
}

} // namespace detail

result<void> event_registry::add_type(std::string name, std::uint32_t version, std::type_index t,
                                      json_fn json, check_fn check_payload) {
  if (!is_valid_type_name(name))
    return fail(errc::invalid_argument, "event type names are 1-255 printable bytes without spaces",
                name);
  if (by_name_.count(name) != 0)
    return fail(errc::invalid_argument, "event type name registered twice", name);
  if (auto it = by_type_.find(t); it != by_type_.end())
    return fail(errc::invalid_argument,
                "C++ type already registered under the name '" + it->second + "'", name);
  by_type_.emplace(t, name);
  by_name_.emplace(std::move(name), entry{version, t, json, check_payload, {}});
  return {};
}

result<void> event_registry::add_upcaster(std::string_view name, std::uint32_t from_version,
                                          upcast_fn step) {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    return fail(errc::invalid_argument, "upcaster for an unregistered event type",
                std::string{name});
  auto& e = it->second;
  auto ctx = std::string{name} + " v" + std::to_string(from_version);
  if (!step)
    return fail(errc::invalid_argument, "empty upcaster", ctx);
  if (from_version == 0 || from_version >= e.current)
    return fail(errc::invalid_argument,
                "upcaster must start below the current version " + std::to_string(e.current), ctx);
  if (e.steps.count(from_version) != 0)
    return fail(errc::invalid_argument, "upcaster registered twice", ctx);
  if (from_version + 1 != e.current && e.steps.count(from_version + 1) == 0)
    return fail(errc::invalid_argument,
                "missing upcaster step v" + std::to_string(from_version + 1) + " -> v"
                  + std::to_string(from_version + 2)
                  + " (register the steps newest first, so a chain has no hole)",
                ctx);
  e.steps.emplace(from_version, std::move(step));
  return {};
}

std::optional<std::uint32_t> event_registry::current_version(std::string_view name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    return std::nullopt;
  return it->second.current;
}

bool event_registry::can_decode(std::string_view name, std::uint32_t version) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    return false;
  // Steps are only accepted when they reach the current version, so one step suffices.
  return version == it->second.current || it->second.steps.count(version) != 0;
}

result<void> event_registry::check_decodable(
  const std::vector<std::pair<std::string, std::uint32_t>>& catalogue) const {
  std::string missing;
  for (const auto& [name, version] : catalogue) {
    if (can_decode(name, version))
      continue;
    if (!missing.empty())
      missing += ", ";
    missing += name + " v" + std::to_string(version);
  }
  if (!missing.empty())
    return fail(errc::invalid_argument,
                "the store holds event types this registry cannot decode: " + missing);
  return {};
}

result<std::string> event_registry::upcast(std::string_view name, std::uint32_t version,
                                           std::string payload) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end())
    return fail(errc::invalid_argument, "unknown event type", std::string{name});
  const auto& e = it->second;
  if (version > e.current)
    return fail(errc::invalid_argument,
                "stored version v" + std::to_string(version) + " is newer than the registered v"
                  + std::to_string(e.current),
                std::string{name});
  for (auto v = version; v < e.current; ++v) {
    auto step = e.steps.find(v);
    if (step == e.steps.end())
      return fail(errc::invalid_argument, "no upcaster from v" + std::to_string(v),
                  std::string{name});
    result<std::string> next = fail(errc::internal, "not upcast");
    try { // user code: whatever it throws becomes an error, for every caller
      next = step->second(payload);
    } catch (const std::exception& ex) {
      next = fail(errc::internal, std::string{"the upcaster threw: "} + ex.what());
    } catch (...) {
      next = fail(errc::internal, "the upcaster threw an exception that is not a std::exception");
    }
    if (!next) {
      auto err = next.error();
      err.context = std::string{name} + " v" + std::to_string(v);
      return tl::unexpected(std::move(err));
    }
    payload = std::move(*next);
  }
  return payload;
}

result<std::string> event_registry::to_json(std::string_view type, std::uint32_t version,
                                            std::string_view payload) const {
  auto it = by_name_.find(type);
  if (it == by_name_.end())
    return fail(errc::invalid_argument, "unknown event type", std::string{type});
  if (version == it->second.current)
    return it->second.json(payload, type);
  auto lifted = upcast(type, version, std::string{payload});
  if (!lifted)
    return tl::unexpected(lifted.error());
  return it->second.json(*lifted, type);
}

result<void> event_registry::check(std::string_view type, std::uint32_t version,
                                   std::string_view payload) const {
  auto it = by_name_.find(type);
  if (it == by_name_.end())
    return fail(errc::invalid_argument, "unknown event type", std::string{type});
  if (version == it->second.current)
    return it->second.check(payload, type);
  auto lifted = upcast(type, version, std::string{payload});
  if (!lifted)
    return tl::unexpected(lifted.error());
  return it->second.check(*lifted, type);
}

result<std::string_view> event_registry::name_of(std::type_index t) const {
  auto it = by_type_.find(t);
  if (it == by_type_.end())
    return fail(errc::invalid_argument,
                std::string{"C++ type is not a registered event type: "} + t.name());
  return std::string_view{it->second};
}

std::vector<std::pair<std::string, std::uint32_t>> event_registry::types() const {
  std::vector<std::pair<std::string, std::uint32_t>> out;
  out.reserve(by_name_.size());
  for (const auto& [name, e] : by_name_)
    out.emplace_back(name, e.current);
  return out;
}

} // namespace cairn::persistence
