// Tests of users' own problems on the command line, with scikit-learn's bundled data sets as people have them:
// regression (diabetes), unscaled features (breast cancer), a CSV without a header (iris), a class-sorted file,
// folders of PNG images (digits, grayscale and RGB); and the small things a new user meets first.
#include <nlohmann/json.hpp>

#include <sstream>

#include "cli_helpers.h"

using namespace minidl;
using minidl::test::minidl_cli;
using minidl::test::read_bytes;
using minidl::test::Run;
using minidl::test::sklearn_dir;
using minidl::test::TempDir;
using minidl::test::write_bytes;

namespace {
// The last line of a command's --json output.
nlohmann::json last_json(const Run& r) {
  std::istringstream lines(r.out);
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty()) last = line;
  return nlohmann::json::parse(last);
}

std::string in(const TempDir& dir, const std::string& name) { return dir.file(name); }
}  // namespace

TEST_CASE("regression: scikit-learn's diabetes CSV trains with mse to test R² above 0.4, and evaluates and predicts",
          "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const std::string csv = "--data " + in(data, "diabetes_train.csv") + " --test " + in(data, "diabetes_test.csv") + " --label target";
  const std::string model = dir.file("d.safetensors");
  const Run r = minidl_cli("train " + csv + " --standardize --lr 0.01 --epochs 60 --json --save " + model, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  const nlohmann::json last = last_json(r);
  CHECK(last["test_r2"].get<double>() >= 0.4);  // linear regression reaches about 0.45 on this set
  CHECK(last.contains("test_mae"));
  CHECK(last.contains("test_rmse"));
  CHECK_FALSE(last.contains("test_accuracy"));
  CHECK_THAT(r.err, Catch::Contains("training normalize,dense:64,relu,bn,dense:1 "));
  // evaluate: the checkpoint's own test data, and the test file given as --data, give the same metrics.
  const Run own = minidl_cli("evaluate --json --model " + model, dir);
  const Run file = minidl_cli("evaluate --json --model " + model + " --data " + in(data, "diabetes_test.csv"), dir);
  INFO(own.err << file.err);
  REQUIRE(own.status == 0);
  REQUIRE(file.status == 0);
  CHECK(last_json(own)["r2"].get<double>() == Approx(last["test_r2"].get<double>()));
  CHECK(last_json(file) == last_json(own));
  // predict: one value per test row, the same as a file of new rows without the target column gives.
  const Run values = minidl_cli("predict --json --model " + model + " --data " + in(data, "diabetes_test.csv"), dir);
  REQUIRE(values.status == 0);
  CHECK(std::count(values.out.begin(), values.out.end(), '\n') == 89);
  CHECK(nlohmann::json::parse(values.out.substr(0, values.out.find('\n')))["values"].size() == 1);
  const Run csv_out = minidl_cli("predict --model " + model + " --first 3 --out " + dir.file("p.csv"), dir);
  REQUIRE(csv_out.status == 0);
  CHECK(read_bytes(dir.file("p.csv")).rfind("index,target\n0,", 0) == 0);
  // The model a new user writes for it trains too, with no loss flag: it ends without softmax.
  const Run plain = minidl_cli("train " + csv + " --model dense:64,relu,dense:1 --epochs 2 --json", dir);
  INFO(plain.err);
  CHECK(plain.status == 0);
  // Whole-number targets with many distinct values are refused, suggesting regression.
  std::string whole = "x,target\n";
  for (int i = 0; i < 300; ++i) whole += std::to_string(i % 17) + "," + std::to_string(25 + i) + "\n";
  write_bytes(dir.file("whole.csv"), whole);
  const Run many = minidl_cli("train --data " + dir.file("whole.csv") + " --validation-split 0.2 --label target", dir);
  CHECK(many.status == 1);
  CHECK_THAT(many.err, Catch::Contains("holds 300 distinct whole numbers — too many to be classes") &&
                           Catch::Contains("give --loss mse"));
  const Run forced = minidl_cli("train --data " + dir.file("whole.csv") + " --validation-split 0.2 --label target "
                                "--loss mse --epochs 1 --json", dir);
  INFO(forced.err);
  CHECK(forced.status == 0);
}

TEST_CASE("unscaled features: a warning names the columns, and --standardize reaches 95% on breast cancer",
          "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const std::string csv = "--data " + in(data, "breast_cancer_train.csv") + " --test " + in(data, "breast_cancer_test.csv") +
                          " --label diagnosis";
  const Run raw = minidl_cli("train " + csv + " --epochs 1", dir);
  REQUIRE(raw.status == 0);
  CHECK_THAT(raw.err, Catch::Contains("the features differ in scale by a factor of") && Catch::Contains("'worst_area'") &&
                          Catch::Contains("--standardize"));
  const Run scaled = minidl_cli("train " + csv + " --standardize --epochs 30 --json", dir);
  INFO(scaled.err);
  REQUIRE(scaled.status == 0);
  CHECK(last_json(scaled)["test_accuracy"].get<double>() >= 0.95);
  CHECK(scaled.err.find("differ in scale") == std::string::npos);
  // A binary classifier: one sigmoid output, binary cross-entropy, accuracy and AUC.
  const Run binary = minidl_cli("train " + csv + " --model normalize,dense:16,relu,dense:1,sigmoid --epochs 20 --json", dir);
  INFO(binary.err);
  REQUIRE(binary.status == 0);
  CHECK(last_json(binary)["test_accuracy"].get<double>() >= 0.95);
  CHECK(last_json(binary)["test_auc"].get<double>() >= 0.98);
}

TEST_CASE("a CSV without a header: --no-header --label 4 trains, and a new labelled file needs no extra flag",
          "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const std::string model = dir.file("iris.safetensors");
  const Run r = minidl_cli("train --data " + in(data, "iris_train.csv") + " --test " + in(data, "iris_test.csv") +
                               " --no-header --label 4 --epochs 40 --lr 0.01 --json --save " + model, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(last_json(r)["accuracy"].get<double>() > 0.8);
  const Run e = minidl_cli("evaluate --json --model " + model + " --data " + in(data, "iris_test.csv"), dir);
  INFO(e.err);
  REQUIRE(e.status == 0);
  CHECK(last_json(e)["accuracy"].get<double>() == Approx(last_json(r)["test_accuracy"].get<double>()));
  const Run p = minidl_cli("predict --model " + model + " --data " + in(data, "iris_test.csv") + " --first 2", dir);
  INFO(p.err);
  REQUIRE(p.status == 0);
  CHECK_THAT(p.out, Catch::Contains("(setosa)") || Catch::Contains("(versicolor)") || Catch::Contains("(virginica)"));
  // Without --no-header the first row is taken for a header and nothing is named 4: the error says so.
  const Run header = minidl_cli("train --data " + in(data, "iris_train.csv") + " --test " + in(data, "iris_test.csv") +
                                    " --label species", dir);
  CHECK(header.status == 1);
  CHECK_THAT(header.err, Catch::Contains("no column is named 'species'") && Catch::Contains("0-based index"));
}

TEST_CASE("a class-sorted file's validation split names the classes it holds out", "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const Run r = minidl_cli("train --data " + in(data, "iris_sorted.csv") + " --label species --validation-split 0.2 --epochs 1", dir);
  REQUIRE(r.status == 0);
  // Its last 30 rows are all virginica: the other two classes are never tested.
  CHECK_THAT(r.err, Catch::Contains("classes 'setosa', 'versicolor' of the training data are absent from the held-out 0.2 of") &&
                        Catch::Contains("the split takes the file's last rows"));
}

TEST_CASE("image folders: digits as PNGs in class folders train, evaluate and predict with class names, RGB too",
          "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const std::string model = dir.file("digits.safetensors");
  const Run r = minidl_cli("train --data " + in(data, "digits") + " --epochs 10 --json --save " + model, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(last_json(r)["test_accuracy"].get<double>() > 0.9);
  const Run e = minidl_cli("evaluate --json --model " + model, dir);
  REQUIRE(e.status == 0);
  CHECK(last_json(e)["accuracy"] == last_json(r)["test_accuracy"]);
  const std::string seven = in(data, "digits/test/seven");
  const std::string image = std::filesystem::directory_iterator(seven)->path().string();
  const Run p = minidl_cli("predict --json --model " + model + " " + image, dir);
  REQUIRE(p.status == 0);
  CHECK(last_json(p)["name"].is_string());
  const Run s = minidl_cli("summary " + model, dir);
  CHECK_THAT(s.out, Catch::Contains("input [8,8,1]"));
  // Colour images: three channels, and a convolutional network on them.
  const Run rgb = minidl_cli("train --data " + in(data, "digits_rgb") + " --model conv:16x3:padding=same,bn,relu,maxpool:2,"
                             "conv:32x3,bn,relu,gap,dense:10,softmax --epochs 5 --recalibrate 0 --json --save " +
                                 dir.file("rgb.safetensors"), dir);
  INFO(rgb.err);
  REQUIRE(rgb.status == 0);
  CHECK_THAT(minidl_cli("summary " + dir.file("rgb.safetensors"), dir).out, Catch::Contains("input [8,8,3]"));
  CHECK_THAT(rgb.err, Catch::Contains("test accuracy") && (Catch::Contains("-> 0.9") || Catch::Contains("-> 1.0000")));
  // A folder of another image size than the first is named.
  std::filesystem::create_directories(dir.file("odd/train/a"));
  std::filesystem::create_directories(dir.file("odd/train/b"));
  write_png(dir.file("odd/train/a/1.png"), {2, 2, std::vector<uint8_t>(4, 9)});
  write_png(dir.file("odd/train/b/1.png"), {3, 2, std::vector<uint8_t>(6, 9)});
  const Run odd = minidl_cli("train --data " + dir.file("odd") + " --validation-split 0.5", dir);
  CHECK(odd.status == 1);
  CHECK_THAT(odd.err, Catch::Contains("odd/train/b/1.png' is 2x3 pixels, but the first image is 2x2"));
  const Run none = minidl_cli("train --data " + dir.file("odd"), dir);
  CHECK_THAT(none.err, Catch::Contains("has no test/<class>/ folder"));
}

TEST_CASE("the small things: --version, summary FILE, --save with another format's extension, predict --out", "[cli]") {
  TempDir dir;
  const Run version = minidl_cli("--version", dir);
  CHECK(version.status == 0);
  CHECK_THAT(version.out, Catch::StartsWith("minidl 0."));
  const Run onnx = minidl_cli("train --save " + dir.file("m.onnx") + " " + minidl::test::data_flag(), dir);
  CHECK(onnx.status == 1);
  CHECK_THAT(onnx.err, Catch::Contains("minidl writes a safetensors checkpoint there, not .onnx") &&
                           Catch::Contains("minidl export --model MODEL.safetensors"));
  CHECK_FALSE(std::filesystem::exists(dir.file("m.onnx")));
  const std::string model = dir.file("m.safetensors");
  REQUIRE(minidl_cli("train --epochs 1 --steps 5 --save " + model + " " + minidl::test::data_flag(), dir).status == 0);
  const Run summary = minidl_cli("summary " + model, dir);
  CHECK(summary.status == 0);
  CHECK_THAT(summary.out, Catch::Contains("dense:64,relu,bn,dense:10,softmax (norm running, input [28,28,1])"));
  CHECK(minidl_cli("summary " + dir.file("nothing"), dir).status == 1);
  const Run out = minidl_cli("predict --model " + model + " --first 2 --out " + dir.file("p.csv"), dir);
  REQUIRE(out.status == 0);
  const std::string csv = read_bytes(dir.file("p.csv"));
  CHECK(csv.rfind("index,class,p_0,p_1,p_2,p_3,p_4,p_5,p_6,p_7,p_8,p_9\n0,", 0) == 0);
  CHECK(std::count(csv.begin(), csv.end(), '\n') == 3);
  CHECK(minidl_cli("predict --model " + model + " --out " + dir.file("p.json"), dir).status == 1);
}

TEST_CASE("a test label the training data never has is named in a warning", "[cli]") {
  TempDir dir;
  DatasetSplits s = make_synthetic(64, 16, 2);
  s.test.labels[3] = 12;
  save_mnist_split(dir.path(), "train", s.train, true);
  save_mnist_split(dir.path(), "t10k", s.test, true);
  const Run r = minidl_cli("train --epochs 1 --data " + dir.path(), dir);
  CHECK(r.status == 0);
  CHECK_THAT(r.err, Catch::Contains("class 12 of the test data occurs nowhere in the training data"));
}

TEST_CASE("compare on a regression scores each mode by test R²", "[cli][sklearn]") {
  const TempDir& data = sklearn_dir();
  TempDir dir;
  const Run r = minidl_cli("compare --data " + in(data, "diabetes_train.csv") + " --test " + in(data, "diabetes_test.csv") +
                               " --label target --standardize --lr 0.01 --modes running,none --epochs 20 --out " + dir.path(), dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK_THAT(r.out, Catch::Contains("moving: test R² in inference mode"));
  const std::string csv = read_bytes(dir.file("compare.csv"));
  CHECK_THAT(csv, Catch::StartsWith("mode,bn_sync,batch_size,seed,epoch,steps,seconds,train_loss,train_r2,test_r2,"));
  const nlohmann::json json = nlohmann::json::parse(read_bytes(dir.file("compare.json")));
  for (const auto& run : json["runs"]) CHECK(run["epochs"].back()["test_r2"].get<double>() > 0.3);
}

TEST_CASE("a text feature column is one-hot encoded, kept in the checkpoint, and an unseen category is named",
          "[cli]") {
  TempDir dir;
  std::string train = "size,color,label\n", test = "color,size,label\n";
  for (int i = 0; i < 120; ++i) {
    const char* color = i % 3 == 0 ? "red" : i % 3 == 1 ? "green" : "blue";
    const int label = i % 3 == 0 ? 1 : 0;  // the colour decides
    train += std::to_string(i % 7) + "," + color + "," + std::to_string(label) + "\n";
    if (i < 30) test += std::string(color) + "," + std::to_string(i % 5) + "," + std::to_string(label) + "\n";
  }
  write_bytes(dir.file("train.csv"), train);
  write_bytes(dir.file("test.csv"), test);
  const std::string model = dir.file("m.safetensors");
  const Run r = minidl_cli("train --data " + dir.file("train.csv") + " --test " + dir.file("test.csv") +
                               " --standardize --epochs 15 --lr 0.01 --json --save " + model, dir);
  INFO(r.err);
  REQUIRE(r.status == 0);
  CHECK(last_json(r)["test_accuracy"].get<double>() == 1.0);
  CHECK_THAT(minidl_cli("summary " + model, dir).out, Catch::Contains("input [4]"));  // size + three colours
  write_bytes(dir.file("new.csv"), "size,color\n3,red\n2,purple\n");
  const Run unseen = minidl_cli("predict --model " + model + " --data " + dir.file("new.csv"), dir);
  CHECK(unseen.status == 1);
  CHECK_THAT(unseen.err, Catch::Contains("line 3, column 2 ('color'): 'purple' is not one of the 3 categories the model "
                                         "was trained on (blue, green, red)"));
  write_bytes(dir.file("new.csv"), "color,size\nred,3\n");
  const Run known = minidl_cli("predict --json --model " + model + " --data " + dir.file("new.csv"), dir);
  INFO(known.err);
  REQUIRE(known.status == 0);
  CHECK(last_json(known)["class"] == 1);
}
