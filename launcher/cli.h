#pragma once
// Command-line and config-file handling shared by every `uniad` subcommand.
//
// Each subcommand declares its options (Boost.Program_options) and calls parse_command().
// Values come from, in order of precedence: the command line, then `--config FILE`.
// The config file is INI style: `key = value` lines at the top, or in a `[<command>]`
// section, must be options of the running command (a typo is an error that names it);
// other sections belong to other commands and are ignored, so one file can configure a
// whole pipeline.
#include <optional>
#include <string>

#include <boost/program_options.hpp>

namespace uniad::cli {

namespace po = boost::program_options;

struct Command {
  std::string name;     // "synth"
  std::string usage;    // "uniad synth --out DIR [options]"
  std::string summary;  // one paragraph shown by --help
};

// Parses argv (argv[0] is the subcommand name). Returns nullopt when --help was asked for
// (help is printed). Throws UsageError naming the bad option for anything malformed.
// `positional` names the option that takes the plain arguments (none by default).
std::optional<po::variables_map> parse_command(const Command& command, po::options_description& options,
                                               int argc, char** argv, const char* positional = nullptr);

// Logging set-up from the common --verbose/--quiet flags.
void add_logging_options(po::options_description& options);
// Ranks other than 0 print warnings and errors only, so a job log holds one copy of each message.
void configure_logging(const po::variables_map& vm, int rank = 0);
// True unless --quiet: whether to draw progress lines.
bool show_progress(const po::variables_map& vm);

}  // namespace uniad::cli
