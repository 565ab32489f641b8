// SVG learning-curve plot: axes with min/max labels, a polyline and a legend entry per series.
#include "plot.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace minidl::cli {

std::string svg_plot(const std::vector<std::pair<std::string, std::vector<Series>>>& panels) {
  constexpr double kPanelWidth = 440, kHeight = 340, kLeft = 60, kRight = 20, kTop = 60, kBottom = 50;
  const char* colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};
  std::ostringstream svg;
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << kPanelWidth * panels.size() << "\" height=\""
      << kHeight << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  const auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f", v);
    return std::string(buf);
  };
  for (size_t p = 0; p < panels.size(); ++p) {
    const auto& [title, series] = panels[p];
    double lo = 1e300, hi = -1e300;
    size_t epochs = 1;
    for (const auto& s : series)
      for (double v : s.values) lo = std::min(lo, v), hi = std::max(hi, v), epochs = std::max(epochs, s.values.size());
    if (lo > hi) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5, hi += 0.5;
    const double pad = (hi - lo) * 0.05;
    lo -= pad, hi += pad;
    const double x0 = p * kPanelWidth + kLeft, x1 = (p + 1) * kPanelWidth - kRight, y0 = kHeight - kBottom, y1 = kTop;
    const auto x = [&](size_t i) { return epochs > 1 ? x0 + (x1 - x0) * i / (epochs - 1) : (x0 + x1) / 2; };
    const auto y = [&](double v) { return y0 + (y1 - y0) * (v - lo) / (hi - lo); };
    svg << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">" << title << "</text>\n";
    svg << "<path d=\"M" << x0 << ' ' << y1 << " V" << y0 << " H" << x1 << "\" stroke=\"black\" fill=\"none\"/>\n";
    svg << "<text x=\"" << x0 - 6 << "\" y=\"" << y1 + 4 << "\" text-anchor=\"end\">" << num(hi) << "</text>\n";
    svg << "<text x=\"" << x0 - 6 << "\" y=\"" << y0 + 4 << "\" text-anchor=\"end\">" << num(lo) << "</text>\n";
    for (size_t i = 0; i < epochs; ++i)
      svg << "<text x=\"" << x(i) << "\" y=\"" << y0 + 16 << "\" text-anchor=\"middle\">" << i + 1 << "</text>\n";
    svg << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << kHeight - 12 << "\" text-anchor=\"middle\">epoch</text>\n";
    for (size_t s = 0; s < series.size(); ++s) {
      const char* color = colors[s % 6];
      svg << "<polyline fill=\"none\" stroke-width=\"2\" stroke=\"" << color << "\" points=\"";
      for (size_t i = 0; i < series[s].values.size(); ++i) svg << x(i) << ',' << y(series[s].values[i]) << ' ';
      svg << "\"/>\n";
      for (size_t i = 0; i < series[s].values.size(); ++i)
        svg << "<circle r=\"3\" fill=\"" << color << "\" cx=\"" << x(i) << "\" cy=\"" << y(series[s].values[i]) << "\"/>\n";
      // The legend: one row under the title, clear of the curves.
      const double lx = x0 + 90.0 * s;
      svg << "<rect x=\"" << lx << "\" y=\"36\" width=\"14\" height=\"3\" fill=\"" << color << "\"/>"
          << "<text x=\"" << lx + 18 << "\" y=\"41\">" << series[s].name << "</text>\n";
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace minidl::cli
