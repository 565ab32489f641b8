// Image files: PNG through libpng's simplified API (grayscale or RGB), PGM (P5 binary and P2 text) read here.
#include <png.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "minidl/atomic_file.h"
#include "minidl/data.h"
#include "minidl/error.h"

namespace minidl {
namespace {
constexpr int64_t kMaxPixels = int64_t{1} << 28;  // 256 Mpixels: far beyond any image a classifier takes

// Grayscale pixels repeated into three channels.
void to_rgb(Image& image) {
  std::vector<uint8_t> rgb(image.pixels.size() * 3);
  for (size_t i = 0; i < image.pixels.size(); ++i) rgb[3 * i] = rgb[3 * i + 1] = rgb[3 * i + 2] = image.pixels[i];
  image.pixels = std::move(rgb);
  image.channels = 3;
}

Image read_png(const std::string& path, int channels) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) fail("'", path, "': not a readable PNG (", png.message, ")");
  struct Free {
    png_image& p;
    ~Free() { png_image_free(&p); }
  } free_png{png};
  const bool colour = png.format & PNG_FORMAT_FLAG_COLOR;
  if (colour && channels == 1)
    fail("'", path, "' is a colour image; the model takes grayscale images (convert it first, e.g. "
                    "`convert in.png -colorspace Gray out.png`)");
  const bool rgb = channels == 3 || (channels == 0 && colour);
  if (int64_t{png.width} * int64_t{png.height} > kMaxPixels)
    fail("'", path, "': ", png.width, "x", png.height, " is too large an image");
  // zlib compresses at most about 1032:1, so a file this small cannot hold the pixels its header claims: refused
  // before the buffer for them is allocated.
  std::error_code error;
  const auto file_size = static_cast<int64_t>(std::filesystem::file_size(path, error));
  if (!error && int64_t{png.width} * int64_t{png.height} > 1032 * file_size + 4096)
    fail("'", path, "': its header claims ", png.width, "x", png.height, " pixels, more than ", file_size,
         " bytes can hold: the file is cut short or broken");
  Image image{png.height, png.width, {}, rgb ? 3 : 1};
  // 8-bit gray or RGB; an alpha channel is composited onto black, the background of MNIST-style images.
  png.format = rgb ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  const png_color black{0, 0, 0};
  if (!png_image_finish_read(&png, &black, image.pixels.data(), 0, nullptr))
    fail("'", path, "': a broken PNG (", png.message, ")");
  return image;
}

// PGM: "P5" (binary) or "P2" (text), width, height and maxval separated by whitespace, "#" comments between
// them, then the pixels, one or two bytes each (maxval > 255: big-endian). Scaled to 0..255.
Image read_pgm(const std::string& path, const std::string& bytes) {
  size_t at = 2;
  const auto number = [&](const char* what) -> int64_t {
    while (at < bytes.size() && (std::isspace(static_cast<unsigned char>(bytes[at])) || bytes[at] == '#')) {
      if (bytes[at] == '#') at = bytes.find('\n', at);
      else ++at;
      if (at == std::string::npos) at = bytes.size();
    }
    int64_t v = 0;
    const size_t start = at;
    while (at < bytes.size() && bytes[at] >= '0' && bytes[at] <= '9' && at - start < 9) v = v * 10 + (bytes[at++] - '0');
    if (at == start || (at < bytes.size() && !std::isspace(static_cast<unsigned char>(bytes[at]))))
      fail("'", path, "': the PGM header's ", what, " is not a number");
    return v;
  };
  const bool binary = bytes[1] == '5';
  const int64_t width = number("width"), height = number("height"), maxval = number("maxval");
  if (width < 1 || height < 1 || width * height > kMaxPixels) fail("'", path, "': bad PGM size ", width, "x", height);
  // Before anything is allocated: a text PGM needs a digit and a blank per pixel, so a short file cannot hold it.
  if (!binary && static_cast<int64_t>(bytes.size()) - static_cast<int64_t>(at) < 2 * width * height - 1)
    fail("'", path, "': the PGM holds fewer pixels than its ", width, "x", height, " header says");
  if (maxval < 1 || maxval > 65535) fail("'", path, "': PGM maxval ", maxval, " is outside 1..65535");
  const int64_t count = width * height, sample_bytes = maxval > 255 ? 2 : 1;
  ++at;  // the single whitespace after maxval
  if (binary && static_cast<int64_t>(bytes.size()) - static_cast<int64_t>(at) < count * sample_bytes)
    fail("'", path, "': the PGM holds fewer pixels than its ", width, "x", height, " header says");
  Image image{height, width, std::vector<uint8_t>(static_cast<size_t>(count))};
  for (int64_t i = 0; i < count; ++i) {
    int64_t v;
    if (binary) {
      const auto byte = [&](int64_t k) { return static_cast<int64_t>(static_cast<uint8_t>(bytes[at + k])); };
      v = sample_bytes == 2 ? byte(2 * i) * 256 + byte(2 * i + 1) : byte(i);
    } else {
      v = number("pixel");
    }
    if (v > maxval) fail("'", path, "': pixel ", i, " is ", v, ", above maxval ", maxval);
    image.pixels[static_cast<size_t>(i)] = static_cast<uint8_t>((v * 255 + maxval / 2) / maxval);
  }
  return image;
}
}  // namespace

Image read_image(const std::string& path, int channels) {
  if (channels != 0 && channels != 1 && channels != 3) fail("read_image: channels must be 0, 1 or 3, got ", channels);
  std::error_code error;
  if (std::filesystem::is_directory(path, error))
    fail("'", path, "' is a directory, not an image file (a folder of class folders is training data: --data DIR)");
  check_input_file(path, "an image file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot open '", path, "': ", std::strerror(errno));
  char head[8] = {};
  in.read(head, 8);
  if (in.gcount() == 8 && std::memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0) return read_png(path, channels);
  if (in.gcount() >= 2 && head[0] == 'P' && (head[1] == '5' || head[1] == '2')) {
    in.seekg(0);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    Image image = read_pgm(path, bytes);
    if (channels == 3) to_rgb(image);
    return image;
  }
  fail("'", path, "' is neither a PNG nor a grayscale PGM (P5 or P2) image");
}

void write_png(const std::string& path, const Image& image) {
  if (image.height < 1 || image.width < 1 || static_cast<int64_t>(image.pixels.size()) != image.height * image.width)
    fail("write_png '", path, "': ", image.pixels.size(), " pixels for a ", image.width, "x", image.height, " image");
  write_file_atomically(path, [&](const std::string& tmp) {
    png_image png{};
    png.version = PNG_IMAGE_VERSION;
    png.width = static_cast<png_uint_32>(image.width);
    png.height = static_cast<png_uint_32>(image.height);
    png.format = PNG_FORMAT_GRAY;
    if (!png_image_write_to_file(&png, tmp.c_str(), 0, image.pixels.data(), 0, nullptr))
      fail("cannot write '", tmp, "': ", png.message);
  });
}

}  // namespace minidl
