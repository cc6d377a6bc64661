#pragma once
// Exact anomaly-detection metrics (../shared/docs/uniad-spec.md, "Metrics, precisely"):
// AUROC (trapezoid over the ROC curve with ties as one step), AP (step-wise, sum of
// (R_n - R_{n-1}) P_n), F1-max over the exact precision-recall curve, and AUPRO up to a
// false-positive rate of 0.3 (per 8-connected ground-truth region, interpolated at 0.3).
//
// Every distinct score is a threshold (no binning). The anomalous samples' scores are
// radix-sorted; normal samples are only counted per gap between those thresholds (a binary
// search each), since between two anomalous scores every curve moves along a straight line.
// One pass over the thresholds then accumulates all four metrics. Memory: about 20 bytes per
// anomalous pixel; normal pixels are never copied.
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace uniad::eval {

inline constexpr double kUndefined = std::numeric_limits<double>::quiet_NaN();

struct BinaryMetrics {
  double auroc = kUndefined;
  double ap = kUndefined;
  double f1_max = kUndefined;
  double f1_threshold = kUndefined;  // the score at which F1 is maximal
  std::int64_t positives = 0, negatives = 0;
  // Undefined (NaN) without both positives and negatives.
  bool defined() const { return positives > 0 && negatives > 0; }
};

struct PixelMetrics {
  BinaryMetrics binary;
  double aupro = kUndefined;  // NaN without anomalous regions
  std::int64_t regions = 0;
};

// Image-level metrics from one score and one 0/1 label per image. Throws on NaN scores.
BinaryMetrics binary_metrics(const std::vector<float>& scores, const std::vector<std::uint8_t>& labels);

// Pixel-level metrics over all pixels of `images` maps [images, h, w] with 0/1 masks of the
// same shape. `max_fpr` bounds the AUPRO integral (0.3 by default).
PixelMetrics pixel_metrics(const float* maps, const std::uint8_t* masks, std::int64_t images, int h, int w,
                           double max_fpr = 0.3);

}  // namespace uniad::eval
