"""One module per `elmo` subcommand: `add_arguments(parser)` and `run(args)` (help text in cli.COMMANDS)."""
