#include "report/evaluation_events.h"

#include <cmath>

namespace uniad::report {

void log_evaluation(tensorboard::SummaryWriter& tb, std::int64_t step, const eval::Evaluation& evaluation,
                    const Panels& panels) {
  const nlohmann::ordered_json mean = evaluation.mean();
  for (const auto& column : eval::metric_columns()) {
    const auto value = mean.find(column.key);
    if (value != mean.end() && value->is_number()) tb.scalar(std::string("eval/mean/") + column.key, value->get<double>(), step);
  }
  for (const auto& c : evaluation.classes) {
    for (const auto& column : eval::metric_columns()) {
      const double value = column.get(c);
      if (!std::isnan(value)) tb.scalar("eval/" + c.name + "/" + column.key, value, step);
    }
  }
  for (const auto& [name, panel] : panels) tb.image("panels/" + name, panel.png, panel.width, panel.height, step);
  tb.flush();
}

}  // namespace uniad::report
