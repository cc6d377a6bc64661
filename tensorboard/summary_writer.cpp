#include "tensorboard/summary_writer.h"

#include <chrono>

#include "tensorboard/event.pb.h"
#include "tensorboard/event_file.h"

namespace uniad::tensorboard {

namespace pb = proto;

namespace {

// tensorflow.DataType values.
constexpr int kDtFloat = 1, kDtString = 7;

void append(EventFile& file, const pb::Event& event) { file.append(event.SerializeAsString()); }

pb::Event event_at(std::int64_t step) {
  pb::Event event;
  event.set_wall_time(wall_time_now());
  event.set_step(step);
  return event;
}

pb::Value to_proto(const HParamValue& value) {
  pb::Value v;
  if (const auto* number = std::get_if<double>(&value)) v.set_number_value(*number);
  if (const auto* flag = std::get_if<bool>(&value)) v.set_bool_value(*flag);
  if (const auto* text = std::get_if<std::string>(&value)) v.set_string_value(*text);
  return v;
}

pb::HParamType type_of(const HParamValue& value) {
  if (std::holds_alternative<double>(value)) return pb::DATA_TYPE_FLOAT64;
  if (std::holds_alternative<bool>(value)) return pb::DATA_TYPE_BOOL;
  return pb::DATA_TYPE_STRING;
}

// The HParams plugin's records: its data in the metadata, attached to an empty float vector.
void append_hparams(EventFile& file, const char* tag, const pb::HParamsPluginData& data) {
  pb::Event event = event_at(0);
  pb::Summary::Value* value = event.mutable_summary()->add_value();
  value->set_tag(tag);
  auto* plugin = value->mutable_metadata()->mutable_plugin_data();
  plugin->set_plugin_name("hparams");
  plugin->set_content(data.SerializeAsString());
  pb::TensorProto* tensor = value->mutable_tensor();
  tensor->set_dtype(kDtFloat);
  tensor->mutable_tensor_shape()->add_dim()->set_size(0);
  append(file, event);
}

}  // namespace

double wall_time_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

SummaryWriter::SummaryWriter(const std::filesystem::path& dir) : file_(std::make_unique<EventFile>(dir)) {
  pb::Event event = event_at(0);
  event.set_file_version("brain.Event:2");
  append(*file_, event);
}

SummaryWriter::~SummaryWriter() = default;

void SummaryWriter::start_session(std::int64_t step) {
  pb::Event event = event_at(step);
  event.mutable_session_log()->set_status(pb::SessionLog::START);
  append(*file_, event);
}

void SummaryWriter::scalar(const std::string& tag, double value, std::int64_t step) {
  pb::Event event = event_at(step);
  pb::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  append(*file_, event);
}

void SummaryWriter::image(const std::string& tag, const std::string& png, int width, int height, std::int64_t step) {
  pb::Event event = event_at(step);
  pb::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  pb::Summary::Image* image = v->mutable_image();
  image->set_width(width);
  image->set_height(height);
  image->set_colorspace(3);
  image->set_encoded_image_string(png);
  append(*file_, event);
}

void SummaryWriter::text(const std::string& tag, const std::string& markdown, std::int64_t step) {
  pb::Event event = event_at(step);
  pb::Summary::Value* v = event.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* plugin = v->mutable_metadata()->mutable_plugin_data();
  plugin->set_plugin_name("text");
  plugin->set_content(pb::TextPluginData().SerializeAsString());
  pb::TensorProto* tensor = v->mutable_tensor();
  tensor->set_dtype(kDtString);
  tensor->mutable_tensor_shape();  // a scalar string: no dimensions
  tensor->add_string_val(markdown);
  append(*file_, event);
}

void SummaryWriter::hparams_session_start(const HParams& hparams, const std::string& group, double start_time_secs) {
  pb::HParamsPluginData data;
  pb::SessionStartInfo* info = data.mutable_session_start_info();
  for (const auto& [name, value] : hparams) (*info->mutable_hparams())[name] = to_proto(value);
  info->set_group_name(group);
  info->set_start_time_secs(start_time_secs);
  append_hparams(*file_, "_hparams_/session_start_info", data);
}

void SummaryWriter::hparams_session_end(bool success, double end_time_secs) {
  pb::HParamsPluginData data;
  pb::SessionEndInfo* info = data.mutable_session_end_info();
  info->set_status(success ? pb::STATUS_SUCCESS : pb::STATUS_FAILURE);
  info->set_end_time_secs(end_time_secs);
  append_hparams(*file_, "_hparams_/session_end_info", data);
}

void SummaryWriter::hparams_experiment(const std::string& name,
                                       const std::map<std::string, std::vector<HParamValue>>& domains,
                                       const std::vector<HParamMetric>& metrics, double time_created_secs) {
  pb::HParamsPluginData data;
  pb::Experiment* experiment = data.mutable_experiment();
  experiment->set_name(name);
  experiment->set_time_created_secs(time_created_secs);
  for (const auto& [hparam, values] : domains) {
    pb::HParamInfo* info = experiment->add_hparam_infos();
    info->set_name(hparam);
    if (values.empty()) continue;
    info->set_type(type_of(values.front()));
    info->set_differs(values.size() > 1);
    for (const auto& value : values) *info->mutable_domain_discrete()->add_values() = to_proto(value);
  }
  for (const auto& metric : metrics) {
    pb::MetricInfo* info = experiment->add_metric_infos();
    info->mutable_name()->set_group(metric.group);
    info->mutable_name()->set_tag(metric.tag);
    info->set_display_name(metric.display_name);
  }
  append_hparams(*file_, "_hparams_/experiment", data);
}

void SummaryWriter::flush() { file_->flush(); }

void SummaryWriter::flush_if_due() { file_->flush_if_due(); }

const std::filesystem::path& SummaryWriter::path() const { return file_->path(); }

}  // namespace uniad::tensorboard
