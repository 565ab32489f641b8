// libFuzzer target: the image reader (read_image: PNG through libpng, PGM P5 and P2), on each input as a file,
// read grayscale, RGB and as stored. Anything but minidl::Error, an image that is not what it says, or memory
// beyond -rss_limit_mb, is a finding.
#include "fuzz_input.h"
#include "minidl/data.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = minidl::fuzz::scratch_path(".image");
  minidl::fuzz::write_input(path, data, size);
  for (int channels : {1, 3, 0}) {
    try {
      const minidl::Image image = minidl::read_image(path, channels);
      const bool channels_ok = channels == 0 ? image.channels == 1 || image.channels == 3 : image.channels == channels;
      if (!channels_ok || image.height < 1 || image.width < 1 ||
          image.pixels.size() != static_cast<size_t>(image.height * image.width * image.channels))
        __builtin_trap();
    } catch (const minidl::Error&) {
    }
  }
  return 0;
}
