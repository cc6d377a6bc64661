#include "data/synth.h"

#include <algorithm>
#include <cmath>
#include <fstream>

#include <fmt/core.h>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "common/error.h"
#include "common/fs.h"
#include "common/progress.h"
#include "common/rng.h"
#include "common/version.h"

namespace uniad::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---------------------------------------------------------------------------------------
// Designs. Images are rendered as CV_32FC3 in RGB, values 0..255.

enum class Design { kWeave, kBottleCap, kWood, kHexNut, kTile, kPill, kDots, kChip };
constexpr int kDesigns = 8;
const char* const kDesignNames[kDesigns] = {"weave", "bottle_cap", "wood", "hex_nut",
                                            "tile",  "pill",       "dots", "chip"};
const std::vector<std::string> kDesignDefects[kDesigns] = {
    {"color", "contamination", "hole", "scratch"},     // weave
    {"deformed", "missing", "scratch", "spot"},        // bottle cap
    {"color", "contamination", "hole", "scratch"},     // wood
    {"color", "deformed", "missing", "scratch"},       // hex nut
    {"deformed", "hole", "scratch", "spot"},           // tile
    {"color", "contamination", "missing", "spot"},     // pill
    {"color", "contamination", "deformed", "hole"},    // dots
    {"color", "deformed", "missing", "scratch"},       // chip
};

bool is_object(Design d) {
  return d == Design::kBottleCap || d == Design::kHexNut || d == Design::kPill || d == Design::kChip;
}

// A colour with its channels rotated for classes beyond the first eight, so repeated
// designs are still distinct classes.
cv::Vec3f tint(cv::Vec3f rgb, int variant) {
  for (int v = 0; v < variant % 3; ++v) rgb = cv::Vec3f(rgb[2], rgb[0], rgb[1]);
  if (variant >= 3) rgb = cv::Vec3f(255.f, 255.f, 255.f) - rgb * 0.8f;
  return rgb;
}

// Smooth value noise in [0, 1]: a coarse random grid upsampled bicubically.
cv::Mat smooth_noise(Rng& rng, int size, int cells) {
  cv::Mat grid(cells + 1, cells + 1, CV_32F);
  for (int y = 0; y <= cells; ++y)
    for (int x = 0; x <= cells; ++x) grid.at<float>(y, x) = static_cast<float>(rng.uniform());
  cv::Mat out;
  cv::resize(grid, out, cv::Size(size, size), 0, 0, cv::INTER_CUBIC);
  return out;
}

struct Scene {
  cv::Mat image;        // CV_32FC3
  cv::Mat background;   // CV_32FC3, what lies behind the object (textures: unused)
  cv::Mat object_mask;  // CV_8U, 255 on the object (textures: everywhere)
};

cv::Mat filled(int s, cv::Vec3f colour) { return cv::Mat(s, s, CV_32FC3, cv::Scalar(colour[0], colour[1], colour[2])); }

Scene render_weave(Rng& rng, int s, int variant) {
  const cv::Vec3f colour = tint({70, 110, 170}, variant);
  const float period = 16.f;
  const float px = rng.uniform(0, 2 * period), py = rng.uniform(0, 2 * period);
  Scene scene{filled(s, {0, 0, 0}), {}, cv::Mat(s, s, CV_8U, cv::Scalar(255))};
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      const float u = (x + px) / period, v = (y + py) / period;
      const int i = static_cast<int>(std::floor(u)), j = static_cast<int>(std::floor(v));
      const bool horizontal = ((i + j) & 1) == 0;
      const float f = horizontal ? v - j : u - i;
      const float profile = static_cast<float>(std::sin(kPi * f));
      scene.image.at<cv::Vec3f>(y, x) = colour * (0.45f + 0.55f * profile) * (horizontal ? 1.f : 0.85f);
    }
  }
  return scene;
}

Scene render_wood(Rng& rng, int s, int variant) {
  const cv::Vec3f light = tint({200, 150, 95}, variant), dark = tint({120, 75, 40}, variant);
  const cv::Mat warp = smooth_noise(rng, s, 4);
  const float period = rng.uniform(18, 24), phase = rng.uniform(0, 100);
  Scene scene{filled(s, {0, 0, 0}), {}, cv::Mat(s, s, CV_8U, cv::Scalar(255))};
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      const float t = (y + phase + 30.f * warp.at<float>(y, x)) / period;
      const float ring = 0.5f + 0.5f * static_cast<float>(std::sin(2 * kPi * t));
      const float grain = std::pow(ring, 3.f);
      scene.image.at<cv::Vec3f>(y, x) = light * (1 - grain) + dark * grain;
    }
  }
  return scene;
}

