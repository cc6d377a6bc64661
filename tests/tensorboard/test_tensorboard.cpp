// TensorBoard event files (tensorboard/): what uniad writes, read back by the real
// `tensorboard` package (tests/oracle/read_tensorboard.py: EventMultiplexer and
// EventAccumulator, as TensorBoard loads a log folder, CRCs checked).
#include <sys/mount.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/error.h"
#include "tensorboard/event_file.h"
#include "tensorboard/summary_writer.h"
#include "tests/tensorboard_oracle.h"
#include "tests/test_support.h"

namespace uniad::tensorboard {
namespace {

using test::TempDir;
using nlohmann::json;

TEST(TensorBoard, MaskedCrc32cOfTheCheckString) {
  // CRC-32C of "123456789" is 0xE3069283 (the catalogue's check value); masked as TFRecord:
  // rotate right by 15, add 0xA282EAD8.
  const std::uint32_t crc = 0xE3069283u, masked = ((crc >> 15) | (crc << 17)) + 0xA282EAD8u;
  EXPECT_EQ(masked_crc32c("123456789", 9), masked);
  EXPECT_EQ(masked_crc32c("", 0), 0xA282EAD8u);  // the CRC of nothing is 0
  // A frame: 8-byte length, its CRC, the data, the data's CRC.
  const std::string frame = tfrecord_frame("abc");
  ASSERT_EQ(frame.size(), 8u + 4 + 3 + 4);
  EXPECT_EQ(frame.substr(0, 8), std::string("\x03\0\0\0\0\0\0\0", 8));
  EXPECT_EQ(frame.substr(12, 3), "abc");
}

TEST(TensorBoard, ScalarsImagesTextAndHParamsReadBackAsWritten) {
  UNIAD_REQUIRE_TENSORBOARD();
  TempDir dir;
  const std::filesystem::path png_path = std::filesystem::path(UNIAD_SOURCE_DIR) / "tests" / "tensorboard" / "two_by_one.png";
  const std::string png = test::read_bytes(png_path);
  ASSERT_FALSE(png.empty());
  {
    SummaryWriter session(dir / "sweep" / "run-a");
    session.hparams_session_start({{"lr", 5e-4}, {"jitter", true}, {"model", std::string("uniad")}}, "base", 100.5);
    session.hparams_session_end(true, 200.25);
    SummaryWriter tb(dir / "sweep" / "run-a" / "tb");
    for (int step = 1; step <= 5; ++step) tb.scalar("train/loss", 1.0 / step, step);
    tb.scalar("eval/mean/image_auroc", 0.875, 5);
    tb.image("panels/bottle", png, 2, 1, 5);
    tb.text("notes", "| a | b |\n|---|---|\n| 1 | 2 |", 3);
    SummaryWriter root(dir / "sweep");
    root.hparams_experiment("claims", {{"lr", {5e-4, 1e-3}}, {"model", {std::string("uniad"), std::string("cnn")}}},
                            {{"tb", "eval/mean/image_auroc", "image AUROC"}}, 99.0);
  }
  const json runs = test::read_tensorboard(dir / "sweep");
  ASSERT_EQ(runs.size(), 3u) << runs.dump();
  const json& tb = runs.at("run-a/tb");
  const json& loss = tb.at("scalars").at("train/loss");
  ASSERT_EQ(loss.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(loss[i][0], i + 1);
    EXPECT_FLOAT_EQ(loss[i][1].get<float>(), static_cast<float>(1.0 / (i + 1)));  // simple_value is a float
  }
  EXPECT_FLOAT_EQ(tb.at("scalars").at("eval/mean/image_auroc")[0][1].get<float>(), 0.875f);
  const json& image = tb.at("images").at("panels/bottle")[0];
  EXPECT_EQ(image[0], 5);
  EXPECT_EQ(image[1], 2);
  EXPECT_EQ(image[2], 1);
  // The PNG's bytes, unchanged (the oracle gives them in base64).
  EXPECT_EQ(image[3], test::run("base64 -w0 " + test::quote(png_path)).output);
  EXPECT_EQ(tb.at("text").at("notes")[0][1], "| a | b |\n|---|---|\n| 1 | 2 |");

  const json& start = runs.at("run-a").at("hparams").at("_hparams_/session_start_info");
  EXPECT_EQ(start.at("group_name"), "base");
  EXPECT_DOUBLE_EQ(start.at("start_time_secs").get<double>(), 100.5);
  EXPECT_DOUBLE_EQ(start.at("hparams").at("lr").get<double>(), 5e-4);
  EXPECT_EQ(start.at("hparams").at("jitter"), true);
  EXPECT_EQ(start.at("hparams").at("model"), "uniad");
  const json& end = runs.at("run-a").at("hparams").at("_hparams_/session_end_info");
  EXPECT_EQ(end.at("status"), "STATUS_SUCCESS");
  EXPECT_DOUBLE_EQ(end.at("end_time_secs").get<double>(), 200.25);

  const json& experiment = runs.at(".").at("hparams").at("_hparams_/experiment");
  EXPECT_EQ(experiment.at("name"), "claims");
  ASSERT_EQ(experiment.at("hparam_infos").size(), 2u);
  EXPECT_EQ(experiment.at("hparam_infos")[0].at("name"), "lr");
  EXPECT_EQ(experiment.at("hparam_infos")[0].at("type"), "DATA_TYPE_FLOAT64");
  EXPECT_EQ(experiment.at("hparam_infos")[0].at("domain_discrete"), json::parse("[0.0005, 0.001]"));
  EXPECT_EQ(experiment.at("hparam_infos")[0].at("differs"), true);
  EXPECT_EQ(experiment.at("hparam_infos")[1].at("type"), "DATA_TYPE_STRING");
  EXPECT_EQ(experiment.at("metric_infos")[0].at("name"), json::parse(R"({"group": "tb", "tag": "eval/mean/image_auroc"})"));
}

TEST(TensorBoard, ARestartedSessionLeavesOnePointPerStep) {
  UNIAD_REQUIRE_TENSORBOARD();
  TempDir dir;
  {
    SummaryWriter first(dir / "tb");
    first.start_session(1);
    for (int step = 1; step <= 10; ++step) first.scalar("loss", 100 + step, step);
    first.scalar("auroc", 0.5, 9);
  }
  // A second writer (a run resumed from its checkpoint at step 5), the same second or not.
  SummaryWriter second(dir / "tb");
  second.start_session(6);
  for (int step = 6; step <= 12; ++step) second.scalar("loss", 200 + step, step);
  second.flush();
  const json runs = test::read_tensorboard(dir.path());
  const json& loss = runs.at("tb").at("scalars").at("loss");
  ASSERT_EQ(loss.size(), 12u) << loss.dump();
  for (int step = 1; step <= 12; ++step) {
    EXPECT_EQ(loss[step - 1][0], step);
    EXPECT_EQ(loss[step - 1][1].get<double>(), step <= 5 ? 100 + step : 200 + step) << "step " << step;
  }
  EXPECT_EQ(runs.at("tb").at("scalars").at("auroc").size(), 0u);  // step 9, after the restart: dropped
}

TEST(TensorBoard, BufferedPointsReachTheFileWithin2Seconds) {
  TempDir dir;
  SummaryWriter tb(dir.path());
  tb.scalar("loss", 1.0, 1);
  std::this_thread::sleep_for(EventFile::flush_interval + std::chrono::milliseconds(100));
  tb.flush_if_due();  // what the trainer calls at every step, logged or not
  // The version record and the point, framed: on disk without an explicit flush.
  EXPECT_GT(std::filesystem::file_size(tb.path()), 2u * 16) << "still buffered after the flush interval";
}

TEST(TensorBoard, NewFilesSortAfterEveryEventFileInTheFolder) {
  TempDir dir;
  // A file from a node whose clock runs ahead (a shared file system): the next must sort after.
  test::write_text(dir / "events.out.tfevents.9999999999999990.other.1", "");
  const std::string a = new_event_file_path(dir.path()).filename().string();
  EXPECT_EQ(a.rfind("events.out.tfevents.9999999999999991.", 0), 0u) << a;
  SummaryWriter one(dir.path()), two(dir.path());
  EXPECT_LT(one.path().filename().string(), two.path().filename().string());
  EXPECT_GT(one.path().filename().string(), "events.out.tfevents.9999999999999990.other.1");
}

TEST(TensorBoard, AFullDiskIsAnOutputErrorAndTheFileKeepsWholeRecords) {
  UNIAD_REQUIRE_TENSORBOARD();
  if (geteuid() != 0) GTEST_SKIP() << "SKIPPED: mounting a small tmpfs needs root";
  TempDir dir;
  const std::filesystem::path mnt = dir / "mnt";
  std::filesystem::create_directories(mnt);
  if (mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=64k") != 0)
    GTEST_SKIP() << "SKIPPED: cannot mount a tmpfs here: " << std::strerror(errno);
  struct Unmount {
    std::filesystem::path p;
    ~Unmount() { umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  std::string path;
  int written = 0;
  try {
    SummaryWriter tb(mnt / "tb");
    path = tb.path().string();
    const std::string big(10000, 'x');  // ~10 KB per text record: the 64 KiB fill up fast
    for (; written < 100; ++written) {
      tb.text("big", big, written);
      tb.flush();
    }
    FAIL() << "64 KiB took 100 records of 10 KB";
  } catch (const OutputError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  // Copy out what is there: TensorBoard reads (CRCs checked) every record that was flushed
  // before the disk filled, and nothing after.
  std::filesystem::create_directories(dir / "copy");
  std::filesystem::copy(mnt / "tb", dir / "copy" / "tb", std::filesystem::copy_options::recursive);
  const json runs = test::read_tensorboard(dir / "copy");
  EXPECT_EQ(runs.at("tb").at("text").at("big").size(), static_cast<std::size_t>(written));
}

}  // namespace
}  // namespace uniad::tensorboard
