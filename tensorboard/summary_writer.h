#pragma once
// Writing TensorBoard summaries (docs/tensorboard.md): scalars, PNG images, Markdown text and
// the HParams plugin's records, each an Event appended to this writer's own event file.
//
//   tensorboard::SummaryWriter tb(run_dir / "tb");
//   tb.start_session(first_step);            // a resumed run: drop the old points from here on
//   tb.scalar("train/loss", loss, step);
//
// Steps are the x axis TensorBoard plots against; wall times are taken when a value is added.
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

namespace uniad::tensorboard {

class EventFile;

// A hyperparameter's value: a number, a flag or a string (the HParams plugin's three types).
using HParamValue = std::variant<double, bool, std::string>;
using HParams = std::map<std::string, HParamValue>;

// A metric the HParams plugin shows per session: scalar `tag` of the run `group` (relative to
// the session's folder: "" the session's own, "tb" a subfolder).
struct HParamMetric {
  std::string group, tag, display_name;
};

class SummaryWriter {
 public:
  // A new event file in `dir` (created if missing); its first record is the format version.
  explicit SummaryWriter(const std::filesystem::path& dir);
  ~SummaryWriter();

  // SessionLog START at `step`: readers drop every earlier event of this folder at `step` or
  // later, so a run resumed from a checkpoint at step S - 1 logs steps S... exactly once.
  void start_session(std::int64_t step);

  void scalar(const std::string& tag, double value, std::int64_t step);
  // A PNG, as TensorBoard's image dashboard shows it.
  void image(const std::string& tag, const std::string& png, int width, int height, std::int64_t step);
  // Markdown, shown by the text dashboard (tables render as tables).
  void text(const std::string& tag, const std::string& markdown, std::int64_t step);

  // The HParams plugin: this folder is one session with these hyperparameters; sessions with
  // the same `group` (a configuration's seeds) are shown together.
  void hparams_session_start(const HParams& hparams, const std::string& group, double start_time_secs);
  void hparams_session_end(bool success, double end_time_secs);
  // The experiment: which hyperparameters (with every value they take; those with more than
  // one are marked as differing, which the dashboard shows first) and metrics the plugin's
  // table and filters offer, written once for all sessions below this folder.
  void hparams_experiment(const std::string& name, const std::map<std::string, std::vector<HParamValue>>& domains,
                          const std::vector<HParamMetric>& metrics, double time_created_secs);

  void flush();
  // Flushes if the last write is 2 s old (EventFile::flush_interval).
  void flush_if_due();
  const std::filesystem::path& path() const;

 private:
  std::unique_ptr<EventFile> file_;
};

// Seconds since the epoch, as event wall times and the HParams plugin's times are stamped.
double wall_time_now();

}  // namespace uniad::tensorboard