Scene render_tile(Rng& rng, int s, int variant) {
  const cv::Vec3f grout = tint({90, 90, 85}, variant), tile = tint({205, 195, 175}, variant);
  const int period = 42, gap = 4;
  const int ox = rng.integer(0, period - 1), oy = rng.integer(0, period - 1);
  Scene scene{filled(s, grout), {}, cv::Mat(s, s, CV_8U, cv::Scalar(255))};
  for (int ty = -1; ty * period < s + period; ++ty) {
    for (int tx = -1; tx * period < s + period; ++tx) {
      const float shade = static_cast<float>(rng.uniform(0.92, 1.05));
      const cv::Vec3f c = tile * shade;
      cv::rectangle(scene.image, cv::Rect(tx * period - ox + gap / 2, ty * period - oy + gap / 2, period - gap, period - gap),
                    cv::Scalar(c[0], c[1], c[2]), cv::FILLED);
    }
  }
  return scene;
}

Scene render_dots(Rng& rng, int s, int variant) {
  const cv::Vec3f back = tint({35, 40, 50}, variant), dot = tint({220, 200, 120}, variant);
  const int period = 20;
  const int ox = rng.integer(0, period - 1), oy = rng.integer(0, period - 1);
  Scene scene{filled(s, back), {}, cv::Mat(s, s, CV_8U, cv::Scalar(255))};
  for (int y = -period; y < s + period; y += period) {
    for (int x = -period; x < s + period; x += period) {
      cv::circle(scene.image, cv::Point(x + ox, y + oy), 5, cv::Scalar(dot[0], dot[1], dot[2]), cv::FILLED, cv::LINE_8);
    }
  }
  return scene;
}

// Objects: a foreground shape on a plain background, placed with a small random offset.
Scene object_scene(int s, cv::Vec3f background) {
  Scene scene{filled(s, background), {}, cv::Mat(s, s, CV_8U, cv::Scalar(0))};
  scene.background = scene.image.clone();
  return scene;
}

Scene render_bottle_cap(Rng& rng, int s, int variant) {
  Scene scene = object_scene(s, tint({40, 45, 60}, variant));
  const cv::Point c(s / 2 + rng.integer(-4, 4), s / 2 + rng.integer(-4, 4));
  const int r = s * 80 / 256;
  cv::circle(scene.object_mask, c, r, cv::Scalar(255), cv::FILLED, cv::LINE_8);
  const cv::Vec3f body = tint({190, 40, 35}, variant);
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      if (!scene.object_mask.at<std::uint8_t>(y, x)) continue;
      const float d = std::hypot(x - c.x, y - c.y) / r;  // radial shading
      scene.image.at<cv::Vec3f>(y, x) = body * (1.05f - 0.35f * d * d);
    }
  }
  cv::circle(scene.image, c, r * 3 / 4, cv::Scalar(120, 25, 20), 3, cv::LINE_8);
  cv::circle(scene.image, c, r / 5, cv::Scalar(215, 150, 120), cv::FILLED, cv::LINE_8);
  return scene;
}

Scene render_hex_nut(Rng& rng, int s, int variant) {
  Scene scene = object_scene(s, tint({150, 150, 155}, variant));
  const cv::Point2f c(s / 2.f + rng.integer(-4, 4), s / 2.f + rng.integer(-4, 4));
  const float r = s * 85.f / 256.f, angle = static_cast<float>(rng.uniform(-0.1, 0.1));
  std::vector<cv::Point> hexagon;
  for (int k = 0; k < 6; ++k) {
    const float a = angle + static_cast<float>(k * kPi / 3);
    hexagon.emplace_back(cvRound(c.x + r * std::cos(a)), cvRound(c.y + r * std::sin(a)));
  }
  cv::fillConvexPoly(scene.object_mask, hexagon, cv::Scalar(255), cv::LINE_8);
  cv::circle(scene.object_mask, c, static_cast<int>(r * 0.42f), cv::Scalar(0), cv::FILLED, cv::LINE_8);
  const cv::Vec3f metal = tint({110, 115, 125}, variant);
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      if (!scene.object_mask.at<std::uint8_t>(y, x)) continue;
      const float g = 0.8f + 0.4f * ((x - c.x) + (y - c.y)) / (4 * r) + 0.2f;  // brushed-metal gradient
      scene.image.at<cv::Vec3f>(y, x) = metal * g;
    }
  }
  cv::circle(scene.image, c, static_cast<int>(r * 0.42f) + 2, cv::Scalar(70, 72, 80), 2, cv::LINE_8);
  return scene;
}

