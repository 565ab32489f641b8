// The normalisation kinds' option flags on the command line (--momentum, --renorm-clipping, ...): their help, and
// their values read into a ModelConfig, each refused unless a kind the command trains takes it.
#include <algorithm>
#include <cctype>
#include <cmath>

#include "minidl/internal/text.h"
#include "run.h"

namespace minidl::cli {
namespace {
bool listed(const std::vector<std::string>& items, const std::string& item) {
  return std::find(items.begin(), items.end(), item) != items.end();
}

// The kinds a command trains: --modes (compare) or the one --norm names.
std::vector<std::string> selected_kinds(const cxxopts::ParseResult& f, const std::string& norm) {
  const std::string modes = f.count("modes") ? f["modes"].as<std::string>() : "";
  return modes.empty() ? std::vector<std::string>{norm} : internal::split(modes, ',');
}

// The options a flag sets (one, or several for a key=value list such as --renorm-clipping).
std::vector<NormOption> options_of(const std::string& flag) {
  std::vector<NormOption> options;
  for (const NormOption& o : all_norm_options())
    if (o.flag == flag) options.push_back(o);
  return options;
}

// The kinds that take a flag.
std::vector<std::string> kinds_taking(const std::string& flag) {
  std::vector<std::string> kinds;
  for (const NormKind& k : norm_kinds())
    for (const NormOption& o : k.options)
      if (o.flag == flag && !listed(kinds, k.name)) kinds.push_back(k.name);
  return kinds;
}

}  // namespace

std::vector<std::string> norm_flags() {
  std::vector<std::string> flags;
  for (const NormOption& o : all_norm_options())
    if (!listed(flags, o.flag)) flags.push_back(o.flag);
  return flags;
}

void norm_option_flags(const cxxopts::ParseResult& f, ModelConfig& c) {
  const std::vector<std::string> selected = selected_kinds(f, c.norm);
  for (const std::string& flag : norm_flags()) {
    if (!f.count(flag)) continue;
    const std::vector<std::string> takers = kinds_taking(flag);
    if (std::none_of(selected.begin(), selected.end(), [&](const std::string& s) { return listed(takers, s); }))
      fail("--", flag, " applies to --norm ", internal::join(takers), f.count("modes")
               ? ", which --modes '" + f["modes"].as<std::string>() + "' does not include"
               : ", not " + c.norm);
    const std::vector<NormOption> options = options_of(flag);
    const std::string text = f[flag].as<std::string>();
    if (options.size() == 1) {  // --flag VALUE
      const double v = internal::parse_number(text);
      if (std::isnan(v)) fail("--", flag, " must be a number, got '", text, "'");
      options[0].check(v, "--" + flag);
      c.norm_options[options[0].key] = options[0].held(v);
      continue;
    }
    std::vector<std::string> keys;  // --flag key=value,key=value
    for (const NormOption& o : options) keys.push_back(o.key + "=" + char(std::toupper(o.key[0])));
    for (const std::string& item : internal::split(text, ',')) {
      const size_t eq = item.find('=');
      const std::string key = item.substr(0, eq);
      const auto o = std::find_if(options.begin(), options.end(), [&](const NormOption& x) { return x.key == key; });
      const double v = eq == std::string::npos ? NAN : internal::parse_number(item.substr(eq + 1));
      if (o == options.end() || std::isnan(v))
        fail("--", flag, ": expected ", internal::join({keys.begin(), keys.end() - 1}), " and ", keys.back(),
             " separated by commas, got '", item, "'");
      o->check(v, "--" + flag + ": " + key);
      c.norm_options[key] = o->held(v);
    }
  }
}

std::string option_help(const std::string& flag) {
  const std::vector<NormOption> options = options_of(flag);
  std::string help = options[0].help + " [" + internal::join(kinds_taking(flag)) + "]";
  if (options.size() > 1) return help;
  // The defaults, kind by kind where they differ (momentum: 0.99, batchwise 0).
  const auto text = [&](double v) { return options[0].integer ? std::to_string(static_cast<int64_t>(v)) : exact_text(v); };
  std::string defaults;
  for (const NormKind& k : norm_kinds())
    if (const NormOption* o = k.option(options[0].key); o && !std::isnan(o->fallback)) {
      if (defaults.empty()) defaults = text(o->fallback);
      else if (o->fallback != options[0].fallback) defaults += "; " + k.name + ": " + text(o->fallback);
    }
  return defaults.empty() ? help : help + " (default " + defaults + ")";
}

}  // namespace minidl::cli
