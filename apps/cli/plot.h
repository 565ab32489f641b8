// A small SVG line plot of per-epoch curves, one panel per metric, one line per mode.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace minidl::cli {

struct Series {
  std::string name;
  std::vector<double> values;  // one per epoch, from epoch 1
};

/// Panels side by side, each (title, series); returns the SVG document.
std::string svg_plot(const std::vector<std::pair<std::string, std::vector<Series>>>& panels);

}  // namespace minidl::cli
