// SVG figures for the study (minidl/study.h): panels side by side, each with labelled axes and ticks, and lines with error
// bars; every line has its own colour, dash pattern and marker, and is nudged sideways, so identical lines stay
// distinguishable.
#pragma once

#include <string>
#include <vector>

namespace minidl {

/// One line: points (x, y) with an error bar of ±err (0 or NaN: none); NaN y values are left out.
struct Line {
  std::string label;
  std::vector<double> x, y, err;
};

struct Panel {
  std::string title, x_label, y_label;
  bool log2_x = false;  ///< batch sizes: ticks at powers of two
  std::vector<Line> lines;
};

/// The figure: panels left to right, one legend above them (lines are matched by label across panels).
std::string svg_figure(const std::vector<Panel>& panels);

}  // namespace minidl
