// An enum's names, written once. Beside each enum E a table
//
//   inline constexpr EnumNames<E, 2> kENames = {{{E::kA, "a"}, {E::kB, "b"}}};
//   constexpr const auto& NamesOf(E) { return kENames; }
//
// makes ToString(E), EnumFromName<E> and the config parser's choices (pipeline/config.cpp `Enum`)
// read the same list, in the order the config documents it; NamesOf is found by argument-dependent
// lookup, so the table lives with its enum in whichever layer owns it.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace csst {

template <class E>
struct EnumName {
  E value;
  const char* name;
};
template <class E, size_t N>
using EnumNames = std::array<EnumName<E>, N>;

// The name of `value` in its table; "?" for a value the table lacks (an enum cast from an integer).
template <class E, class = decltype(NamesOf(E{}))>
constexpr const char* ToString(E value) {
  for (const auto& n : NamesOf(value))
    if (n.value == value) return n.name;
  return "?";
}

// The value named `name`; nullopt when no value has that name (names are case-sensitive).
template <class E>
std::optional<E> EnumFromName(std::string_view name) {
  for (const auto& n : NamesOf(E{}))
    if (name == n.name) return n.value;
  return std::nullopt;
}

// The value named `name` where a reader meets it; otherwise throws Err("<context> '<name>',
// expected a, b or c"), so every reader's message names the file, the key or cell, the value and
// the choices alike.
template <class E, class Err>
E ParseEnumName(std::string_view name, const std::string& context) {
  if (const auto value = EnumFromName<E>(name)) return *value;
  const auto& names = NamesOf(E{});
  std::string expected;
  for (size_t i = 0; i < names.size(); ++i)
    expected += std::string(i == 0 ? "" : i + 1 == names.size() ? " or " : ", ") + names[i].name;
  throw Err(context + " '" + std::string(name) + "', expected " + expected);
}

// "a, b, c": the names in table order, for messages and the config's documentation.
template <class E>
std::string EnumNameList(const char* separator = ", ") {
  std::string out;
  for (const auto& n : NamesOf(E{})) {
    if (!out.empty()) out += separator;
    out += n.name;
  }
  return out;
}

}  // namespace csst
