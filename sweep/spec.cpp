#include "sweep/spec.h"

#include <algorithm>
#include <cctype>
#include <functional>

#include <fmt/core.h>

#include "common/error.h"
#include "common/ini_file.h"
#include "data/dataset.h"
#include "eval/evaluate.h"
#include "launcher/command_options.h"
#include "launcher/model_options.h"

namespace uniad::sweep {

namespace po = cli::po;

namespace {

// Options the sweep sets itself, per command, with what to do instead.
const std::map<std::string, std::string> kTrainManaged = {
    {"cache", "give --cache to uniad sweep"}, {"run-dir", "the sweep names each run's folder"},
    {"seed", "list the seeds as [sweep] seeds"}, {"threads", "set [sweep] threads"},
    {"resume", "the sweep always resumes"}, {"config", "put the options in the spec"}};
const std::map<std::string, std::string> kEvalManaged = {
    {"run", "the sweep evaluates each run"}, {"cache", "give --cache to uniad sweep"},
    {"out", "each run's report goes to RUN/eval"}, {"threads", "set [sweep] threads"},
    {"config", "put the options in the spec"}};

// sbatch options the Slurm backend sets itself, with what to do instead.
const std::map<std::string, std::string> kSlurmManaged = {
    {"array", "the sweep submits the runs not yet evaluated; [sweep] array-limit sets the %"},
    {"ntasks", "set [sweep] ranks"}, {"cpus-per-task", "set [sweep] threads"},
    {"dependency", "the sweep makes the report job depend on the array"},
    {"output", "task output goes to OUT/slurm/"}, {"error", "task output goes to OUT/slurm/"},
    {"chdir", "runs live in OUT"}, {"open-mode", "task output is appended across requeues"},
    {"parsable", "the sweep reads the job ids itself"}, {"wrap", "the sweep writes its job scripts"}};

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t"), last = s.find_last_not_of(" \t");
  return first == std::string::npos ? "" : s.substr(first, last - first + 1);
}

void set_option(OptionList& list, const std::string& name, const std::string& value) {
  for (auto& [n, v] : list) {
    if (n == name) {
      v = value;
      return;
    }
  }
  list.emplace_back(name, value);
}

std::vector<std::string> tokens_of(const OptionList& list) {
  std::vector<std::string> tokens;
  for (const auto& [name, value] : list) tokens.push_back("--" + name + "=" + value);
  return tokens;
}

// A command's option set bound to its own option values (Program_options keeps pointers
// into them, so the two live together).
struct TrainOptionSet {
  trainer::TrainOptions values;
  po::options_description options;
  TrainOptionSet() {
    commands::add_train_options(options, values);
    cli::add_model_options(options, values.model);
  }
};
struct EvalOptionSet {
  eval::EvalOptions values;
  po::options_description options;
  EvalOptionSet() { commands::add_eval_options(options, values); }
};

// Parses `required` plus the list as the command itself would, then `finish` checks what
// Program_options cannot; any mistake becomes a UsageError prefixed by `where`.
void parse_as_command(const std::string& where, const po::options_description& options,
                      std::vector<std::string> required, const OptionList& list,
                      const std::function<void(const po::variables_map&)>& finish) {
  for (const auto& t : tokens_of(list)) required.push_back(t);
  try {
    po::variables_map vm;
    po::store(po::command_line_parser(required).options(options).run(), vm);
    po::notify(vm);
    finish(vm);
  } catch (const po::error& e) {
    throw UsageError(where + ": " + e.what());
  } catch (const UsageError& e) {
    throw UsageError(where + ": " + e.what());
  }
}

// So a bad value fails before the sweep starts, not in the middle of it.
void check_train_options(const std::string& where, const OptionList& list) {
  TrainOptionSet set;
  parse_as_command(where, set.options, {"--cache=x.h5", "--run-dir=x"}, list, [&](const po::variables_map& vm) {
    cli::finish_model_options(vm, set.values.model);
    set.values.validate();
    set.values.model.validate();
  });
}

void check_eval_options(const std::string& where, const OptionList& list) {
  EvalOptionSet set;
  parse_as_command(where, set.options, {"--run=x", "--cache=x.h5"}, list, [](const po::variables_map& vm) {
    eval::parse_image_score(vm["image-score"].as<std::string>());
  });
}

// The option must exist for the command, and not be one the sweep sets.
void check_name(const std::string& path, const std::string& section, const std::string& name, bool train) {
  const auto& managed = train ? kTrainManaged : kEvalManaged;
  if (const auto it = managed.find(name); it != managed.end()) {
    throw UsageError(path + ": [" + section + "] " + name + ": set by the sweep (" + it->second + ")");
  }
  const bool known = train ? TrainOptionSet().options.find_nothrow(name, /*approx=*/false) != nullptr
                           : EvalOptionSet().options.find_nothrow(name, /*approx=*/false) != nullptr;
  if (!known) {
    throw UsageError(path + ": [" + section + "] unknown option '" + name + "' for `uniad " +
                     (train ? "train" : "eval") + "` (see its --help)");
  }
}

}  // namespace

