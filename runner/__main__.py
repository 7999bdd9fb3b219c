import argparse
import sys

from runner import supervise, testing


def main(argv=None):
    parser = argparse.ArgumentParser(prog="eventscope", description="Run or test Eventscope.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="set up and run Eventscope with its embedded servers")
    up.add_argument("--demo", action="store_true", help="run the demo traffic even against a NATS named by NATS_URL")
    up.add_argument("--no-demo", action="store_true", help="never run the demo traffic")
    commands.add_parser("servers", help="start only the embedded servers and print their URLs")
    test = commands.add_parser("test", help="run the whole test suite")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "up":
        return supervise.up(demo=args.demo, no_demo=args.no_demo)
    if args.command == "servers":
        return supervise.servers_only()
    return testing.run(args.pytest_args)


if __name__ == "__main__":
    sys.exit(main())
