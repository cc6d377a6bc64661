// common/: the helpers every stage relies on.
#include <atomic>
#include <stdexcept>

#include "common/fs.h"
#include "common/parallel.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/table.h"
#include "tests/test_support.h"

namespace uniad {
namespace {

TEST(Parallel, VisitsEveryIndexOnceAndRethrows) {
  std::vector<std::atomic<int>> seen(1000);
  parallel_for(seen.size(), 3, [&](std::size_t i) { ++seen[i]; });
  for (const auto& s : seen) ASSERT_EQ(s.load(), 1);
  EXPECT_THROW(parallel_for(100, 2, [](std::size_t i) { if (i == 37) throw std::runtime_error("x"); }), std::runtime_error);
}

TEST(AtomicWrite, ReplacesOnlyWhenComplete) {
  test::TempDir dir;
  const fs::path target = dir / "file.txt";
  atomic_write_bytes(target, "old");
  EXPECT_THROW(atomic_write(target, [](const fs::path& tmp) {
                 test::write_text(tmp, "half");
                 throw std::runtime_error("killed");
               }),
               std::runtime_error);
  EXPECT_EQ(test::read_bytes(target), "old");
  EXPECT_FALSE(fs::exists(temporary_path_for(target))) << "temporary removed";
  atomic_write_bytes(target, "new");
  EXPECT_EQ(test::read_bytes(target), "new");
}

TEST(Rng, DeterministicAndWellDistributed) {
  Rng a(42), b(42);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(a.next(), b.next());
  EXPECT_NE(Rng::derive(1, 2, 3).next(), Rng::derive(1, 2, 4).next());
  Rng r(7);
  double sum = 0, sum2 = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double x = r.normal();
    sum += x;
    sum2 += x * x;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum2 / n, 1.0, 0.01);
}

TEST(Table, TextAndMarkdown) {
  Table t{{"class", "AUROC"}, {{"bottle", "99.7"}, {"cable", "95.2"}}};
  EXPECT_EQ(t.to_markdown(), "| class  | AUROC |\n| :----- | ----: |\n| bottle |  99.7 |\n| cable  |  95.2 |\n");
  EXPECT_EQ(t.to_text(), "class   AUROC\n------  -----\nbottle   99.7\ncable    95.2\n");
}

TEST(Progress, DurationFormat) {
  EXPECT_EQ(format_duration(12.34), "12.3s");
  EXPECT_EQ(format_duration(185), "3m05s");
  EXPECT_EQ(format_duration(3725), "1h02m");
}

}  // namespace
}  // namespace uniad
