// SVG figures: axes with "nice" ticks, lines with markers and error bars, a shared legend.
#include "plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace minidl {
namespace {
constexpr double kPanelWidth = 420, kHeight = 380, kLeft = 64, kRight = 16, kTop = 84, kBottom = 56;
const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"};
const char* const kDashes[] = {"", "6 3", "2 2", "8 3 2 3", "4 4", "1 3", "10 2", "6 2 2 2 2 2", "3 6"};

std::string num(double v, int digits) {
  if (std::abs(v) < 1e-12) v = 0;  // no "-0"
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Ticks at 1, 2 or 5 × 10^k covering [lo, hi], about five of them; `digits` enough to tell them apart.
std::vector<double> ticks(double lo, double hi, int* digits) {
  const double raw = (hi - lo) / 5, power = std::pow(10.0, std::floor(std::log10(raw)));
  const double step = power * (raw / power < 1.5 ? 1 : raw / power < 3.5 ? 2 : raw / power < 7.5 ? 5 : 10);
  *digits = std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
  std::vector<double> out;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) out.push_back(t);
  return out;
}

// A marker of shape `kind` (circle, square, triangle, diamond, cross) at (x, y).
void marker(std::ostringstream& svg, int kind, double x, double y, const char* color) {
  switch (kind % 5) {
    case 0: svg << "<circle cx=\"" << x << "\" cy=\"" << y << "\" r=\"3.5\""; break;
    case 1: svg << "<rect x=\"" << x - 3.2 << "\" y=\"" << y - 3.2 << "\" width=\"6.4\" height=\"6.4\""; break;
    case 2: svg << "<path d=\"M" << x << ' ' << y - 4.2 << " L" << x + 4 << ' ' << y + 3 << " L" << x - 4 << ' ' << y + 3 << " Z\""; break;
    case 3: svg << "<path d=\"M" << x << ' ' << y - 4.5 << " L" << x + 4 << ' ' << y << " L" << x << ' ' << y + 4.5 << " L" << x - 4 << ' ' << y << " Z\""; break;
    default: svg << "<path d=\"M" << x - 4 << ' ' << y - 4 << " L" << x + 4 << ' ' << y + 4 << " M" << x - 4 << ' ' << y + 4 << " L" << x + 4 << ' ' << y - 4 << "\" stroke-width=\"2\" stroke=\"" << color << "\""; break;
  }
  svg << " fill=\"" << color << "\"/>\n";
}
}  // namespace

