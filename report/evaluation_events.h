#pragma once
// An evaluation as TensorBoard records (docs/tensorboard.md), the same tags whoever evaluates
// (the trainer's periodic evaluations, `uniad eval`), so TensorBoard draws them in one chart:
//   eval/mean/<metric>          the mean over classes of each metric (image_auroc, ..., aupro)
//   eval/<class>/<metric>       each class's
//   panels/<class>              its qualitative panel (report/pictures.h), when given
#include <cstdint>
#include <string>

#include "eval/evaluate.h"
#include "report/eval_report.h"
#include "tensorboard/summary_writer.h"

namespace uniad::report {

// Undefined metrics (NaN: a class without anomalous pixels has no AUPRO) are not logged.
void log_evaluation(tensorboard::SummaryWriter& tb, std::int64_t step, const eval::Evaluation& evaluation,
                    const Panels& panels);

}  // namespace uniad::report
