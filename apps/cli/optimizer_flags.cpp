// The optimizer a run trains with: its flags (--optimizer, --lr, --weight-decay, --sgd-momentum, --nesterov,
// --clip-norm), checked together, and the Optimizer they describe.
#include "minidl/optim.h"
#include "run.h"
#include "settings.h"

namespace minidl::cli {

void read_optimizer_flags(const cxxopts::ParseResult& f, RunConfig& r) {
  r.optimizer = defines(f, "optimizer") ? setting<std::string>(f, "optimizer") : "adam";
  const bool sgd = r.optimizer == "sgd";
  r.learning_rate = sgd && !f.count("lr") ? SGDOptions{}.learning_rate : setting<float>(f, "lr");
  if (!defines(f, "optimizer")) return;
  if (f.count("clip-norm") && !(f["clip-norm"].as<double>() > 0.0))
    fail("--clip-norm must be > 0 (the largest global norm the gradients keep; leave the flag out for no clipping), "
         "got ", exact_text(f["clip-norm"].as<double>()));
  r.clip_norm = optional_setting<float>(f, "clip-norm").value_or(0.0f);
  r.weight_decay = optional_setting<float>(f, "weight-decay").value_or(r.optimizer == "adamw" ? kAdamWWeightDecay : 0.0f);
  for (const char* flag : {"sgd-momentum", "nesterov"})
    if (!sgd && f.count(flag))
      fail("--", flag, " applies to --optimizer sgd, not ", r.optimizer, " (Adam's moments have their own decay rates)");
  r.sgd_momentum = setting<float>(f, "sgd-momentum");
  r.nesterov = setting<bool>(f, "nesterov");
  if (r.nesterov && r.sgd_momentum == 0.0f)
    fail("--nesterov needs momentum: give --sgd-momentum above 0 (0.9 is usual); without it Nesterov's step is plain SGD's");
}

std::unique_ptr<Optimizer> make_optimizer(const RunConfig& c, const NamedTensors& parameters) {
  if (c.optimizer == "sgd")
    return std::make_unique<SGD>(parameters, SGDOptions{.learning_rate = c.learning_rate, .momentum = c.sgd_momentum,
                                                        .nesterov = c.nesterov, .weight_decay = c.weight_decay});
  const AdamOptions options{.learning_rate = c.learning_rate, .weight_decay = c.weight_decay};
  if (c.optimizer == "adamw") return std::make_unique<AdamW>(parameters, options);
  return std::make_unique<Adam>(parameters, options);
}

}  // namespace minidl::cli
