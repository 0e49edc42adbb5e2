#pragma once

/// Event payload codec: cereal binary archives, an event type registry keyed
/// by (type name, schema version), and upcasters that lift stored payloads
/// one version at a time.
///
///   struct deposited { std::int64_t amount; template <class A> void serialize(A& a) { a(amount); } };
///   CEREAL_CLASS_VERSION(deposited, 2)
///
///   event_registry reg;
///   reg.add<deposited>("deposited");                         // current: v2
///   reg.add_upcaster<deposited_v1, deposited>("deposited", 1,
///       [](const deposited_v1& old) { return deposited{old.cents * 100}; });
///   auto data = reg.encode(deposited{5});                    // event_data for append
///   auto back = reg.decode<std::variant<opened, deposited>>(recorded);
///   auto json = reg.to_json(recorded.type, recorded.schema_version, recorded.payload);
///
/// Payloads are little-endian (cereal's binary archive): a store moves only
/// between little-endian machines.

#include <cstdint>
#include <cstring>
#include <type_traits>
#include <typeinfo>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <string>
#include <string_view>
#include <typeindex>
#include <utility>
#include <variant>
#include <vector>

#include <cereal/archives/binary.hpp>
#include <cereal/archives/json.hpp>
#include <cereal/details/helpers.hpp>

#include "cairn/model/error.hpp"
#include "cairn/persistence/types.hpp"

namespace cairn::persistence {

/// The schema version of T as stored beside its bytes: CEREAL_CLASS_VERSION
/// sets it (a static inline const, not a constant expression); a type
/// without one is version 1.
template <class T> [[nodiscard]] std::uint32_t schema_version_of() {
  const std::uint32_t v = cereal::detail::Version<T>::version;
  return v == 0 ? 1 : v;
}

namespace detail {

/// Appends to a std::string; cheaper than an ostringstream per call.
class string_outbuf : public std::streambuf {
public:
  void target(std::string* out) { out_ = out; }

protected:
  std::streamsize xsputn(const char* p, std::streamsize n) override {
    out_->append(p, static_cast<std::size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof())
      out_->push_back(static_cast<char>(c));
    return c;
  }

private:
  std::string* out_ = nullptr;
};

// Building a std::ostream looks up locale facets (several dynamic_casts):
// more than encoding a small event. Each thread keeps one; a nested use (a
// serialize that encodes) gets a fresh one.
struct thread_streams {
  string_outbuf out_buf;
  std::ostream out{&out_buf};
  bool out_busy = false;

