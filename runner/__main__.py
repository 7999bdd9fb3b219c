import argparse
import sys

from runner import supervise, testing


def main(argv=None):
    parser = argparse.ArgumentParser(prog="eventscope", description="Run or test Eventscope.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="set up and run Eventscope with its embedded servers")
    up.add_argument("--demo", action="store_true", help="run the demo traffic even against a NATS named by NATS_URL")
    up.add_argument("--no-demo", action="store_true", help="never run the demo traffic")
    up.add_argument("--debug", action="store_true",
                    help="turn on Django's DEBUG (error pages with settings and code; never on a shared network)")
    commands.add_parser("servers", help="start only the embedded servers and print their URLs")
    commands.add_parser("test", help="run the whole test suite (arguments after it go to pytest)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:
        # Everything after `test` belongs to pytest, options included.
        return testing.run(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "up":
        return supervise.up(demo=args.demo, no_demo=args.no_demo, debug=args.debug)
    if args.command == "servers":
        return supervise.servers_only()
    return 2


if __name__ == "__main__":
    sys.exit(main())
