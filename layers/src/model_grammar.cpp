// The model grammar: a description's layers, blocks and repetitions parsed into LayerSpecs (kinds checked against
// the registry in models.cpp), and its one canonical spelling. docs/models.md documents it.
#include <functional>

#include "layer_registry.h"
#include "minidl/internal/text.h"
#include "minidl/models.h"

namespace minidl {
using internal::split;
using internal::trim;
using registry::find_kind;
using registry::kind_names;

namespace {
// The parts of `text` between the commas outside parentheses, each with its column in the description.
std::vector<std::pair<std::string, size_t>> top_level_parts(const std::string& text, size_t column,
                                                            const std::function<Error(size_t, const std::string&)>& bad) {
  std::vector<std::pair<std::string, size_t>> parts;
  size_t start = 0;
  int depth = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ',';
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) throw bad(column + i, "')' without its '('");
    if (c != ',' || depth > 0) continue;
    parts.emplace_back(text.substr(start, i - start), column + start);
    start = i + 1;
  }
  if (depth > 0) throw bad(column + text.size(), "'(' without its ')'");
  return parts;
}

struct Parser {
  const std::string& description;
  int64_t layers = 0;  // expanded so far, against kMaxLayers

  Error bad(const LayerSpec& spec, size_t column, const std::string& message) const {
    return Error(detail::concat("model description '", description, "': layer ", spec.position, " '", spec.text,
                                "' (character ", column + 1, "): ", message));
  }

  std::vector<LayerSpec> list(const std::string& text, size_t column, int depth) {
    std::vector<LayerSpec> out;
    const auto unplaced = [&](size_t at, const std::string& message) {
      return Error(detail::concat("model description '", description, "' (character ", at + 1, "): ", message));
    };
    int position = 0;
    for (const auto& [raw, at_raw] : top_level_parts(text, column, unplaced)) {
      LayerSpec spec;
      spec.position = ++position;
      spec.text = trim(raw);
      const size_t at = at_raw + (spec.text.empty() ? 0 : raw.find_first_not_of(" \t\n"));
      if (spec.text.empty()) throw bad(spec, at, "empty layer (two commas in a row, or one at an end?)");
      // N*LAYER: the layer (or block) N times.
      int64_t repeat = 1;
      std::string body = spec.text;
      size_t body_at = at;
      if (const size_t star = body.find('*'); star != std::string::npos && body.find('(') > star) {
        const std::optional<int64_t> n = internal::parse_integer(trim(body.substr(0, star)));
        if (!n || *n < 1 || *n > kMaxRepeat)
          throw bad(spec, at, "a repetition is N*LAYER with N a whole number in [1, " + std::to_string(kMaxRepeat) + "], got '" +
                                  trim(body.substr(0, star)) + "*'");
        const std::string rest = body.substr(star + 1);
        body_at += star + 1 + (rest.find_first_not_of(" \t\n") == std::string::npos ? 0 : rest.find_first_not_of(" \t\n"));
        body = trim(rest);
        repeat = *n;
        if (body.empty()) throw bad(spec, at, "nothing to repeat after '*'");
      }
      const size_t open = body.find('(');
      if (open != std::string::npos || body.find(')') != std::string::npos) {
        const std::string head = trim(body.substr(0, open));
        if ((head != "residual" && !head.empty()) || body.back() != ')')
          throw bad(spec, body_at, "parentheses hold a block's layers, residual(LAYERS), or a group to repeat, "
                                   "N*(LAYERS): e.g. 3*(residual(conv:16x3:padding=same,bn,relu,conv:16x3:padding=same,bn),relu)");
        if (depth + 1 > kMaxNesting)
          throw bad(spec, body_at, "blocks and groups nest at most " + std::to_string(kMaxNesting) + " deep");
        const std::string inner = body.substr(open + 1, body.size() - open - 2);
        if (trim(inner).empty()) throw bad(spec, body_at, head + "() needs its layers: " + head + "(LAYERS)");
        const int64_t before = layers;
        std::vector<LayerSpec> inside = list(inner, body_at + open + 1, depth + 1);
        if (head.empty()) {  // a group: its layers in place, N times
          layers += (layers - before) * (repeat - 1);
          if (layers > kMaxLayers)
            throw bad(spec, at, "the description expands to more than " + std::to_string(kMaxLayers) + " layers");
          for (LayerSpec& layer : inside) layer.position = spec.position;  // errors name the group's place
          for (int64_t k = 1; k < repeat; ++k) out.insert(out.end(), inside.begin(), inside.end());
          out.insert(out.end(), std::make_move_iterator(inside.begin()), std::make_move_iterator(inside.end()));
          continue;
        }
        spec.kind = "residual";
        spec.layers = std::move(inside);
        layers += (layers - before) * (repeat - 1) + repeat;  // the copies' layers, and the blocks themselves
      } else {
        token(spec, body, body_at);
        layers += repeat;
      }
      if (layers > kMaxLayers)
        throw bad(spec, at, "the description expands to more than " + std::to_string(kMaxLayers) + " layers");
      for (int64_t k = 1; k < repeat; ++k) out.push_back(spec);
      out.push_back(std::move(spec));
    }
    return out;
  }

