#include "eval/metrics.h"

#include <algorithm>
#include <cstring>

#include <opencv2/imgproc.hpp>

#include "common/error.h"

namespace uniad::eval {

namespace {

// Float -> unsigned key with the same order (negative floats flipped, positive ones offset).
std::uint32_t order_key(float value) {
  if (value == 0.0f) value = 0.0f;  // -0 and +0 are the same threshold
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return (bits & 0x80000000u) ? ~bits : bits | 0x80000000u;
}

float key_value(std::uint32_t key) {
  const std::uint32_t bits = (key & 0x80000000u) ? key & 0x7FFFFFFFu : ~key;
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

// LSD radix sort of keys (ascending), 3 passes of 11 bits, carrying a payload along.
void radix_sort(std::vector<std::uint32_t>& keys, std::vector<std::uint32_t>& payload) {
  const std::size_t n = keys.size();
  std::vector<std::uint32_t> keys_tmp(n), payload_tmp(n);
  for (int shift = 0; shift < 32; shift += 11) {
    std::vector<std::size_t> count(2049, 0);
    for (std::uint32_t k : keys) ++count[((k >> shift) & 2047) + 1];
    for (int b = 0; b < 2048; ++b) count[b + 1] += count[b];
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t to = count[(keys[i] >> shift) & 2047]++;
      keys_tmp[to] = keys[i];
      payload_tmp[to] = payload[i];
    }
    keys.swap(keys_tmp);
    payload.swap(payload_tmp);
  }
}

// The thresholds that matter are the distinct scores of anomalous samples: between two of
// them only false positives change, which moves every curve along a straight line (ROC: flat;
// PR: no recall change; PRO: constant), so normal samples need only be counted per gap.
// That keeps memory to the anomalous samples: normal scores are never copied or sorted.
struct Thresholds {
  std::vector<std::uint32_t> keys;  // distinct anomalous score keys, ascending
  std::vector<double> tp, pro;      // per key: anomalous samples, and their summed PRO weight
  std::vector<double> fp_equal;     // per key: normal samples with exactly this score
  std::vector<double> fp_below;     // [k]: normal samples strictly between keys[k-1] and keys[k];
                                    // [size]: above the largest key
  double positives = 0, negatives = 0;
};

// positives: keys (any order) with the PRO weight of each; negatives: visited by `for_each_negative`.
template <typename ForEachNegative>
Thresholds make_thresholds(std::vector<std::uint32_t> keys, std::vector<double> weights,
                           const ForEachNegative& for_each_negative) {
  Thresholds t;
  t.positives = static_cast<double>(keys.size());
  std::vector<std::uint32_t> order(keys.size());
  for (std::uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  radix_sort(keys, order);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    if (t.keys.empty() || t.keys.back() != keys[i]) {
      t.keys.push_back(keys[i]);
      t.tp.push_back(0);
      t.pro.push_back(0);
    }
    t.tp.back() += 1;
    t.pro.back() += weights.empty() ? 0.0 : weights[order[i]];
  }
  t.fp_equal.assign(t.keys.size(), 0);
  t.fp_below.assign(t.keys.size() + 1, 0);
  for_each_negative([&](std::uint32_t key) {
    const auto it = std::lower_bound(t.keys.begin(), t.keys.end(), key);
    const std::size_t k = static_cast<std::size_t>(it - t.keys.begin());
    if (it != t.keys.end() && *it == key) {
      t.fp_equal[k] += 1;
    } else {
      t.fp_below[k] += 1;
    }
    t.negatives += 1;
  });
  return t;
}

struct Accumulated {
  BinaryMetrics binary;
  double aupro = kUndefined;
};

// One pass over the thresholds, from the highest score down, accumulating every metric.
Accumulated sweep(const Thresholds& t, double max_fpr, bool with_pro) {
  Accumulated out;
  BinaryMetrics& m = out.binary;
  m.positives = static_cast<std::int64_t>(t.positives);
  m.negatives = static_cast<std::int64_t>(t.negatives);
  if (!m.defined()) return out;
  const double P = t.positives, N = t.negatives;
  double tp = 0, fp = 0, auroc = 0, ap = 0, f1_max = 0, f1_threshold = 0;
  double pro = 0, pro_area = 0, fpr_prev = 0, pro_prev = 0;
  bool pro_done = !with_pro;
  // Adds the PRO curve's trapezoid up to the current point, clipped at max_fpr.
  auto pro_step = [&] {
    if (pro_done) return;
    const double fpr = fp / N;
    if (fpr >= max_fpr) {
      const double pro_at = fpr > fpr_prev ? pro_prev + (pro - pro_prev) * (max_fpr - fpr_prev) / (fpr - fpr_prev) : pro;
      pro_area += (max_fpr - fpr_prev) * (pro_prev + pro_at) / 2;
      pro_done = true;
    } else {
      pro_area += (fpr - fpr_prev) * (pro_prev + pro) / 2;
    }
    fpr_prev = fpr;
    pro_prev = pro;
  };
  // Normal samples alone: a flat ROC step, no recall change, constant PRO.
  auto negatives_only = [&](double count) {
    if (count == 0) return;
    auroc += count / N * tp / P;
    fp += count;
    pro_step();
  };
  const std::size_t K = t.keys.size();
  negatives_only(t.fp_below[K]);
  for (std::size_t k = K; k-- > 0;) {
    const double tp_prev = tp, fp_prev = fp;
    tp += t.tp[k];
    fp += t.fp_equal[k];
    pro += t.pro[k];
    auroc += (fp - fp_prev) / N * (tp + tp_prev) / (2 * P);  // ties form one sloped step
    const double precision = tp / (tp + fp), recall = tp / P;
    ap += (tp - tp_prev) / P * precision;
    const double f1 = 2 * precision * recall / (precision + recall);
    if (f1 > f1_max) f1_max = f1, f1_threshold = key_value(t.keys[k]);
    pro_step();
    negatives_only(t.fp_below[k]);
  }
  m.auroc = auroc;
  m.ap = ap;
  m.f1_max = f1_max;
  m.f1_threshold = f1_threshold;
  if (with_pro) out.aupro = pro_area / max_fpr;
  return out;
}

void check_finite(float value) {
  if (!std::isfinite(value)) throw RuntimeError("anomaly score is NaN or infinite; the model or its input is broken");
}

}  // namespace

BinaryMetrics binary_metrics(const std::vector<float>& scores, const std::vector<std::uint8_t>& labels) {
  if (scores.size() != labels.size()) throw RuntimeError("metrics: scores and labels differ in length");
  std::vector<std::uint32_t> positives;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    check_finite(scores[i]);
    if (labels[i]) positives.push_back(order_key(scores[i]));
  }
  const Thresholds t = make_thresholds(std::move(positives), {}, [&](const auto& add) {
    for (std::size_t i = 0; i < scores.size(); ++i)
      if (!labels[i]) add(order_key(scores[i]));
  });
  return sweep(t, 0.3, false).binary;
}