Scene render_pill(Rng& rng, int s, int variant) {
  Scene scene = object_scene(s, tint({30, 30, 35}, variant));
  const cv::Point2f c(s / 2.f + rng.integer(-4, 4), s / 2.f + rng.integer(-4, 4));
  const float angle = static_cast<float>(rng.uniform(-3, 3));
  const float half_len = s * 80.f / 256.f, radius = s * 34.f / 256.f;
  const float ca = std::cos(angle * static_cast<float>(kPi) / 180), sa = std::sin(angle * static_cast<float>(kPi) / 180);
  const cv::Vec3f left = tint({235, 232, 225}, variant), right = tint({230, 130, 40}, variant);
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      const float u = (x - c.x) * ca + (y - c.y) * sa, v = -(x - c.x) * sa + (y - c.y) * ca;
      const float along = std::max(std::abs(u) - (half_len - radius), 0.f);
      if (along * along + v * v > radius * radius) continue;
      scene.object_mask.at<std::uint8_t>(y, x) = 255;
      const float shade = 1.0f - 0.25f * (v / radius) * (v / radius);
      cv::Vec3f colour = (u < 0 ? left : right) * shade;
      // Printed dots on the white half, in a fixed pattern relative to the pill.
      for (int k = 0; k < 3; ++k) {
        const float du = u + half_len * (0.25f + 0.2f * k), dv = v - radius * 0.1f;
        if (du * du + dv * dv < 16.f) colour = cv::Vec3f(150, 30, 30);
      }
      scene.image.at<cv::Vec3f>(y, x) = colour;
    }
  }
  return scene;
}

Scene render_chip(Rng& rng, int s, int variant) {
  Scene scene = object_scene(s, tint({30, 95, 55}, variant));
  const cv::Point c(s / 2 + rng.integer(-4, 4), s / 2 + rng.integer(-4, 4));
  const int half = s * 48 / 256, pins = 6, pin_len = s * 16 / 256, pin_w = s * 8 / 256;
  const cv::Vec3f pin = tint({200, 200, 195}, variant), body = tint({25, 25, 28}, variant);
  for (int k = 0; k < pins; ++k) {
    const int y = c.y - half + (2 * half) * (2 * k + 1) / (2 * pins) - pin_w / 2;
    for (int side : {-1, 1}) {
      const int x0 = side < 0 ? c.x - half - pin_len : c.x + half;
      const cv::Rect rect(x0, y, pin_len, pin_w);
      cv::rectangle(scene.object_mask, rect, cv::Scalar(255), cv::FILLED);
      cv::rectangle(scene.image, rect, cv::Scalar(pin[0], pin[1], pin[2]), cv::FILLED);
    }
  }
  const cv::Rect rect(c.x - half, c.y - half, 2 * half, 2 * half);
  cv::rectangle(scene.object_mask, rect, cv::Scalar(255), cv::FILLED);
  cv::rectangle(scene.image, rect, cv::Scalar(body[0], body[1], body[2]), cv::FILLED);
  cv::circle(scene.image, cv::Point(c.x - half * 2 / 3, c.y - half * 2 / 3), s * 6 / 256, cv::Scalar(70, 70, 75), cv::FILLED);
  return scene;
}

Scene render_design(Design design, Rng& rng, int s, int variant) {
  switch (design) {
    case Design::kWeave: return render_weave(rng, s, variant);
    case Design::kBottleCap: return render_bottle_cap(rng, s, variant);
    case Design::kWood: return render_wood(rng, s, variant);
    case Design::kHexNut: return render_hex_nut(rng, s, variant);
    case Design::kTile: return render_tile(rng, s, variant);
    case Design::kPill: return render_pill(rng, s, variant);
    case Design::kDots: return render_dots(rng, s, variant);
    case Design::kChip: return render_chip(rng, s, variant);
  }
  throw RuntimeError("unknown synthetic design");
}

