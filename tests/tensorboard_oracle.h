#pragma once
// The TensorBoard oracle: what TensorBoard itself reads from a log folder
// (tests/oracle/read_tensorboard.py, run with pip's tensorboard; UNIAD_REQUIRE_TENSORBOARD
// skips a test without it), as JSON: {RUN: {"scalars", "images", "text", "hparams"}}.
#include <nlohmann/json.hpp>

#include "tests/test_support.h"

namespace uniad::test {

// `purge`: as TensorBoard shows it (orphaned steps of a restarted session dropped), or every
// record as written. The oracle's own messages go to LOGDIR.oracle.log beside the folder.
inline nlohmann::json read_tensorboard(const fs::path& logdir, bool purge = true) {
  const fs::path log = logdir.parent_path() / (logdir.filename().string() + ".oracle.log");
  const CommandResult r = run("{ " + quote(tensorboard_python()) + " " + quote(oracle_script("read_tensorboard.py")) +
                              " " + quote(logdir) + (purge ? "" : " --no-purge") + " 2>" + quote(log) + "; }");
  EXPECT_EQ(r.exit_code, 0) << r.output << read_bytes(log);
  const nlohmann::json parsed = nlohmann::json::parse(r.output, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << r.output << read_bytes(log);
  return parsed.is_discarded() ? nlohmann::json::object() : parsed;
}

}  // namespace uniad::test