PixelMetrics pixel_metrics(const float* maps, const std::uint8_t* masks, std::int64_t images, int h, int w,
                           double max_fpr) {
  PixelMetrics out;
  const std::int64_t plane = std::int64_t(h) * w, pixels = images * plane;
  // Regions: 8-connected components of each mask. A region's pixels weigh 1 / (regions * size),
  // so the summed weight of the detected pixels is the mean per-region overlap (PRO).
  std::vector<std::int64_t> region_size{0};
  std::vector<std::uint32_t> positives, region_of_positive;
  cv::Mat labels;
  for (std::int64_t k = 0; k < images; ++k) {
    const std::uint8_t* mask = masks + k * plane;
    if (std::none_of(mask, mask + plane, [](std::uint8_t v) { return v != 0; })) continue;
    const int first_region = static_cast<int>(region_size.size());
    const int found = cv::connectedComponents(cv::Mat(h, w, CV_8U, const_cast<std::uint8_t*>(mask)), labels, 8, CV_32S);
    region_size.resize(region_size.size() + found - 1, 0);
    for (std::int64_t p = 0; p < plane; ++p) {
      if (!mask[p]) continue;
      const int region = first_region + labels.ptr<int>()[p] - 1;
      ++region_size[region];
      check_finite(maps[k * plane + p]);
      positives.push_back(order_key(maps[k * plane + p]));
      region_of_positive.push_back(static_cast<std::uint32_t>(region));
    }
  }
  out.regions = static_cast<std::int64_t>(region_size.size()) - 1;
  std::vector<double> weights(positives.size());
  for (std::size_t i = 0; i < positives.size(); ++i) {
    weights[i] = 1.0 / (double(out.regions) * region_size[region_of_positive[i]]);
  }
  region_of_positive = {};
  const Thresholds t = make_thresholds(std::move(positives), std::move(weights), [&](const auto& add) {
    for (std::int64_t i = 0; i < pixels; ++i) {
      if (masks[i]) continue;
      check_finite(maps[i]);
      add(order_key(maps[i]));
    }
  });
  const Accumulated a = sweep(t, max_fpr, out.regions > 0);
  out.binary = a.binary;
  out.aupro = out.regions > 0 && a.binary.negatives > 0 ? a.aupro : kUndefined;
  return out;
}

}  // namespace uniad::eval
