// Image files: PNG through libpng (pixels as stored: no gamma, 16 bits scaled linearly), PGM (P5 and P2) read here.
#include <png.h>

#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
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

// What libpng's decoder hands back: its error message, kept across the longjmp out of its error callback.
struct PngError {
  char message[200] = {};
};
[[noreturn]] void on_png_error(png_structp png, png_const_charp message) {
  auto* error = static_cast<PngError*>(png_get_error_ptr(png));
  std::snprintf(error->message, sizeof error->message, "%s", message);
  png_longjmp(png, 1);
}
void on_png_warning(png_structp, png_const_charp) {}  // an ancillary chunk libpng skips is no reason to stop

// True when every palette entry is a shade of grey: such a PNG is a grayscale image stored with a palette.
bool grey_palette(png_structp png, png_infop info) {
  png_colorp palette = nullptr;
  int count = 0;
  if (!png_get_PLTE(png, info, &palette, &count)) return false;
  for (int i = 0; i < count; ++i)
    if (palette[i].red != palette[i].green || palette[i].green != palette[i].blue) return false;
  return true;
}

// The decoded rows, as libpng's transforms leave them: `channels` samples a pixel (grey or RGB, then alpha when
// the file has transparency), each 1 or 2 bytes (big-endian).
struct PngPixels {
  png_uint_32 width = 0, height = 0;
  int channels = 0, sample_bytes = 1;
  bool colour = false;
  std::vector<uint8_t> rows;
};

// Decodes with libpng's low-level API, which applies no transform it is not asked for: pixels come as stored
// (a gAMA, cHRM, sRGB or iCCP chunk changes nothing; 16-bit samples stay linear), which the simplified API
// does not promise. Bounds are checked from the header before anything is allocated. libpng reports errors by
// longjmp, so this function holds no object whose destructor the jump would skip: everything it owns is
// declared before setjmp.
void decode_png(const std::string& path, std::FILE* file, PngPixels& out) {
  PngError error;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, on_png_error, on_png_warning);
  if (!png) fail("'", path, "': out of memory reading the PNG");
  png_infop info = png_create_info_struct(png);
  std::vector<png_bytep> row_pointers;
  volatile bool too_large = false;  // set between setjmp and the jump back, so kept in memory
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    if (too_large) fail("'", path, "': ", out.width, "x", out.height, " is too large an image");
    fail("'", path, "': a broken PNG (", error.message, ")");
  }
  if (!info) png_error(png, "out of memory");
  png_init_io(png, file);
  png_read_info(png, info);
  out.width = png_get_image_width(png, info);
  out.height = png_get_image_height(png, info);
  if (int64_t{out.width} * int64_t{out.height} > kMaxPixels) {
    too_large = true;
    png_error(png, "too large");
  }
  const int type = png_get_color_type(png, info);
  out.colour = (type & PNG_COLOR_MASK_COLOR) && !(type == PNG_COLOR_TYPE_PALETTE && grey_palette(png, info));
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  out.channels = png_get_channels(png, info);
  out.sample_bytes = png_get_bit_depth(png, info) == 16 ? 2 : 1;
  const size_t row_bytes = png_get_rowbytes(png, info);
  out.rows.resize(row_bytes * out.height);
  row_pointers.resize(out.height);
  for (png_uint_32 y = 0; y < out.height; ++y) row_pointers[y] = out.rows.data() + y * row_bytes;
  png_read_image(png, row_pointers.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
}

Image read_png(const std::string& path, int channels) {
  // zlib compresses at most about 1032:1, so a file this small cannot hold the pixels its header claims: refused
  // before the buffer for them is allocated. The header's width and height are bytes 16..23.
  std::error_code size_error;
  const auto file_size = static_cast<int64_t>(std::filesystem::file_size(path, size_error));
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (!file) fail("cannot open '", path, "': ", std::strerror(errno));
  struct Close {
    std::FILE* f;
    ~Close() { std::fclose(f); }
  } close{file};
  unsigned char head[24] = {};
  if (std::fread(head, 1, sizeof head, file) == sizeof head && !size_error && std::memcmp(head + 12, "IHDR", 4) == 0) {
    const auto be32 = [&](int at) {
      return int64_t{head[at]} << 24 | int64_t{head[at + 1]} << 16 | int64_t{head[at + 2]} << 8 | int64_t{head[at + 3]};
    };
    const int64_t width = be32(16), height = be32(20);
    if (static_cast<double>(width) * static_cast<double>(height) > 1032.0 * static_cast<double>(file_size) + 4096)  // 2^64 overflows
      fail("'", path, "': its header claims ", width, "x", height, " pixels, more than ", file_size,
           " bytes can hold: the file is cut short or broken");
  }
  std::rewind(file);
  PngPixels decoded;
  decode_png(path, file, decoded);
  if (decoded.colour && channels == 1)
    fail("'", path, "' is a colour image; the model takes grayscale images (convert it first, e.g. "
                    "`convert in.png -colorspace Gray out.png`)");
  const int colour_samples = decoded.channels >= 3 ? 3 : 1;
  const bool alpha = decoded.channels == 2 || decoded.channels == 4;
  const int64_t out_channels = channels == 3 || (channels == 0 && decoded.colour) ? 3 : 1;
  Image image{decoded.height, decoded.width, {}, out_channels};
  image.pixels.resize(static_cast<size_t>(image.height * image.width * out_channels));
  // 8 or 16 bits to 8, rounded as PGM's samples are; an alpha channel composited onto black (MNIST's background)
  // in the stored values: v * alpha / max.
  const int64_t max = decoded.sample_bytes == 2 ? 65535 : 255;
  const auto sample = [&](size_t pixel, int k) -> int64_t {
    const uint8_t* p = decoded.rows.data() + (pixel * decoded.channels + k) * decoded.sample_bytes;
    return decoded.sample_bytes == 2 ? int64_t{p[0]} << 8 | p[1] : int64_t{p[0]};
  };
  const size_t count = static_cast<size_t>(image.height * image.width);
  for (size_t i = 0; i < count; ++i) {
    const int64_t a = alpha ? sample(i, decoded.channels - 1) : max;
    for (int64_t c = 0; c < out_channels; ++c) {
      // A grey palette expanded to RGB holds equal samples; its first is the grey.
      const int64_t v = sample(i, colour_samples == 3 && out_channels == 3 ? static_cast<int>(c) : 0) * a;
      image.pixels[i * out_channels + c] = static_cast<uint8_t>((v * 255 + max * max / 2) / (max * max));
    }
  }
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