// ---------------------------------------------------------------------------------------
// Defects. Each returns the region it may change (CV_8U); the final mask keeps only the
// region's pixels whose 8-bit value really changed.

// Defect sizes are given for 256-pixel images and scaled to the actual size.
double scale(const Scene& scene) { return scene.image.rows / 256.0; }
int scaled(const Scene& scene, double pixels) { return std::max(1, static_cast<int>(std::lround(pixels * scale(scene)))); }

// A point on the object (for textures: anywhere), away from the frame edge.
cv::Point pick_point(Rng& rng, const Scene& scene, int margin_256) {
  const int s = scene.image.rows, margin = scaled(scene, margin_256);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const cv::Point p(rng.integer(margin, s - 1 - margin), rng.integer(margin, s - 1 - margin));
    if (scene.object_mask.at<std::uint8_t>(p)) return p;
  }
  return {s / 2, s / 2};
}

// A point on the object's outline, where missing parts and dents show.
cv::Point pick_edge_point(Rng& rng, const Scene& scene) {
  cv::Mat eroded, edge;
  cv::erode(scene.object_mask, eroded, cv::Mat(), cv::Point(-1, -1), 2);
  cv::subtract(scene.object_mask, eroded, edge);
  std::vector<cv::Point> points;
  cv::findNonZero(edge, points);
  if (points.empty()) return pick_point(rng, scene, 20);
  return points[rng.integer(0, static_cast<int>(points.size()) - 1)];
}

// A point on an edge of the pattern (for textures), where a deformation shows.
cv::Point pick_structure_point(Rng& rng, const Scene& scene, int margin_256) {
  cv::Mat gray, gx, gy, magnitude;
  cv::cvtColor(scene.image, gray, cv::COLOR_RGB2GRAY);
  cv::Sobel(gray, gx, CV_32F, 1, 0);
  cv::Sobel(gray, gy, CV_32F, 0, 1);
  cv::magnitude(gx, gy, magnitude);
  const int s = scene.image.rows, margin = scaled(scene, margin_256);
  const cv::Rect inner(margin, margin, s - 2 * margin, s - 2 * margin);
  std::vector<cv::Point> points;
  cv::findNonZero(magnitude(inner) > 100.0, points);
  if (points.empty()) return pick_point(rng, scene, margin_256);
  return points[rng.integer(0, static_cast<int>(points.size()) - 1)] + inner.tl();
}

cv::Mat blank_region(const Scene& scene) { return cv::Mat(scene.image.size(), CV_8U, cv::Scalar(0)); }

// Calls fn(x, y, pixel) for every pixel of `image` inside `region`, row by row.
template <typename Fn>
void for_each_in(cv::Mat& image, const cv::Mat& region, Fn&& fn) {
  for (int y = 0; y < image.rows; ++y)
    for (int x = 0; x < image.cols; ++x)
      if (region.at<std::uint8_t>(y, x)) fn(x, y, image.at<cv::Vec3f>(y, x));
}

void blend(cv::Mat& image, const cv::Mat& region, cv::Vec3f colour, float alpha) {
  for_each_in(image, region, [&](int, int, cv::Vec3f& p) { p = p * (1 - alpha) + colour * alpha; });
}

cv::Mat defect_scratch(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  cv::Point p = pick_point(rng, scene, 30);
  double heading = rng.uniform(0, 2 * kPi);
  const int thickness = scaled(scene, rng.integer(2, 3));
  for (int seg = rng.integer(2, 3); seg > 0; --seg) {
    heading += rng.uniform(-0.5, 0.5);
    const double len = rng.uniform(18, 40) * scale(scene);
    const cv::Point q(cvRound(p.x + len * std::cos(heading)), cvRound(p.y + len * std::sin(heading)));
    cv::line(region, p, q, cv::Scalar(255), thickness, cv::LINE_8);
    p = q;
  }
  cv::bitwise_and(region, scene.object_mask, region);
  const bool light = rng.chance(0.5);
  blend(scene.image, region, light ? cv::Vec3f(240, 238, 230) : cv::Vec3f(15, 12, 10), 0.75f);
  return region;
}