  static thread_streams& get() {
    static thread_local thread_streams streams;
    return streams;
  }
};

/// Marks a thread stream busy for its scope.
class stream_lease {
public:
  explicit stream_lease(bool& busy) : busy_(busy) { busy_ = true; }
  ~stream_lease() { busy_ = false; }
  stream_lease(const stream_lease&) = delete;
  stream_lease& operator=(const stream_lease&) = delete;

private:
  bool& busy_;
};

template <class T> struct is_variant : std::false_type {};
template <class... Ts> struct is_variant<std::variant<Ts...>> : std::true_type {};

/// The readable name of a C++ type (demangled `typeid(t).name()`).
[[nodiscard]] std::string type_name(const std::type_info& t);

/// Reads what cereal::BinaryOutputArchive wrote (same bytes) from a byte
/// range, with bounds: a string, vector or map length (a cereal SizeTag) larger
/// than the bytes left, a read past the end, or values nested deeper than
/// `max_depth` throw cereal::Exception instead of allocating or recursing. So
/// decoding N bytes allocates at most about N times the largest element size.
/// A container of elements that encode to zero bytes (empty structs) is
/// therefore limited to as many elements as bytes follow its length.
class bounded_binary_input_archive
    : public cereal::InputArchive<bounded_binary_input_archive, cereal::AllowEmptyClassElision> {
public:
  /// Nesting bound: values inside values (a recursive type could otherwise
  /// recurse once per input byte and exhaust the stack).
  static constexpr std::size_t max_depth = 512;

  explicit bounded_binary_input_archive(std::string_view bytes)
      : cereal::InputArchive<bounded_binary_input_archive, cereal::AllowEmptyClassElision>(this),
        begin_(bytes.data()), at_(bytes.data()), end_(bytes.data() + bytes.size()) {
    // nop
  }

  ~bounded_binary_input_archive() noexcept = default;

  /// Copies the next `size` bytes to `data`; throws past the end.
  void loadBinary(void* data, std::size_t size) {
    if (size > remaining())
      throw cereal::Exception("reading " + std::to_string(size) + " bytes at byte "
                              + std::to_string(offset()) + " runs past the end ("
                              + std::to_string(remaining()) + " left)");
    if (size != 0)
      std::memcpy(data, at_, size);
    at_ += size;
  }

  /// Refuses a container length larger than the bytes left: every element
  /// takes at least one byte.
  void check_size(std::uint64_t size) const {
    if (size > remaining())
      throw cereal::Exception("a length of " + std::to_string(size) + " at byte "
                              + std::to_string(offset() - sizeof(cereal::size_type))
                              + " is beyond the " + std::to_string(remaining()) + " bytes left");
  }

  void enter() {
    if (++depth_ > max_depth)
      throw cereal::Exception("values nested deeper than " + std::to_string(max_depth) + " at byte "
                              + std::to_string(offset()));
  }
  void leave() noexcept { --depth_; }

  /// Bytes not read yet.
  [[nodiscard]] std::size_t remaining() const noexcept {
    return static_cast<std::size_t>(end_ - at_);
  }
  /// Bytes read so far.
  [[nodiscard]] std::size_t offset() const noexcept {
    return static_cast<std::size_t>(at_ - begin_);
  }

private:
  const char* begin_;
  const char* at_;
  const char* end_;
  std::size_t depth_ = 0;
};

// The archive's overloads, found by argument-dependent lookup.

template <class T> void prologue(bounded_binary_input_archive& ar, const T&) { ar.enter(); }

template <class T> void epilogue(bounded_binary_input_archive& ar, const T&) noexcept {
  ar.leave();
}

template <class T>
std::enable_if_t<std::is_arithmetic<T>::value && !std::is_same<T, bool>::value>
CEREAL_LOAD_FUNCTION_NAME(bounded_binary_input_archive& ar, T& t) {
  ar.loadBinary(std::addressof(t), sizeof(t));
}

/// A bool is one byte, 0 or 1 (what the binary archive writes): reading any
/// other byte as a bool is undefined behaviour (found by tests/fuzz/payload.cpp).
inline void CEREAL_LOAD_FUNCTION_NAME(bounded_binary_input_archive& ar, bool& t) {
  unsigned char byte = 0;
  ar.loadBinary(&byte, 1);
  if (byte > 1)
    throw cereal::Exception("a bool of " + std::to_string(byte) + " at byte "
                            + std::to_string(ar.offset() - 1) + " (0 or 1 expected)");
  t = byte == 1;
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(bounded_binary_input_archive& ar, cereal::NameValuePair<T>& t) {
  ar(t.value);
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(bounded_binary_input_archive& ar, cereal::SizeTag<T>& t) {
  ar(t.size);
  ar.check_size(static_cast<std::uint64_t>(t.size));
}

template <class T>
void CEREAL_LOAD_FUNCTION_NAME(bounded_binary_input_archive& ar, cereal::BinaryData<T>& bd) {
  ar.loadBinary(bd.data, static_cast<std::size_t>(bd.size));
}

} // namespace detail

/// Event and state type names: 1-255 printable ASCII bytes without spaces.
[[nodiscard]] inline bool is_valid_type_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 255)
    return false;
  for (char c : name)
    if (c <= ' ' || c >= 127)
      return false;
  return true;
}

/// Encodes `value` with cereal's binary archive, appending to `out`.
template <class T> void encode_payload(const T& value, std::string& out) {
  auto& ts = detail::thread_streams::get();
  if (ts.out_busy) {
    detail::string_outbuf buf;
    buf.target(&out);
    std::ostream os{&buf};
    cereal::BinaryOutputArchive ar{os};
    ar(value);
    return;
  }
  detail::stream_lease lease{ts.out_busy};
  ts.out_buf.target(&out);
  ts.out.clear();
  cereal::BinaryOutputArchive ar{ts.out};
  ar(value);
}

namespace detail {

/// decode_payload, naming the type `name` in its errors.
template <class T>
[[nodiscard]] result<T> decode_payload_as(std::string_view bytes, std::string_view name) {
  auto failed = [&](const std::string& why) {
    return fail(errc::corrupted,
                "payload of " + (name.empty() ? type_name(typeid(T)) : std::string{name}) + " ("
                  + std::to_string(bytes.size()) + " bytes) does not decode: " + why);
  };
  try {
    T value{};
    bounded_binary_input_archive ar{bytes};
    ar(value);
    if (ar.remaining() != 0)
      return failed(std::to_string(ar.remaining()) + " trailing bytes after the payload");
    return value;
  } catch (const std::exception& e) {
    return failed(e.what());
  } catch (...) { // a user type's serialize or constructor: never past here
    return failed("an exception that is not a std::exception");
  }
}

} // namespace detail

/// Decodes a `T` from exactly `bytes`; `corrupted` on truncated, oversized or
/// malformed input, never a half-built value. Bounded: no length inside the
/// payload can make it allocate more than about `bytes.size()` times the
/// largest element (detail::bounded_binary_input_archive). The message names
/// the C++ type; callers add the stream and position.
template <class T> [[nodiscard]] result<T> decode_payload(std::string_view bytes) {
  return detail::decode_payload_as<T>(bytes, {});
}

/// Decodes a stored value that may be absent (a read model's key): absent
/// stays absent, an error stays the error.
template <class T>
[[nodiscard]] result<std::optional<T>>
decode_optional(const result<std::optional<std::string>>& raw) {
  if (!raw)
    return tl::unexpected(raw.error());
  if (!*raw)
    return std::optional<T>{};
  auto v = decode_payload<T>(**raw);
  if (!v)
    return tl::unexpected(v.error());
  return std::optional<T>{std::move(*v)};
}

namespace detail {

/// The member `name` of the JSON object `doc`, re-written compactly.
[[nodiscard]] result<std::string> compact_json_member(const std::string& doc, const char* name);

/// Decodes a `T` and discards it: only whether the payload decodes.
template <class T>
[[nodiscard]] result<void> payload_check(std::string_view payload, std::string_view name) {
  auto value = decode_payload_as<T>(payload, name);
  if (!value)
    return tl::unexpected(value.error());
  return {};
}

/// Decodes a `T` and writes it with cereal's JSON archive (tools).
template <class T>
[[nodiscard]] result<std::string> payload_to_json(std::string_view payload, std::string_view name) {
  auto value = decode_payload_as<T>(payload, name);
  if (!value)
    return tl::unexpected(value.error());
  std::ostringstream os;
  try {
    // The archive wraps everything in a root object: name the value, unwrap it.
    cereal::JSONOutputArchive ar{os, cereal::JSONOutputArchive::Options::NoIndent()};
    ar(cereal::make_nvp("data", *value));
  } catch (const std::exception& e) {
    return fail(errc::internal, std::string{"payload does not convert to JSON: "} + e.what());
  }
  return compact_json_member(os.str(), "data");
}

} // namespace detail

/// The event types a store may hold, and how to read their old versions.
/// Register everything before sharing it; after that it is read-only and safe
/// to use from any thread.
class event_registry {
public:
  /// Lifts a payload from version N to N+1.
  using upcast_fn = std::function<result<std::string>(std::string_view payload)>;