std::string train_option_default(const std::string& name) {
  TrainOptionSet set;
  po::variables_map vm;
  po::store(po::command_line_parser(std::vector<std::string>{"--cache=x.h5", "--run-dir=x"}).options(set.options).run(), vm);
  if (!vm.count(name)) return "";
  const boost::any& value = vm[name].value();
  if (const auto* v = boost::any_cast<bool>(&value)) return *v ? "true" : "false";
  if (const auto* v = boost::any_cast<int>(&value)) return std::to_string(*v);
  if (const auto* v = boost::any_cast<double>(&value)) return fmt::format("{}", *v);
  if (const auto* v = boost::any_cast<std::size_t>(&value)) return std::to_string(*v);
  if (const auto* v = boost::any_cast<std::uint64_t>(&value)) return std::to_string(*v);
  if (const auto* v = boost::any_cast<std::string>(&value)) return *v;
  return "";
}

namespace {

std::uint64_t parse_count(const std::string& path, const std::string& key, const std::string& text) {
  try {
    std::size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used != text.size() || v < 0) throw std::invalid_argument(text);
    return static_cast<std::uint64_t>(v);
  } catch (const std::exception&) {
    throw UsageError(path + ": [sweep] " + key + " = '" + text + "' is not a non-negative integer");
  }
}

}  // namespace

void check_sbatch_option(const std::string& where, const std::string& name) {
  const bool word = !name.empty() && std::islower(static_cast<unsigned char>(name[0])) &&
                    name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos;
  if (!word) throw UsageError(where + ": '" + name + "' is not an sbatch long option name (time, partition, gres, ...)");
  if (const auto it = kSlurmManaged.find(name); it != kSlurmManaged.end()) {
    throw UsageError(where + ": sbatch --" + name + " is set by the sweep (" + it->second + ")");
  }
}

const std::vector<std::string>& sweep_metrics() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const auto& c : eval::metric_columns()) k.push_back(c.key);
    return k;
  }();
  return keys;
}