  // KIND(:VALUE)*(:KEY=VALUE)*
  void token(LayerSpec& spec, const std::string& text, size_t at) const {
    if (text == "residual") throw bad(spec, at, "residual takes its layers in parentheses: residual(LAYERS)");
    const std::vector<std::string> parts = split(text, ':');
    spec.kind = trim(parts[0]);
    const LayerKind* kind = find_kind(spec.kind);
    if (!kind)
      throw bad(spec, at, "unknown layer kind '" + spec.kind + "': choose one of " + internal::join(kind_names()) +
                              ", or residual(LAYERS)");
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string part = trim(parts[i]);
      const size_t eq = part.find('=');
      if (part.empty()) throw bad(spec, at, "empty value after ':' (usage: " + kind->usage + ")");
      if (eq == std::string::npos) {
        if (!spec.options.empty()) throw bad(spec, at, "value '" + part + "' after a key=value option (values come first)");
        spec.values.push_back(part);
        continue;
      }
      const std::string key = trim(part.substr(0, eq)), value = trim(part.substr(eq + 1));
      if (key.empty() || value.empty()) throw bad(spec, at, "option '" + part + "' needs key=value");
      bool known = false;
      for (const std::string& k : kind->option_keys) known = known || k == key;
      if (!known)
        throw bad(spec, at, "unknown option '" + key + "' for " + kind->name + " (usage: " + kind->usage + ")" +
                                (kind->option_keys.empty() ? "" : "; its options: " + internal::join(kind->option_keys)));
      for (const auto& [k, v] : spec.options)
        if (k == key) throw bad(spec, at, "option '" + key + "' given twice");
      spec.options.emplace_back(key, value);
    }
    if (spec.values.size() < kind->min_values || spec.values.size() > kind->max_values)
      throw bad(spec, at, kind->name + " takes " +
                              (kind->min_values == kind->max_values ? std::to_string(kind->min_values)
                                                                    : std::to_string(kind->min_values) + " to " +
                                                                          std::to_string(kind->max_values)) +
                              " value(s), got " + std::to_string(spec.values.size()) + " (usage: " + kind->usage + ")");
    spec.kind = kind->name;
  }
};

void canonical(const std::vector<LayerSpec>& layers, std::string& out) {
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerSpec& spec = layers[i];
    if (i > 0) out += ',';
    if (spec.kind == "residual") {
      out += "residual(";
      canonical(spec.layers, out);
      out += ')';
      continue;
    }
    out += spec.kind;
    for (const std::string& v : spec.values) out += ':' + v;
    for (const auto& [k, v] : spec.options) out += ':' + k + '=' + v;
  }
}
}  // namespace

std::vector<LayerSpec> parse_model_description(const std::string& description) {
  if (trim(description).empty())
    fail("model description is empty: expected layers separated by commas, e.g. ", kDocumentModel);
  Parser parser{description};
  return parser.list(description, 0, 0);
}

std::string canonical_description(const std::string& description) {
  std::string out;
  canonical(parse_model_description(description), out);
  return out;
}

}  // namespace minidl
