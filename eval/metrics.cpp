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

// LSD radix sort of keys (ascending), 3 passes of 11 bits, carrying an optional payload.
template <typename Payload>
void radix_sort(std::vector<std::uint32_t>& keys, std::vector<Payload>* payload) {
  const std::size_t n = keys.size();
  std::vector<std::uint32_t> keys_tmp(n);
  std::vector<Payload> payload_tmp(payload ? n : 0);
  for (int shift = 0; shift < 32; shift += 11) {
    std::vector<std::size_t> count(2049, 0);
    for (std::uint32_t k : keys) ++count[((k >> shift) & 2047) + 1];
    for (int b = 0; b < 2048; ++b) count[b + 1] += count[b];
    for (std::size_t i = 0; i < n; ++i) {
      const std::size_t to = count[(keys[i] >> shift) & 2047]++;
      keys_tmp[to] = keys[i];
      if (payload) payload_tmp[to] = (*payload)[i];
    }
    keys.swap(keys_tmp);
    if (payload) payload->swap(payload_tmp);
  }
}

// The scores split by label and sorted, positives carrying a weight index (their region).
struct Sorted {
  std::vector<std::uint32_t> negatives, positives;
  std::vector<std::uint32_t> positive_region;  // index into region_weight; 0 = no region weight
  std::vector<double> region_weight{0.0};
};

// One pass over the thresholds (distinct scores, descending), accumulating every metric.
struct Accumulated {
  BinaryMetrics binary;
  double aupro = kUndefined;
};

Accumulated sweep(const Sorted& s, double max_fpr, bool with_pro) {
  Accumulated out;
  BinaryMetrics& m = out.binary;
  const double P = static_cast<double>(s.positives.size()), N = static_cast<double>(s.negatives.size());
  m.positives = static_cast<std::int64_t>(s.positives.size());
  m.negatives = static_cast<std::int64_t>(s.negatives.size());
  if (!m.defined()) return out;
  double tp = 0, fp = 0, auroc = 0, ap = 0, f1_max = 0, f1_threshold = 0;
  double pro = 0, pro_area = 0, fpr_prev = 0, pro_prev = 0;
  bool pro_done = !with_pro;
  std::size_t i = s.negatives.size(), j = s.positives.size();  // walk from the top
  while (i > 0 || j > 0) {
    const std::uint32_t key = std::max(i > 0 ? s.negatives[i - 1] : 0u, j > 0 ? s.positives[j - 1] : 0u);
    const double tp_prev = tp, fp_prev = fp;
    while (i > 0 && s.negatives[i - 1] == key) --i, ++fp;
    while (j > 0 && s.positives[j - 1] == key) {
      --j;
      ++tp;
      pro += s.region_weight[s.positive_region.empty() ? 0 : s.positive_region[j]];
    }
    auroc += (fp - fp_prev) / N * (tp + tp_prev) / (2 * P);  // trapezoid: ties form one sloped step
    const double precision = tp / (tp + fp), recall = tp / P;
    ap += (tp - tp_prev) / P * precision;
    const double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0;
    if (f1 > f1_max) f1_max = f1, f1_threshold = key_value(key);
    if (!pro_done) {
      const double fpr = fp / N;
      if (fpr >= max_fpr) {  // interpolate the curve at max_fpr and stop
        const double pro_at = fpr > fpr_prev ? pro_prev + (pro - pro_prev) * (max_fpr - fpr_prev) / (fpr - fpr_prev) : pro;
        pro_area += (max_fpr - fpr_prev) * (pro_prev + pro_at) / 2;
        pro_done = true;
      } else {
        pro_area += (fpr - fpr_prev) * (pro_prev + pro) / 2;
        fpr_prev = fpr;
        pro_prev = pro;
      }
    }
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
  Sorted s;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    check_finite(scores[i]);
    (labels[i] ? s.positives : s.negatives).push_back(order_key(scores[i]));
  }
  radix_sort<std::uint32_t>(s.negatives, nullptr);
  radix_sort<std::uint32_t>(s.positives, nullptr);
  return sweep(s, 0.3, false).binary;
}

PixelMetrics pixel_metrics(const float* maps, const std::uint8_t* masks, std::int64_t images, int h, int w,
                           double max_fpr) {
  Sorted s;
  PixelMetrics out;
  const std::int64_t plane = std::int64_t(h) * w;
  // Regions: 8-connected components of each mask; a region's pixels weigh 1 / (regions * size),
  // so the sum over detected pixels is the mean per-region overlap (PRO).
  std::vector<std::int64_t> region_size{0};
  std::vector<std::uint32_t> region_of_positive;
  const std::int64_t anomalous = std::count_if(masks, masks + images * plane, [](std::uint8_t v) { return v != 0; });
  s.positives.reserve(anomalous);
  region_of_positive.reserve(anomalous);
  s.negatives.reserve(images * plane - anomalous);
  cv::Mat labels;
  for (std::int64_t k = 0; k < images; ++k) {
    const float* map = maps + k * plane;
    const std::uint8_t* mask = masks + k * plane;
    const bool any = std::any_of(mask, mask + plane, [](std::uint8_t v) { return v != 0; });
    int first_region = static_cast<int>(region_size.size());
    if (any) {
      const cv::Mat m(h, w, CV_8U, const_cast<std::uint8_t*>(mask));
      const int found = cv::connectedComponents(m, labels, 8, CV_32S);
      region_size.resize(region_size.size() + found - 1, 0);
    }
    for (std::int64_t p = 0; p < plane; ++p) {
      check_finite(map[p]);
      if (mask[p]) {
        const int region = first_region + labels.ptr<int>()[p] - 1;
        ++region_size[region];
        s.positives.push_back(order_key(map[p]));
        region_of_positive.push_back(static_cast<std::uint32_t>(region));
      } else {
        s.negatives.push_back(order_key(map[p]));
      }
    }
  }
  out.regions = static_cast<std::int64_t>(region_size.size()) - 1;
  s.region_weight.assign(region_size.size(), 0.0);
  for (std::size_t r = 1; r < region_size.size(); ++r) s.region_weight[r] = 1.0 / (double(out.regions) * region_size[r]);
  s.positive_region = std::move(region_of_positive);
  radix_sort<std::uint32_t>(s.negatives, nullptr);
  radix_sort<std::uint32_t>(s.positives, &s.positive_region);
  const Accumulated a = sweep(s, max_fpr, out.regions > 0);
  out.binary = a.binary;
  out.aupro = out.regions > 0 && a.binary.negatives > 0 ? a.aupro : kUndefined;
  return out;
}

}  // namespace uniad::eval
