#pragma once
// The `uniad` subcommands. Each parses its own options (cli.h) and returns an exit code;
// errors are thrown as uniad::Error and turned into messages and exit codes by main().
namespace uniad::commands {

int synth(int argc, char** argv);
int datasets(int argc, char** argv);
int demo(int argc, char** argv);
int import_weights(int argc, char** argv);
int extract(int argc, char** argv);
int train(int argc, char** argv);
int evaluate(int argc, char** argv);
int report(int argc, char** argv);
int sweep(int argc, char** argv);
int export_model(int argc, char** argv);
int predict(int argc, char** argv);

}  // namespace uniad::commands