cv::Mat defect_hole(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  const cv::Point c = pick_point(rng, scene, 30);
  const cv::Size axes(scaled(scene, rng.integer(6, 13)), scaled(scene, rng.integer(6, 13)));
  cv::ellipse(region, c, axes, rng.uniform(0, 180), 0, 360, cv::Scalar(255), cv::FILLED, cv::LINE_8);
  cv::bitwise_and(region, scene.object_mask, region);
  for_each_in(scene.image, region, [&](int x, int y, cv::Vec3f& p) {
    const float d = std::hypot(x - c.x, y - c.y) / std::max(axes.width, axes.height);
    p = cv::Vec3f(18, 15, 14) * (1.f + d);  // dark, lighter at the rim
  });
  return region;
}

cv::Mat defect_spot(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  cv::circle(region, pick_point(rng, scene, 30), scaled(scene, rng.integer(6, 13)), cv::Scalar(255), cv::FILLED, cv::LINE_8);
  cv::bitwise_and(region, scene.object_mask, region);
  const cv::Vec3f stain(rng.uniform(90, 140), rng.uniform(55, 85), rng.uniform(20, 40));
  blend(scene.image, region, stain, 0.6f);
  return region;
}

cv::Mat defect_contamination(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  const cv::Point c = pick_point(rng, scene, 35);
  for (int k = rng.integer(3, 6); k > 0; --k) {
    const cv::Point p(c.x + scaled(scene, 10) * rng.integer(-10, 10) / 10, c.y + scaled(scene, 10) * rng.integer(-10, 10) / 10);
    cv::circle(region, p, scaled(scene, rng.integer(3, 7)), cv::Scalar(255), cv::FILLED, cv::LINE_8);
  }
  cv::bitwise_and(region, scene.object_mask, region);
  const cv::Vec3f base(rng.uniform(40, 90), rng.uniform(120, 180), rng.uniform(40, 90));
  for_each_in(scene.image, region, [&](int, int, cv::Vec3f& p) {
    p = base * static_cast<float>(rng.uniform(0.6, 1.3));  // fibrous, speckled debris
  });
  return region;
}

cv::Mat defect_missing(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  cv::circle(region, pick_edge_point(rng, scene), scaled(scene, rng.integer(14, 24)), cv::Scalar(255), cv::FILLED, cv::LINE_8);
  cv::bitwise_and(region, scene.object_mask, region);
  scene.background.copyTo(scene.image, region);
  return region;
}

cv::Mat defect_deformed(Rng& rng, Scene& scene) {
  const cv::Point c = !scene.background.empty() ? pick_edge_point(rng, scene) : pick_structure_point(rng, scene, 35);
  const float radius = static_cast<float>(rng.uniform(18, 28) * scale(scene));
  const float strength = static_cast<float>(rng.uniform(6, 10) * scale(scene));
  const int s = scene.image.rows;
  cv::Mat map_x(s, s, CV_32F), map_y(s, s, CV_32F), region = blank_region(scene);
  for (int y = 0; y < s; ++y) {
    for (int x = 0; x < s; ++x) {
      const float dx = x - c.x, dy = y - c.y, d = std::hypot(dx, dy);
      float sx = static_cast<float>(x), sy = static_cast<float>(y);
      if (d < radius && d > 0) {
        // Pull pixels toward the centre: a bulge that pushes the surface outwards.
        const float w = 1 - (d * d) / (radius * radius);
        sx -= dx / d * strength * w;
        sy -= dy / d * strength * w;
        region.at<std::uint8_t>(y, x) = 255;
      }
      map_x.at<float>(y, x) = sx;
      map_y.at<float>(y, x) = sy;
    }
  }
  cv::Mat warped;
  cv::remap(scene.image, warped, map_x, map_y, cv::INTER_LINEAR, cv::BORDER_REFLECT);
  warped.copyTo(scene.image, region);
  return region;
}

cv::Mat defect_color(Rng& rng, Scene& scene) {
  cv::Mat region = blank_region(scene);
  cv::circle(region, pick_point(rng, scene, 35), scaled(scene, rng.integer(14, 26)), cv::Scalar(255), cv::FILLED, cv::LINE_8);
  cv::bitwise_and(region, scene.object_mask, region);
  const cv::Vec3f gain(rng.uniform(1.2, 1.45), rng.uniform(0.7, 0.85), rng.uniform(0.55, 0.8));
  for_each_in(scene.image, region, [&](int, int, cv::Vec3f& p) {
    p = cv::Vec3f(p[0] * gain[0] + 20, p[1] * gain[1], p[2] * gain[2]);  // discolouration
  });
  return region;
}

