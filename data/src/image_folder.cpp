// Image folders as Keras's image_dataset_from_directory reads them: a folder per class, PNG or PGM files in it,
// optionally under train/ and test/.
#include <algorithm>
#include <filesystem>
#include <map>

#include "minidl/data.h"
#include "minidl/error.h"
#include "minidl/internal/text.h"

namespace fs = std::filesystem;

namespace minidl {
namespace {
bool is_image_file(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".png" || ext == ".pgm";
}

// The class folders of `dir`, sorted, with their image files sorted by name (hidden entries left out).
std::map<std::string, std::vector<std::string>> class_folders(const fs::path& dir) {
  std::map<std::string, std::vector<std::string>> classes;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || !entry.is_directory(error)) continue;
    std::vector<std::string>& files = classes[name];
    for (const fs::directory_entry& file : fs::directory_iterator(entry.path(), error))
      if (file.path().filename().string()[0] != '.' && file.is_regular_file(error) && is_image_file(file.path()))
        files.push_back(file.path().string());
    std::sort(files.begin(), files.end());
  }
  if (error) fail("cannot read the folder '", dir.string(), "': ", error.message());
  return classes;
}

// One set: every class's images, interleaved class by class; the channels and size are the first image's.
Dataset load_set(const fs::path& dir, const std::vector<std::string>& class_names, Shape* sample) {
  const auto folders = class_folders(dir);
  std::vector<std::pair<int32_t, const std::vector<std::string>*>> lists;
  size_t longest = 0, total = 0;
  for (const auto& [name, files] : folders) {
    const auto at = std::find(class_names.begin(), class_names.end(), name);
    if (at == class_names.end())
      fail("'", (dir / name).string(), "': a class folder the training data does not have (its classes: ",
           internal::join(class_names, ", ", 12), ")");
    lists.emplace_back(static_cast<int32_t>(at - class_names.begin()), &files);
    longest = std::max(longest, files.size());
    total += files.size();
  }
  if (total == 0) fail("'", dir.string(), "' holds no PNG or PGM images in its class folders");
  Dataset data;
  data.class_names = class_names;
  data.num_classes = static_cast<int32_t>(class_names.size());
  int channels = sample->rank() == 3 ? static_cast<int>((*sample)[2]) : 0;
  for (size_t i = 0; i < longest; ++i)
    for (const auto& [label, files] : lists) {
      if (i >= files->size()) continue;
      const std::string& path = (*files)[i];
      const Image image = read_image(path, channels);
      if (channels == 0) {  // the first image decides: grayscale, or RGB for all
        channels = static_cast<int>(image.channels);
        *sample = {image.height, image.width, image.channels};
        data.images.reserve(total * static_cast<size_t>(sample->numel()));
      }
      if (image.height != (*sample)[0] || image.width != (*sample)[1])
        fail("'", path, "' is ", image.width, "x", image.height, " pixels, but the first image is ", (*sample)[1], "x",
             (*sample)[0], ": every image must be the same size (resize them first)");
      data.images.insert(data.images.end(), image.pixels.begin(), image.pixels.end());
      data.labels.push_back(label);
    }
  data.sample = *sample;
  return data;
}
}  // namespace

bool is_image_folder(const std::string& dir) {
  std::error_code error;
  if (!fs::is_directory(dir, error)) return false;
  if (fs::is_directory(fs::path(dir) / "train", error)) return true;
  for (const char* idx : {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"})
    if (fs::exists(fs::path(dir) / idx, error)) return false;
  const auto folders = class_folders(dir);
  return std::any_of(folders.begin(), folders.end(), [](const auto& f) { return !f.second.empty(); });
}

DatasetSplits load_image_folder(const std::string& dir) {
  const fs::path root(dir);
  std::error_code error;
  const bool split = fs::is_directory(root / "train", error);
  const fs::path train_dir = split ? root / "train" : root;
  std::vector<std::string> class_names;
  for (const auto& [name, files] : class_folders(train_dir)) class_names.push_back(name);
  if (class_names.empty())
    fail("'", train_dir.string(), "' has no class folders: expected ", train_dir.string(), "/<class>/*.png (or .pgm)");
  Shape sample;
  DatasetSplits s;
  s.train = load_set(train_dir, class_names, &sample);
  if (split && fs::is_directory(root / "test", error)) s.test = load_set(root / "test", class_names, &sample);
  else s.test = s.train.slice(0, 0);
  return s;
}

}  // namespace minidl
