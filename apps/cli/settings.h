// The command line's run settings in one table: each flag's type, default, range, the checkpoint keys it decides
// and whether a resumed run may change it. Commands add their flags from it, RunConfig reads them through it, and
// the resume check compares what it lists; the normalisation kinds' options come from their registry.
#pragma once

#include <cxxopts.hpp>

#include <cmath>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "minidl/error.h"

namespace minidl::cli {

/// One setting. Its default is written here once (or taken from the library's own default).
struct Setting {
  enum class Type { integer, number, text, toggle };  ///< toggle: a flag without a value
  std::string name;       ///< the flag without its dashes: "batch-size"
  std::string help;
  Type type = Type::text;
  std::string fallback;   ///< the default as the flag would be written; empty: none (the flag is optional)
  double min = -INFINITY, max = INFINITY;  ///< for numbers: the accepted range
  std::vector<std::string> choices;        ///< for text: the accepted values (empty: any)
  std::vector<std::string> keys;           ///< the checkpoint metadata keys it decides (RunConfig::to_metadata)
  bool resumable = false;                  ///< a resumed run may change it (--epochs); else it must match
  std::string group = "training";          ///< the --help section

  /// Throws naming the flag unless `value` is in range (a number) or one of the choices (text).
  void check(double value) const;
  void check(const std::string& value) const;
};

/// Every setting of the run (not the normalisation kinds' options: minidl/normalization.h).
const std::vector<Setting>& settings();
/// The setting named `name`; a name that is not in the table is a programming error, and throws saying so.
const Setting& setting_named(const std::string& name);
/// Adds these settings' flags to a command, with their help, types and defaults.
void add_settings(cxxopts::Options& options, const std::vector<std::string>& names);

/// True when the command defines the flag `name` (whether or not it was given).
bool defines(const cxxopts::ParseResult& f, const std::string& name);

/// A setting's value: the flag's when given, else its default; checked against its range. T is any arithmetic
/// type for integer and number settings (read as int64_t and double), std::string for text, bool for toggles
/// (true when given). Asking for a name the table lacks, one the command does not define (a programming error:
/// add the flag with add_settings), or with the wrong kind of T, throws.
template <class T>
T setting(const cxxopts::ParseResult& f, const std::string& name) {
  const Setting& s = setting_named(name);
  if (!defines(f, name))
    fail("internal error: the command reads --", name, " but does not define it (add it with add_settings)");
  const bool given = f.count(name) > 0;
  if constexpr (std::is_same_v<T, bool>) {
    if (s.type != Setting::Type::toggle) fail("internal error: --", name, " takes a value, read as a toggle");
    return given;
  } else {
    if (!given && s.fallback.empty()) fail("internal error: --", name, " has no default: read it as optional_setting");
    if constexpr (std::is_same_v<T, std::string>) {
      if (s.type != Setting::Type::text) fail("internal error: --", name, " is not text");
      const std::string v = given ? f[name].as<std::string>() : s.fallback;
      s.check(v);
      return v;
    } else {
      double v = 0;
      if (s.type == Setting::Type::integer)
        v = static_cast<double>(given ? f[name].as<int64_t>() : std::stoll(s.fallback));
      else if (s.type == Setting::Type::number)
        v = given ? f[name].as<double>() : std::stod(s.fallback);
      else
        fail("internal error: --", name, " is not a number");
      s.check(v);
      if (s.type == Setting::Type::integer) return static_cast<T>(given ? f[name].as<int64_t>() : std::stoll(s.fallback));
      return static_cast<T>(v);
    }
  }
}

/// The setting's value where the command defines its flag, else its default: for code shared by commands of which
/// some leave the setting out on purpose (compare evaluates at --eval-batch-sizes, not --eval-batch-size).
template <class T>
T setting_or_default(const cxxopts::ParseResult& f, const std::string& name) {
  if (defines(f, name)) return setting<T>(f, name);
  cxxopts::Options none("defaults");
  add_settings(none, {name});
  const char* const argv[] = {"minidl"};
  return setting<T>(none.parse(1, argv), name);
}

/// The value of a setting without a default, when its flag is given.
template <class T>
std::optional<T> optional_setting(const cxxopts::ParseResult& f, const std::string& name) {
  setting_named(name);
  if (!defines(f, name))
    fail("internal error: the command reads --", name, " but does not define it (add it with add_settings)");
  if (!f.count(name)) return std::nullopt;
  return setting<T>(f, name);
}

}  // namespace minidl::cli
