// Normalisation kinds: what each `bn` of a model description becomes (`--norm`), each registered once with its
// options, like layer kinds. The CLI's flags, the checkpoint's keys and the resume check come from here;
// docs/normalization.md describes the built-in kinds.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "minidl/models.h"

namespace minidl {

/// A setting of a normalisation kind: a number with a default and a range. It is carried as
/// ModelConfig::norm_options[key], in checkpoints as `model.<key>`, on the command line by `--<flag>`.
struct NormOption {
  std::string key;   ///< "virtual_batch_size": also the bn option that overrides it per layer, where bn has one
  std::string flag;  ///< "virtual-batch-size". Options sharing a flag take `key=value` lists: --renorm-clipping rmax=3,dmax=5
  std::string help;  ///< one line for --help
  double fallback = 0;  ///< the default; NaN: not set (renorm's clipping)
  double min = 0, max = 0;
  bool integer = false;   ///< a whole number
  bool open_min = false;  ///< min itself is excluded: (min, max]
  /// Throws naming `where` unless `value` is in range (and whole, for an integer option).
  void check(double value, const std::string& where) const;
  /// "[0, 1]" or "(0, 1]".
  std::string range() const;
  /// `value` as the layers hold it: float precision for a number, so that settings read from a flag and from a
  /// checkpoint compare equal.
  double held(double value) const { return integer ? value : static_cast<double>(static_cast<float>(value)); }
};

/// What a kind's factory sees for one `bn`: the layer as written (its key=value options override the model's
/// settings), its channels (the input's last axis) and its epsilon.
struct NormArgs {
  const LayerArgs& layer;
  int64_t channels;
  float epsilon;
  /// Option `key`: the bn's own `key=value`, else the model's setting, else the kind's default (`fallback` when
  /// the kind has no such option).
  double option(const std::string& key, double fallback = NAN) const;
};

/// A kind of normalisation. Adding one is one register_norm_kind call (and its layer).
struct NormKind {
  std::string name;  ///< as --norm spells it: "running"
  std::string help;  ///< one line: "BatchNormalization(), momentum 0.99: moving statistics (Example 1)"
  bool moving_statistics = false;  ///< its layers keep moving statistics that inference uses
  std::vector<NormOption> options;
  /// The layer a bn becomes; an empty pointer leaves the bn out of the model (none).
  std::function<std::shared_ptr<Module>(const NormArgs&)> make;
  /// PyTorch's counterpart for `minidl bench`, as minidl_bench_libtorch reads it: "batch_norm:MOMENTUM" (torch's
  /// momentum), "layer_norm", "group_norm:GROUPS", "moments", "identity"; empty: torch has none ("n/a").
  std::function<std::string(const NormArgs&)> torch;

  const NormOption* option(const std::string& key) const;
};

/// Adds a kind (its name must be new, its options' keys distinct).
void register_norm_kind(NormKind kind);
/// Every registered kind, built-ins first.
const std::vector<NormKind>& norm_kinds();
/// The kind named `name`; throws naming the valid ones.
const NormKind& norm_kind(const std::string& name);
/// The kinds' names, comma separated, for messages and --help.
std::string norm_kind_names();
/// Every option of every kind, each key once (the first kind's wins), in registration order.
std::vector<NormOption> all_norm_options();

}  // namespace minidl