  /// Registers `T` under `name` at its current schema version
  /// (CEREAL_CLASS_VERSION, or 1). Names are 1-255 bytes; each name and each
  /// type is registered once. `T`'s serialize must also accept cereal's JSON
  /// archive (a template serialize does), for `to_json`.
  template <class T> [[nodiscard]] result<void> add(std::string name) {
    return add_type(std::move(name), schema_version_of<T>(), std::type_index(typeid(T)),
                    &detail::payload_to_json<T>, &detail::payload_check<T>);
  }

  /// Registers the step that lifts `name` payloads from `from_version` to
  /// `from_version + 1`. Steps are registered newest first: the step from
  /// `from_version + 1` must already exist unless that is the current version,
  /// so a chain with a missing step fails here, not at read time.
  [[nodiscard]] result<void> add_upcaster(std::string_view name, std::uint32_t from_version,
                                          upcast_fn step);

  /// Typed step: decodes `Old`, calls `f(old) -> New`, encodes `New`.
  template <class Old, class New, class F>
  [[nodiscard]] result<void> add_upcaster(std::string_view name, std::uint32_t from_version, F f) {
    return add_upcaster(name, from_version,
                        [f = std::move(f)](std::string_view bytes) -> result<std::string> {
                          auto old = decode_payload<Old>(bytes);
                          if (!old)
                            return tl::unexpected(old.error());
                          std::string out;
                          encode_payload(New{f(*old)}, out);
                          return out;
                        });
  }

