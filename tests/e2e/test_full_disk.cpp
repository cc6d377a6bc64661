// A full file system during a write: the real `uniad` on a small tmpfs mounted by the test
// (root only; skipped, and shown as skipped, elsewhere). Every writer must report the file
// it could not write, exit with 74 (never crash), and leave no temporary or half-written file.
#include <sys/mount.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace uniad {
namespace {

namespace fs = std::filesystem;
using test::quote;

std::string uniad() { return quote(test::uniad_binary()); }
const std::string kSmallModel = " --hidden 32 --feedforward 64 --heads 4 --encoder-layers 1 --decoder-layers 2 --threads 1 -q";

// Everything in `dir`, recursively (names relative to it).
std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file()) out.push_back(fs::relative(entry.path(), dir).string());
  return out;
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += n + " ";
  return out;
}

class FullDisk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test::TempDir();
    auto r = test::make_small_cache(dir());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    r = test::run(uniad() + " train --cache " + quote(dir() / "cache.h5") + " --run-dir " + quote(dir() / "run") +
                  kSmallModel + " --epochs 1 --batch-size 4");
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  static void TearDownTestSuite() { delete dir_; }
  static fs::path dir() { return dir_->path(); }

  // A tmpfs of `kib` KiB at dir()/mnt-<name>, unmounted at the end of the test.
  fs::path small_disk(const std::string& name, int kib) {
    if (geteuid() != 0) {
      skip_ = "SKIPPED: mounting a small tmpfs needs root";
      return {};
    }
    const fs::path mnt = dir() / ("mnt-" + name);
    fs::create_directories(mnt);
    const std::string options = "size=" + std::to_string(kib) + "k";
    if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      skip_ = std::string("SKIPPED: cannot mount a tmpfs here: ") + std::strerror(errno);
      return {};
    }
    mounts_.push_back(mnt);
    return mnt;
  }
  void TearDown() override {
    for (const auto& m : mounts_) umount2(m.c_str(), MNT_DETACH);
  }
  static void expect_clean_failure(const test::CommandResult& r, const std::string& named) {
    EXPECT_EQ(r.exit_code, 74) << "the documented exit code for an output that cannot be written: " << r.output;
    EXPECT_EQ(r.output.find("Segmentation"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find(named), std::string::npos) << "names " << named << ": " << r.output;
  }

  std::string skip_;
  std::vector<fs::path> mounts_;
  static inline test::TempDir* dir_ = nullptr;
};

#define UNIAD_SMALL_DISK(var, name, kib) \
  const fs::path var = small_disk(name, kib); \
  if (var.empty()) GTEST_SKIP() << skip_

TEST_F(FullDisk, ExtractLeavesNoCacheAndExitsWith74) {
  UNIAD_SMALL_DISK(disk, "extract", 256);
  const auto r = test::run(uniad() + " extract -q --data " + quote(dir() / "data") + " --out " + quote(disk / "cache.h5"));
  expect_clean_failure(r, (disk / "cache.h5").string());
  EXPECT_TRUE(files_in(disk).empty()) << "left behind: " << joined(files_in(disk));
}

TEST_F(FullDisk, TrainingCheckpointFailsCleanly) {
  // Room for config.json and the metrics log, not for the checkpoint.
  UNIAD_SMALL_DISK(disk, "train", 96);
  const fs::path run = disk / "run";
  const auto r = test::run(uniad() + " train --cache " + quote(dir() / "cache.h5") + " --run-dir " + quote(run) +
                           kSmallModel + " --epochs 1 --batch-size 4");
  expect_clean_failure(r, (run / "checkpoint.pt").string());
  const auto left = files_in(disk);
  for (const auto& name : left) EXPECT_EQ(name.find(".tmp"), std::string::npos) << "temporary file left: " << name;
  EXPECT_FALSE(fs::exists(run / "checkpoint.pt"));
}

TEST_F(FullDisk, EvalReportAndMapsFailCleanly) {
  // Saved maps (HDF5) on a disk too small for them.
  UNIAD_SMALL_DISK(maps_disk, "maps", 512);
  auto r = test::run(uniad() + " eval -q --pictures 0 --save-maps --run " + quote(dir() / "run") + " --cache " +
                     quote(dir() / "cache.h5") + " --out " + quote(maps_disk / "eval"));
  expect_clean_failure(r, "maps.h5");
  for (const auto& name : files_in(maps_disk)) ADD_FAILURE() << "left behind: " << name;
  // The report's pictures and files on a disk too small for them.
  UNIAD_SMALL_DISK(report_disk, "report", 16);
  r = test::run(uniad() + " eval -q --pictures 4 --run " + quote(dir() / "run") + " --cache " +
                quote(dir() / "cache.h5") + " --out " + quote(report_disk / "eval"));
  expect_clean_failure(r, (report_disk / "eval").string());
  for (const auto& name : files_in(report_disk)) {
    EXPECT_EQ(name.find(".tmp"), std::string::npos) << "temporary file left: " << name;
  }
  EXPECT_FALSE(fs::exists(report_disk / "eval/index.html")) << "no report claims to be complete";
}

}  // namespace
}  // namespace uniad