cv::Mat apply_defect(const std::string& defect, Rng& rng, Scene& scene) {
  if (defect == "scratch") return defect_scratch(rng, scene);
  if (defect == "hole") return defect_hole(rng, scene);
  if (defect == "spot") return defect_spot(rng, scene);
  if (defect == "contamination") return defect_contamination(rng, scene);
  if (defect == "missing") return defect_missing(rng, scene);
  if (defect == "deformed") return defect_deformed(rng, scene);
  if (defect == "color") return defect_color(rng, scene);
  throw UsageError("unknown synthetic defect type '" + defect + "'");
}

// Lighting (global gain and a smooth gradient) and sensor noise, identical for an image and
// its defect-free twin, then rounding to 8 bits.
cv::Mat finish(const cv::Mat& image, const cv::Mat& lighting, float gain, std::uint64_t noise_seed) {
  Rng noise(noise_seed);
  cv::Mat out(image.size(), CV_8UC3);
  for (int y = 0; y < image.rows; ++y) {
    for (int x = 0; x < image.cols; ++x) {
      const cv::Vec3f p = image.at<cv::Vec3f>(y, x) * (gain * (0.97f + 0.06f * lighting.at<float>(y, x)));
      auto& q = out.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) q[c] = cv::saturate_cast<std::uint8_t>(p[c] + 3.0 * noise.normal());
    }
  }
  return out;
}

}  // namespace

std::vector<SynthClass> synthetic_classes(int count) {
  if (count < 1) throw UsageError("--classes must be at least 1");
  std::vector<SynthClass> out;
  for (int i = 0; i < count; ++i) {
    const int design = i % kDesigns, variant = i / kDesigns;
    SynthClass c;
    c.name = kDesignNames[design] + (variant ? "_" + std::to_string(variant + 1) : std::string());
    c.object = is_object(static_cast<Design>(design));
    c.defects = kDesignDefects[design];
    out.push_back(std::move(c));
  }
  return out;
}

SynthImage render_synthetic(const SynthOptions& options, int class_index, Split split, const std::string& defect,
                            int index) {
  const int design = class_index % kDesigns, variant = class_index / kDesigns;
  const auto& defects = kDesignDefects[design];
  const int type = defect == "good" ? 0 : 1 + static_cast<int>(std::find(defects.begin(), defects.end(), defect) - defects.begin());
  if (type > static_cast<int>(defects.size())) {
    throw UsageError("class " + std::to_string(class_index) + " has no defect type '" + defect + "'");
  }
  // Independent streams for geometry, defect, lighting and noise of this one image.
  const std::uint64_t stream = static_cast<std::uint64_t>(split == Split::kTrain ? 0 : 1) * 64 + type;
  Rng geometry = Rng::derive(options.seed, class_index, stream, 4 * index + 0);
  Rng defect_rng = Rng::derive(options.seed, class_index, stream, 4 * index + 1);
  Rng light_rng = Rng::derive(options.seed, class_index, stream, 4 * index + 2);
  const std::uint64_t noise_seed = Rng::derive(options.seed, class_index, stream, 4 * index + 3).next();

  const int s = options.image_size;
  Scene scene = render_design(static_cast<Design>(design), geometry, s, variant);
  const cv::Mat lighting = smooth_noise(light_rng, s, 2);
  const float gain = static_cast<float>(light_rng.uniform(0.97, 1.03));

  SynthImage out;
  out.normal = finish(scene.image, lighting, gain, noise_seed);
  if (type == 0) {
    out.image = out.normal;
    out.mask = cv::Mat(s, s, CV_8U, cv::Scalar(0));
    return out;
  }
  // A defect that happens to change almost nothing (a dent in a flat area) is no defect:
  // draw again from the same stream, so the result stays deterministic.
  for (int attempt = 0;; ++attempt) {
    Scene damaged{scene.image.clone(), scene.background, scene.object_mask};
    const cv::Mat region = apply_defect(defect, defect_rng, damaged);
    out.image = finish(damaged.image, lighting, gain, noise_seed);
    // The mask is exactly the pixels inside the defect region that the defect changed.
    cv::Mat diff, channel_max;
    cv::absdiff(out.image, out.normal, diff);
    cv::reduce(diff.reshape(1, s * s), channel_max, 1, cv::REDUCE_MAX);  // per pixel, over RGB
    cv::bitwise_and(channel_max.reshape(1, s) > 0, region, out.mask);
    const int changed = cv::countNonZero(out.mask);
    if ((changed >= 8 && changed * 8 >= cv::countNonZero(region)) || attempt == 50) return out;
  }
}