SweepSpec read_sweep_spec(const std::string& path) {
  SweepSpec spec;
  spec.path = path;
  // A key twice in one section is refused by the reader, naming both lines.
  for (const IniEntry& entry : read_ini_file(path, "the sweep spec (--spec)")) {
    const std::string &section = entry.section, &name = entry.key, &value = entry.value;
    if (section.empty()) {
      throw UsageError(path + ":" + std::to_string(entry.line) + ": '" + name + "' is outside a section; put it under "
                       "[sweep], [train], [eval], [grid] or [variant NAME]");
    }
    if (section == "sweep") {
      if (name == "seeds") {
        spec.seeds.clear();
        for (const auto& s : data::split_list(value)) spec.seeds.push_back(parse_count(path, name, trim(s)));
        if (spec.seeds.empty()) throw UsageError(path + ": [sweep] seeds is empty");
      } else if (name == "order") {
        if (value != "configurations" && value != "seeds") {
          throw UsageError(path + ": [sweep] order = '" + value + "': use configurations (all seeds of one, then the "
                           "next) or seeds (every configuration at one seed, then the next)");
        }
        spec.seed_major = value == "seeds";
      } else if (name == "rank-by") {
        const auto& metrics = sweep_metrics();
        if (std::find(metrics.begin(), metrics.end(), value) == metrics.end()) {
          throw UsageError(path + ": [sweep] rank-by = '" + value + "' is not a metric (image_auroc, pixel_auroc, ...)");
        }
        spec.rank_by = value;
      } else if (name == "ranks") {
        spec.ranks = static_cast<int>(std::max<std::uint64_t>(1, parse_count(path, name, value)));
      } else if (name == "threads") {
        spec.threads = static_cast<int>(parse_count(path, name, value));
      } else if (name == "array-limit") {
        spec.array_limit = static_cast<int>(parse_count(path, name, value));
      } else {
        throw UsageError(path + ": [sweep] unknown key '" + name + "' (seeds, order, rank-by, ranks, threads, array-limit)");
      }
    } else if (section == "slurm") {
      check_sbatch_option(path + ": [slurm]", name);
      // uniad trains one rank per GPU (common/device.h): a task holds one GPU or none.
      if (name == "gpus-per-task" && value != "1") {
        throw UsageError(path + ": [slurm] gpus-per-task = " + value + ": uniad runs one rank per GPU; set "
                         "gpus-per-task = 1 and [sweep] ranks to the GPUs a run should use");
      }
      set_option(spec.slurm, name, value);
    } else if (section == "train") {
      check_name(path, section, name, true);
      set_option(spec.train, name, value);
    } else if (section == "eval") {
      check_name(path, section, name, false);
      set_option(spec.eval, name, value);
    } else if (section == "grid") {
      check_name(path, section, name, true);
      std::vector<std::string> values;
      for (const auto& v : data::split_list(value)) values.push_back(trim(v));
      if (values.empty()) throw UsageError(path + ": [grid] " + name + " has no values");
      spec.grid.emplace_back(name, values);
    } else if (section.rfind("variant ", 0) == 0 && !trim(section.substr(8)).empty()) {
      check_name(path, section, name, true);
      const std::string variant = trim(section.substr(8));
      if (variant.find_first_of("/,=") != std::string::npos) {
        throw UsageError(path + ": [" + section + "]: a variant name may not contain '/', ',' or '='");
      }
      auto it = std::find_if(spec.variants.begin(), spec.variants.end(), [&](const auto& v) { return v.first == variant; });
      if (it == spec.variants.end()) it = spec.variants.insert(spec.variants.end(), {variant, {}});
      set_option(it->second, name, value);
    } else {
      throw UsageError(path + ": unknown section [" + section + "] (sweep, train, eval, grid, variant NAME, slurm)");
    }
  }
  // Every run's options must parse as `uniad train` would parse them.
  for (const auto& run : spec.expand()) check_train_options(path + ": run " + run.name(), run.train);
  check_eval_options(path + ": [eval]", spec.eval);
  return spec;
}

