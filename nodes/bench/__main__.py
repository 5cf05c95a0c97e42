"""``python -m nodes.bench <subcommand> [options]``: only wiring.

To add a benchmark, write a module with ``add_arguments(parser)`` and
``run(args) -> int`` (its docstring's first line is the help text) and list it in
``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "storage": "nodes.bench.storage",
    "shared-wal": "nodes.bench.shared_wal",
    "flood": "nodes.bench.flood",
    "groups": "nodes.bench.groups",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nodes.bench")
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    modules = {}
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        module.add_arguments(commands.add_parser(name, help=summary, description=summary))
        modules[name] = module
    args = parser.parse_args(argv)
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
