#include "launcher/cli.h"

#include <iostream>
#include <set>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "common/error.h"
#include "common/ini_file.h"

namespace uniad::cli {

namespace {

// Reads the config file into "--key=value" tokens for this command (see cli.h).
std::vector<std::string> config_tokens(const std::string& path, const std::string& command,
                                       const po::options_description& options) {
  std::vector<std::string> tokens;
  for (const IniEntry& entry : read_ini_file(path, "config file (--config)")) {
    if (!entry.section.empty() && entry.section != command) continue;  // another command's section
    if (!options.find_nothrow(entry.key, /*approx=*/false)) {
      throw UsageError(path + ":" + std::to_string(entry.line) + ": unknown option '" + entry.key + "' for `uniad " +
                       command + "`" + (entry.section.empty() ? " (top-level keys apply to every command)" : ""));
    }
    tokens.push_back("--" + entry.key + "=" + entry.value);
  }
  return tokens;
}

void print_help(const Command& command, const po::options_description& options) {
  std::cout << "usage: " << command.usage << "\n\n" << command.summary << "\n\n" << options << "\n";
}

}  // namespace

std::optional<po::variables_map> parse_command(const Command& command, po::options_description& options,
                                               int argc, char** argv, const char* positional) {
  options.add_options()
      ("config", po::value<std::string>(), "read options from this INI-style file (command line wins)")
      ("help,h", "show this help and exit");
  po::variables_map vm;
  try {
    // argv[0] is the subcommand name; the parser skips it.
    po::positional_options_description plain;
    if (positional) plain.add(positional, -1);
    po::store(po::command_line_parser(argc, argv).options(options).positional(plain).run(), vm);
    if (vm.count("help")) {
      print_help(command, options);
      return std::nullopt;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      const auto tokens = config_tokens(path, command.name, options);
      try {
        po::store(po::command_line_parser(tokens).options(options).run(), vm);
      } catch (const po::error& e) {
        throw UsageError(path + ": " + e.what());
      }
    }
    po::notify(vm);
  } catch (const po::error& e) {
    throw UsageError(std::string(e.what()) + " (see `uniad " + command.name + " --help`)");
  }
  return vm;
}

void add_logging_options(po::options_description& options) {
  options.add_options()
      ("verbose,v", po::value<bool>()->implicit_value(true)->default_value(false), "print debug messages")
      ("quiet,q", po::value<bool>()->implicit_value(true)->default_value(false), "print warnings and errors only");
}

void configure_logging(const po::variables_map& vm, int rank) {
  // Logs and progress go to stderr; stdout carries tables and results only.
  if (!spdlog::get("uniad")) spdlog::set_default_logger(spdlog::stderr_color_mt("uniad"));
  spdlog::set_pattern("[%H:%M:%S] %^%l%$ %v");
  if (vm.count("verbose") && vm["verbose"].as<bool>()) spdlog::set_level(spdlog::level::debug);
  if ((vm.count("quiet") && vm["quiet"].as<bool>()) || rank != 0) spdlog::set_level(spdlog::level::warn);
}

bool show_progress(const po::variables_map& vm) { return !(vm.count("quiet") && vm["quiet"].as<bool>()); }

}  // namespace uniad::cli