std::vector<SweepRun> SweepSpec::expand() const {
  // Configurations: the base, then each variant.
  std::vector<std::pair<std::string, OptionList>> configs = {{"", {}}};
  configs.insert(configs.end(), variants.begin(), variants.end());
  // Grid points: the cross product, first key slowest.
  std::vector<OptionList> points = {{}};
  for (const auto& [name, values] : grid) {
    std::vector<OptionList> next;
    for (const auto& point : points) {
      for (const auto& value : values) {
        OptionList p = point;
        p.emplace_back(name, value);
        next.push_back(p);
      }
    }
    points = next;
  }
  std::vector<SweepRun> configurations;  // seed 0 for now
  for (const auto& [variant, changes] : configs) {
    for (const auto& point : points) {
      std::vector<std::string> parts;
      if (!variant.empty()) parts.push_back(variant);
      OptionList options = train;
      for (const auto& [n, v] : changes) set_option(options, n, v);
      for (const auto& [n, v] : point) {
        set_option(options, n, v);
        parts.push_back(n + "=" + v);
      }
      std::string config;
      for (const auto& p : parts) config += (config.empty() ? "" : ",") + p;
      configurations.push_back({config.empty() ? "base" : config, variant, 0, options, eval});
    }
  }
  std::vector<SweepRun> runs;
  auto add = [&](SweepRun run, std::uint64_t seed) {
    run.seed = seed;
    runs.push_back(std::move(run));
  };
  if (seed_major) {
    for (const std::uint64_t seed : seeds)
      for (const auto& c : configurations) add(c, seed);
  } else {
    for (const auto& c : configurations)
      for (const std::uint64_t seed : seeds) add(c, seed);
  }
  return runs;
}

namespace {

nlohmann::ordered_json list_json(const OptionList& list) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [n, v] : list) j[n] = v;
  return j;
}

OptionList list_from_json(const nlohmann::ordered_json& j) {
  OptionList list;
  for (const auto& [n, v] : j.items()) list.emplace_back(n, v.get<std::string>());
  return list;
}

}  // namespace

nlohmann::ordered_json SweepSpec::to_json() const {
  nlohmann::ordered_json j;
  j["seeds"] = seeds;
  j["order"] = seed_major ? "seeds" : "configurations";
  j["rank_by"] = rank_by;
  j["ranks"] = ranks;
  j["threads"] = threads;
  j["array_limit"] = array_limit;
  j["slurm"] = list_json(slurm);
  j["train"] = list_json(train);
  j["eval"] = list_json(eval);
  j["grid"] = nlohmann::ordered_json::object();
  for (const auto& [n, values] : grid) j["grid"][n] = values;
  j["variants"] = nlohmann::ordered_json::object();
  for (const auto& [n, list] : variants) j["variants"][n] = list_json(list);
  return j;
}

SweepSpec SweepSpec::from_json(const nlohmann::ordered_json& o, const std::string& path) {
  SweepSpec spec;
  spec.path = path;
  spec.seeds = o.at("seeds").get<std::vector<std::uint64_t>>();
  spec.seed_major = o.at("order") == "seeds";
  spec.rank_by = o.at("rank_by").get<std::string>();
  spec.ranks = o.at("ranks").get<int>();
  spec.threads = o.at("threads").get<int>();
  spec.array_limit = o.at("array_limit").get<int>();
  spec.slurm = list_from_json(o.at("slurm"));
  spec.train = list_from_json(o.at("train"));
  spec.eval = list_from_json(o.at("eval"));
  for (const auto& [n, values] : o.at("grid").items()) spec.grid.emplace_back(n, values.get<std::vector<std::string>>());
  for (const auto& [n, list] : o.at("variants").items()) spec.variants.emplace_back(n, list_from_json(list));
  return spec;
}

nlohmann::ordered_json run_to_json(const SweepRun& run) {
  return {{"name", run.name()}, {"config", run.config},     {"variant", run.variant},
          {"seed", run.seed},   {"train", list_json(run.train)}, {"eval", list_json(run.eval)}};
}

SweepRun run_from_json(const nlohmann::ordered_json& o) {
  return {o.at("config").get<std::string>(), o.at("variant").get<std::string>(), o.at("seed").get<std::uint64_t>(),
          list_from_json(o.at("train")), list_from_json(o.at("eval"))};
}

}  // namespace uniad::sweep