  /// The current schema version of `name`; nullopt when unregistered.
  [[nodiscard]] std::optional<std::uint32_t> current_version(std::string_view name) const;

  /// True when a payload of (`name`, `version`) can be brought to the current version.
  [[nodiscard]] bool can_decode(std::string_view name, std::uint32_t version) const;

  /// `invalid_argument` naming every pair in `catalogue` that cannot be decoded.
  [[nodiscard]] result<void>
  check_decodable(const std::vector<std::pair<std::string, std::uint32_t>>& catalogue) const;

  /// Brings a payload stored at `version` to the current version of `name`.
  [[nodiscard]] result<std::string> upcast(std::string_view name, std::uint32_t version,
                                           std::string payload) const;

  /// The registered name of `T`; `invalid_argument` when unregistered.
  template <class T> [[nodiscard]] result<std::string_view> name_of() const {
    return name_of(std::type_index(typeid(T)));
  }

  /// Encodes `event` (a registered type, or a variant of them) for an append.
  template <class T> [[nodiscard]] result<event_data> encode(const T& event) const {
    if constexpr (detail::is_variant<T>::value) {
      return std::visit([this](const auto& alt) { return encode(alt); }, event);
    } else {
      auto name = name_of<T>();
      if (!name)
        return tl::unexpected(name.error());
      event_data out;
      out.type = std::string{*name};
      out.schema_version = schema_version_of<T>();
      encode_payload(event, out.payload);
      return out;
    }
  }

  /// Decodes a stored event into `T` (a registered type, or a variant whose
  /// alternatives are registered), upcasting old versions first.
  template <class T>
  [[nodiscard]] result<T> decode(std::string_view type, std::uint32_t version,
                                 std::string_view payload) const {
    auto current = current_version(type);
    if (!current)
      return fail(errc::invalid_argument, "unknown event type", std::string{type});
    if (version == *current)
      return decode_as<T>(type, payload);
    auto lifted = upcast(type, version, std::string{payload});
    if (!lifted)
      return tl::unexpected(lifted.error());
    return decode_as<T>(type, *lifted);
  }

  template <class T> [[nodiscard]] result<T> decode(const recorded_event& ev) const {
    return decode<T>(ev.type, ev.schema_version, ev.payload);
  }

  /// The payload of a stored event as compact JSON, written by cereal's JSON
  /// archive after upcasting an old version (tools: `cairn events`, `export`).
  /// Fields serialized without a name appear as "value0", "value1", …;
  /// `cereal::make_nvp` names them. `invalid_argument` for an unknown type or
  /// version, `corrupted` when the payload does not decode.
  [[nodiscard]] result<std::string> to_json(std::string_view type, std::uint32_t version,
                                            std::string_view payload) const;

  /// Decodes a stored payload (upcasting an old version first) and discards
  /// it: whether it decodes, without a C++ type at hand (tools: `cairn
  /// import`). `invalid_argument` for an unknown type or version, `corrupted`
  /// when the payload does not decode.
  [[nodiscard]] result<void> check(std::string_view type, std::uint32_t version,
                                   std::string_view payload) const;

  /// Every registered (name, current version), sorted by name.
  [[nodiscard]] std::vector<std::pair<std::string, std::uint32_t>> types() const;

private:
  /// Writes a current-version payload as JSON.
  using json_fn = result<std::string> (*)(std::string_view payload, std::string_view name);

  /// Decodes a current-version payload and discards it.
  using check_fn = result<void> (*)(std::string_view payload, std::string_view name);

  struct entry {
    std::uint32_t current = 1;
    std::type_index type;
    json_fn json;
    check_fn check;
    std::map<std::uint32_t, upcast_fn> steps; // from-version -> step to from+1
  };