std::string svg_figure(const std::vector<Panel>& panels) {
  std::vector<std::string> labels;  // the legend: every label once, in order of appearance
  for (const Panel& p : panels)
    for (const Line& l : p.lines)
      if (std::find(labels.begin(), labels.end(), l.label) == labels.end()) labels.push_back(l.label);
  std::ostringstream svg;
  const double width = std::max(kPanelWidth * static_cast<double>(panels.size()), 600.0);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << kHeight
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  for (size_t i = 0; i < labels.size(); ++i) {  // legend rows of five, above the panels
    const double lx = kLeft + 150.0 * static_cast<double>(i % 5), ly = 16 + 16.0 * static_cast<double>(i / 5);
    svg << "<line x1=\"" << lx << "\" y1=\"" << ly << "\" x2=\"" << lx + 28 << "\" y2=\"" << ly << "\" stroke=\""
        << kColors[i % 9] << "\" stroke-width=\"2\" stroke-dasharray=\"" << kDashes[i % 9] << "\"/>\n";
    marker(svg, static_cast<int>(i), lx + 14, ly, kColors[i % 9]);
    svg << "<text x=\"" << lx + 34 << "\" y=\"" << ly + 4 << "\">" << labels[i] << "</text>\n";
  }
  for (size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    double xlo = 1e300, xhi = -1e300, ylo = 1e300, yhi = -1e300;
    const auto tx = [&](double v) { return panel.log2_x ? std::log2(v) : v; };
    for (const Line& l : panel.lines)
      for (size_t i = 0; i < l.x.size(); ++i) {
        if (std::isnan(l.y[i])) continue;
        const double e = i < l.err.size() && std::isfinite(l.err[i]) ? l.err[i] : 0.0;
        xlo = std::min(xlo, tx(l.x[i])), xhi = std::max(xhi, tx(l.x[i]));
        ylo = std::min(ylo, l.y[i] - e), yhi = std::max(yhi, l.y[i] + e);
      }
    if (xlo > xhi) xlo = 0, xhi = 1, ylo = 0, yhi = 1;
    if (xhi - xlo < 1e-9) xlo = panel.log2_x ? xlo - 1 : 0, xhi = panel.log2_x ? xhi + 1 : 2 * xhi;  // one x
    if (yhi - ylo < 1e-9) ylo -= 0.01, yhi += 0.01;
    const double ypad = (yhi - ylo) * 0.06, xpad = (xhi - xlo) * 0.06;
    ylo -= ypad, yhi += ypad, xlo -= xpad, xhi += xpad;
    const double x0 = static_cast<double>(p) * kPanelWidth + kLeft, x1 = static_cast<double>(p + 1) * kPanelWidth - kRight;
    const double y0 = kHeight - kBottom, y1 = kTop;
    const auto px = [&](double v) { return x0 + (x1 - x0) * (tx(v) - xlo) / (xhi - xlo); };
    const auto py = [&](double v) { return y0 + (y1 - y0) * (v - ylo) / (yhi - ylo); };
    svg << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << kTop - 10 << "\" text-anchor=\"middle\" font-size=\"13\">"
        << panel.title << "</text>\n";
    svg << "<path d=\"M" << x0 << ' ' << y1 << " V" << y0 << " H" << x1 << "\" stroke=\"black\" fill=\"none\"/>\n";
    int digits = 0;
    for (double t : ticks(ylo, yhi, &digits))
      svg << "<line x1=\"" << x0 - 4 << "\" y1=\"" << py(t) << "\" x2=\"" << x0 << "\" y2=\"" << py(t)
          << "\" stroke=\"black\"/><line x1=\"" << x0 << "\" y1=\"" << py(t) << "\" x2=\"" << x1 << "\" y2=\"" << py(t)
          << "\" stroke=\"#e5e5e5\"/><text x=\"" << x0 - 7 << "\" y=\"" << py(t) + 4 << "\" text-anchor=\"end\">"
          << num(t, digits) << "</text>\n";
    std::vector<double> xt;
    if (panel.log2_x) {
      for (double e = std::ceil(xlo); e <= xhi; ++e) xt.push_back(std::exp2(e));
    } else {
      for (double t : ticks(xlo, xhi, &digits)) xt.push_back(t);
    }
    for (double t : xt)
      svg << "<line x1=\"" << px(t) << "\" y1=\"" << y0 << "\" x2=\"" << px(t) << "\" y2=\"" << y0 + 4
          << "\" stroke=\"black\"/><text x=\"" << px(t) << "\" y=\"" << y0 + 17 << "\" text-anchor=\"middle\">"
          << num(t, panel.log2_x ? 0 : digits) << "</text>\n";
    svg << "<text x=\"" << (x0 + x1) / 2 << "\" y=\"" << kHeight - 14 << "\" text-anchor=\"middle\">" << panel.x_label
        << "</text>\n";
    svg << "<text transform=\"translate(" << x0 - 48 << ' ' << (y0 + y1) / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
        << panel.y_label << "</text>\n";
    for (const Line& l : panel.lines) {
      const int k = static_cast<int>(std::find(labels.begin(), labels.end(), l.label) - labels.begin());
      const char* color = kColors[k % 9];
      // Nudged sideways by its place in the legend, so that identical lines do not hide each other.
      const double nudge = (k - (static_cast<double>(labels.size()) - 1) / 2) * 2.5;
      svg << "<polyline fill=\"none\" stroke-width=\"1.8\" stroke=\"" << color << "\" stroke-dasharray=\"" << kDashes[k % 9]
          << "\" points=\"";
      for (size_t i = 0; i < l.x.size(); ++i)
        if (!std::isnan(l.y[i])) svg << px(l.x[i]) + nudge << ',' << py(l.y[i]) << ' ';
      svg << "\"/>\n";
      // Markers and error bars on at most about 16 points of a line (every point of the line itself is drawn).
      const size_t every = std::max<size_t>(1, (l.x.size() + 15) / 16);
      for (size_t i = 0; i < l.x.size(); ++i) {
        if (std::isnan(l.y[i]) || (i % every != 0 && i + 1 != l.x.size())) continue;
        const double x = px(l.x[i]) + nudge, e = i < l.err.size() && std::isfinite(l.err[i]) ? l.err[i] : 0.0;
        if (e > 0)
          svg << "<path d=\"M" << x << ' ' << py(l.y[i] - e) << " V" << py(l.y[i] + e) << " M" << x - 3 << ' '
              << py(l.y[i] - e) << " h6 M" << x - 3 << ' ' << py(l.y[i] + e) << " h6\" stroke=\"" << color << "\"/>\n";
        marker(svg, k, x, py(l.y[i]), color);
      }
    }
  }
  svg << "</svg>\n";
  return svg.str();
}

}  // namespace minidl
