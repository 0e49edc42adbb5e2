#include "lmdb/head_cache.hpp"

#include <xxhash.h>

#include <algorithm>
#include <tuple>

namespace cairn::persistence::detail {

std::pair<head_cache::entry*, bool> head_cache::find_or_insert(std::string_view name) {
  auto hash = XXH3_64bits(name.data(), name.size());
  if ((entries_.size() + 1) * 2 > slots_.size())
    grow();
  auto mask = slots_.size() - 1;
  for (auto i = static_cast<std::size_t>(hash) & mask;; i = (i + 1) & mask) {
    auto& s = slots_[i];
    if (s.index == 0) {
      entries_.emplace_back(std::piecewise_construct, std::forward_as_tuple(name),
                            std::forward_as_tuple());
      s = slot{hash, entries_.size()};
      return {&entries_.back(), true};
    }
    auto& e = entries_[s.index - 1];
    if (s.hash == hash && e.first == name)
      return {&e, false};
  }
}

void head_cache::erase_inserted(const entry* e) {
  auto hash = XXH3_64bits(e->first.data(), e->first.size());
  auto mask = slots_.size() - 1;
  // The newest entry: nothing inserted after it can have probed past its slot.
  for (auto i = static_cast<std::size_t>(hash) & mask;; i = (i + 1) & mask)
    if (slots_[i].index == entries_.size()) {
      slots_[i] = slot{};
      break;
    }
  entries_.pop_back();
}

void head_cache::grow() {
  std::vector<slot> bigger(std::max<std::size_t>(1024, slots_.size() * 2));
  auto mask = bigger.size() - 1;
  for (const auto& s : slots_) {
    if (s.index == 0)
      continue;
    auto i = static_cast<std::size_t>(s.hash) & mask;
    while (bigger[i].index != 0)
      i = (i + 1) & mask;
    bigger[i] = s;
  }
  slots_ = std::move(bigger);
}

} // namespace cairn::persistence::detail