  [[nodiscard]] result<void> add_type(std::string name, std::uint32_t version, std::type_index t,
                                      json_fn json, check_fn check_payload);
  [[nodiscard]] result<std::string_view> name_of(std::type_index t) const;

  template <class T>
  [[nodiscard]] result<T> decode_as(std::string_view type, std::string_view payload) const {
    if constexpr (detail::is_variant<T>::value) {
      return decode_variant<T>(type, payload, std::make_index_sequence<std::variant_size_v<T>>{});
    } else {
      auto name = name_of<T>();
      if (!name)
        return tl::unexpected(name.error());
      if (*name != type)
        return fail(errc::invalid_argument,
                    "event type '" + std::string{type} + "' is not '" + std::string{*name} + "'");
      return detail::decode_payload_as<T>(payload, *name);
    }
  }

  template <class V, std::size_t... Is>
  [[nodiscard]] result<V> decode_variant(std::string_view type, std::string_view payload,
                                         std::index_sequence<Is...>) const {
    result<V> out = fail(errc::invalid_argument, "event type is not an alternative of this variant",
                         std::string{type});
    // One lookup by name, then type comparisons: this runs per decoded event.
    auto it = by_name_.find(type);
    if (it == by_name_.end())
      return out;
    const std::type_index registered = it->second.type;
    auto try_one = [&](auto tag) {
      using alt = typename decltype(tag)::type;
      if (registered != std::type_index(typeid(alt)))
        return false;
      auto v = detail::decode_payload_as<alt>(payload, type);
      out = v ? result<V>{V{std::in_place_type<alt>, std::move(*v)}}
              : result<V>{tl::unexpected(v.error())};
      return true;
    };
    (try_one(type_tag<std::variant_alternative_t<Is, V>>{}) || ...);
    return out;
  }

  template <class T> struct type_tag { using type = T; };

  std::map<std::string, entry, std::less<>> by_name_;
  std::map<std::type_index, std::string> by_type_;
};

namespace detail {

template <class T> struct event_alternatives { using list = std::variant<T>; };
template <class... Ts> struct event_alternatives<std::variant<Ts...>> {
  using list = std::variant<Ts...>;
};

template <class... Ts> std::vector<std::string> type_names_of(std::variant<Ts...>*) {
  return {Ts::type_name...};
}

template <class T> result<void> register_event_type(event_registry& reg) {
  static_assert(std::is_convertible_v<decltype(T::type_name), const char*>,
                "every event struct needs static constexpr const char* type_name");
  if (reg.name_of<T>())
    return {}; // shared by two aggregate types: registered once
  return reg.add<T>(T::type_name);
}

template <class... Ts>
result<void> register_alternatives(event_registry& reg, std::variant<Ts...>*) {
  result<void> out;
  ((out = out ? register_event_type<Ts>(reg) : out), ...);
  return out;
}

} // namespace detail

/// Registers `Events` (an event struct, or every alternative of a variant of
/// them) under each struct's `static constexpr const char* type_name`, the
/// convention of cairn's aggregates. A type registered already is skipped,
/// so two aggregate types may share events.
template <class Events> [[nodiscard]] result<void> register_event_types(event_registry& reg) {
  using list = typename detail::event_alternatives<Events>::list;
  return detail::register_alternatives(reg, static_cast<list*>(nullptr));
}

/// The `type_name`s of `Events` (an event struct or a variant of them).
template <class Events> [[nodiscard]] std::vector<std::string> event_type_names() {
  using list = typename detail::event_alternatives<Events>::list;
  return detail::type_names_of(static_cast<list*>(nullptr));
}

} // namespace cairn::persistence

// For polymorphic types, and so cereal pairs the archive with the one that
// wrote its bytes (load_minimal types). Only this direction:
// CEREAL_SETUP_ARCHIVE_TRAITS would also map BinaryOutputArchive back to an
// input archive, which binary.hpp already does.
CEREAL_REGISTER_ARCHIVE(cairn::persistence::detail::bounded_binary_input_archive)
namespace cereal::traits::detail {
template <> struct get_output_from_input<cairn::persistence::detail::bounded_binary_input_archive> {
  using type = cereal::BinaryOutputArchive;
};
} // namespace cereal::traits::detail