std::string synthetic_manifest(const SynthOptions& options) {
  nlohmann::ordered_json manifest;
  manifest["generator"] = "uniad synth";
  manifest["format_version"] = 1;
  manifest["project_version"] = project_version();
  manifest["seed"] = options.seed;
  manifest["image_size"] = options.image_size;
  manifest["train_good"] = options.train_good;
  manifest["test_good"] = options.test_good;
  manifest["test_anomalous"] = options.test_anomalous;
  nlohmann::ordered_json classes = nlohmann::ordered_json::array();
  for (const auto& c : synthetic_classes(options.classes)) {
    classes.push_back({{"name", c.name}, {"kind", c.object ? "object" : "texture"}, {"defects", c.defects}});
  }
  manifest["classes"] = classes;
  return manifest.dump(2) + "\n";
}

namespace {

void write_png(const fs::path& path, const cv::Mat& image) {
  std::vector<std::uint8_t> bytes;
  cv::Mat to_write = image;
  if (image.channels() == 3) cv::cvtColor(image, to_write, cv::COLOR_RGB2BGR);
  if (!cv::imencode(".png", to_write, bytes)) throw RuntimeError("cannot encode " + path.string());
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) throw OutputError(path.string(), "cannot write the file (disk full or no permission?)");
}

}  // namespace

void write_synthetic_dataset(const std::string& out_dir, const SynthOptions& options, bool show_progress) {
  if (options.train_good < 1 || options.test_good < 1 || options.test_anomalous < 1) {
    throw UsageError("synthetic dataset needs at least one train, test-good and test-anomalous image per class");
  }
  if (options.image_size < 64) throw UsageError("--image-size must be at least 64");
  const fs::path out(out_dir);
  if (fs::exists(out)) {
    throw InputError(out_dir, "already exists; choose a new --out folder or remove it");
  }
  const auto classes = synthetic_classes(options.classes);
  // Build under a temporary sibling name, rename when complete: an interrupted run never
  // leaves a folder that looks like a finished dataset.
  const fs::path tmp = temporary_path_for(out);
  fs::remove_all(tmp);
  try {
    const std::size_t total =
        classes.size() * static_cast<std::size_t>(options.train_good + options.test_good + options.test_anomalous);
    Progress progress("synth", total, "images", show_progress);
    for (std::size_t ci = 0; ci < classes.size(); ++ci) {
      const auto& cls = classes[ci];
      const int class_index = static_cast<int>(ci);
      auto write_split = [&](Split split, const std::string& type, int count) {
        const fs::path dir = tmp / cls.name / split_name(split) / type;
        fs::create_directories(dir);
        if (type != "good") fs::create_directories(tmp / cls.name / "ground_truth" / type);
        for (int i = 0; i < count; ++i) {
          const SynthImage img = render_synthetic(options, class_index, split, type, i);
          const std::string stem = fmt::format("{:03}", i);
          write_png(dir / (stem + ".png"), img.image);
          if (type != "good") write_png(tmp / cls.name / "ground_truth" / type / (stem + "_mask.png"), img.mask);
          progress.advance();
        }
      };
      write_split(Split::kTrain, "good", options.train_good);
      write_split(Split::kTest, "good", options.test_good);
      // Anomalous images spread evenly over the defect types (the first types get the remainder).
      const int types = static_cast<int>(cls.defects.size());
      for (int t = 0; t < types; ++t) {
        write_split(Split::kTest, cls.defects[t], options.test_anomalous / types + (t < options.test_anomalous % types));
      }
    }
    atomic_write_bytes(tmp / "synth.json", synthetic_manifest(options));
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    throw;
  }
}

}  // namespace uniad::data
